//! Faults as the run applies them: each one's start and end on the
//! simulated network and hosts, and the trace line that records it.

use std::time::Duration;

use fep_core::Nanos;

use crate::driver::{Buggify, Control, Knobs};
use crate::faults::{Fault, FaultKind};
use crate::trace::SharedRecorder;

use super::{base_knobs, millis, Hosts, State, BUGGIFY_ON, LINK_LATENCY_MS_MAX};

pub(super) fn fault_line(
    recorder: &SharedRecorder,
    sim: &turmoil::Sim<'_>,
    what: std::fmt::Arguments<'_>,
) {
    let at = Nanos(u64::try_from(sim.elapsed().as_nanos()).expect("short run"));
    recorder
        .borrow_mut()
        .line(at, format_args!("harness"), what);
}

/// The two ends of fault target `target`: 0 is gateway–exchange, `k ≥ 1`
/// is client-(k-1)–gateway.
pub(super) fn link(target: u16, clients: u16) -> (String, String) {
    if target == 0 || clients == 0 {
        ("gateway".into(), "exchange".into())
    } else {
        (
            format!("client-{}", (target - 1) % clients),
            "gateway".into(),
        )
    }
}

/// The client whose link a `latency` or `hold` fault slows, if any.
pub(super) fn slowed_client(fault: &Fault, clients: u16) -> Option<usize> {
    let on_link = matches!(fault.kind, FaultKind::Latency | FaultKind::Hold);
    (on_link && fault.target >= 1 && clients > 0).then(|| usize::from((fault.target - 1) % clients))
}

/// Client `k`, away since its `rejoin` began, starts again.
pub(super) fn come_back(sim: &mut turmoil::Sim<'_>, hosts: &Hosts, state: &mut State, k: usize) {
    if state.away[k] && !state.gone[k] {
        state.away[k] = false;
        sim.bounce(hosts.clients[k].name());
    }
}

/// The client a `leave`, `stall` or `rejoin` fault strikes.
pub(super) fn client_of(fault: &Fault, hosts: &Hosts) -> usize {
    usize::from(fault.target) % hosts.clients.len()
}

pub(super) fn begin(
    sim: &mut turmoil::Sim<'_>,
    hosts: &Hosts,
    recorder: &SharedRecorder,
    fault: &Fault,
    state: &mut State,
) {
    fault_line(recorder, sim, format_args!("fault begin {fault}"));
    let clients = u16::try_from(hosts.clients.len()).expect("few clients");
    if let Some(k) = slowed_client(fault, clients) {
        state.slowed[k] += 1;
        let connecting = hosts.clients[k]
            .workers()
            .iter()
            .any(|w| w.borrow().service().connecting());
        if connecting && !state.dials_caught[k] {
            state.dials_caught[k] = true;
            let name = hosts.clients[k].name();
            fault_line(recorder, sim, format_args!("fault catches {name} dialing"));
        }
    }
    match fault.kind {
        FaultKind::Latency => {
            let (a, b) = link(fault.target, clients);
            let min = 1 + fault.at_ms % 5;
            let max = min + fault.for_ms % 25;
            sim.set_link_latency(a.as_str(), b.as_str(), Duration::from_millis(min));
            sim.set_link_max_message_latency(a.as_str(), b.as_str(), Duration::from_millis(max));
        }
        FaultKind::Hold => {
            let (a, b) = link(fault.target, clients);
            sim.hold(a.as_str(), b.as_str());
        }
        FaultKind::Crash => {
            sim.crash("exchange");
            recorder.borrow_mut().host_crashed(hosts.exchange.ix());
        }
        FaultKind::Cut => {
            sim.partition("gateway", "exchange");
            let gateway_ip = sim.lookup("gateway");
            let exchange_ip = sim.lookup("exchange");
            hosts.gateway.control(Control::AbortPeer(exchange_ip));
            hosts.exchange.control(Control::AbortPeer(gateway_ip));
        }
        FaultKind::Leave => {
            let k = client_of(fault, hosts);
            if !state.gone[k] {
                state.gone[k] = true;
                let host = &hosts.clients[k];
                if !state.away[k] {
                    sim.crash(host.name());
                    recorder.borrow_mut().host_crashed(host.ix());
                }
            }
        }
        FaultKind::Rejoin => {
            let k = client_of(fault, hosts);
            if !state.gone[k] && !state.away[k] {
                state.away[k] = true;
                let host = &hosts.clients[k];
                sim.crash(host.name());
                // Not done until the next incarnation says so.
                host.crashed();
                recorder.borrow_mut().host_crashed(host.ix());
            }
        }
        FaultKind::Drain => {
            if state.drain_ms.is_none() {
                state.drain_ms = Some(millis(sim.elapsed()));
                hosts.gateway.control(Control::Shutdown);
            }
        }
        FaultKind::SlowHandoff => {
            let knobs = hosts.gateway.knobs();
            hosts.gateway.set_knobs(Knobs {
                handoff_delay_ms_max: 2 + fault.for_ms % 19,
                ..knobs
            });
        }
        FaultKind::RefuseHandoff => {
            let knobs = hosts.gateway.knobs();
            hosts.gateway.set_knobs(Knobs {
                handoff_queue_max: u32::from(fault.target.max(1)),
                ..knobs
            });
        }
        FaultKind::Buggify => {
            set_buggify(hosts, BUGGIFY_ON);
        }
        FaultKind::Stall => hosts.clients[client_of(fault, hosts)].stall_reads(true),
    }
}

pub(super) fn end(
    sim: &mut turmoil::Sim<'_>,
    hosts: &Hosts,
    recorder: &SharedRecorder,
    fault: &Fault,
    state: &mut State,
) {
    fault_line(recorder, sim, format_args!("fault end {fault}"));
    let sabotage = hosts.gateway.knobs().sabotage;
    let clients = u16::try_from(hosts.clients.len()).expect("few clients");
    if let Some(k) = slowed_client(fault, clients) {
        state.slowed[k] -= 1;
        if state.slowed[k] == 0 && state.returning[k] && !state.over {
            state.returning[k] = false;
            come_back(sim, hosts, state, k);
        }
    }
    match fault.kind {
        FaultKind::Latency => {
            let (a, b) = link(fault.target, clients);
            sim.set_link_latency(a.as_str(), b.as_str(), Duration::ZERO);
            sim.set_link_max_message_latency(
                a.as_str(),
                b.as_str(),
                Duration::from_millis(LINK_LATENCY_MS_MAX),
            );
        }
        FaultKind::Hold => {
            let (a, b) = link(fault.target, clients);
            sim.release(a.as_str(), b.as_str());
        }
        FaultKind::Crash => sim.bounce("exchange"),
        FaultKind::Cut => {
            // A connection that completed in the very step the cut began
            // escaped the first abort, and its stream is dead all the same:
            // both stacks give up on whatever they still hold of the other.
            let gateway_ip = sim.lookup("gateway");
            let exchange_ip = sim.lookup("exchange");
            hosts.gateway.control(Control::AbortPeer(exchange_ip));
            hosts.exchange.control(Control::AbortPeer(gateway_ip));
            sim.repair("gateway", "exchange");
        }
        FaultKind::Leave | FaultKind::Drain => {}
        FaultKind::Rejoin => {
            let k = client_of(fault, hosts);
            // Only the rejoin that sent it away brings it back, and never a
            // client that left for good meanwhile.
            if state.away[k] && !state.gone[k] {
                if state.slowed[k] > 0 {
                    state.returning[k] = true;
                } else {
                    come_back(sim, hosts, state, k);
                }
            }
        }
        FaultKind::SlowHandoff => {
            let knobs = hosts.gateway.knobs();
            hosts.gateway.set_knobs(Knobs {
                handoff_delay_ms_max: base_knobs(sabotage, false).handoff_delay_ms_max,
                ..knobs
            });
        }
        FaultKind::RefuseHandoff => {
            let knobs = hosts.gateway.knobs();
            hosts.gateway.set_knobs(Knobs {
                handoff_queue_max: base_knobs(sabotage, false).handoff_queue_max,
                ..knobs
            });
        }
        FaultKind::Buggify => set_buggify(hosts, Buggify::OFF),
        FaultKind::Stall => hosts.clients[client_of(fault, hosts)].stall_reads(false),
    }
}

pub(super) fn set_buggify(hosts: &Hosts, buggify: Buggify) {
    let set = |knobs: Knobs| Knobs { buggify, ..knobs };
    hosts.exchange.set_knobs(set(hosts.exchange.knobs()));
    hosts.gateway.set_knobs(set(hosts.gateway.knobs()));
    for c in &hosts.clients {
        c.set_knobs(set(c.knobs()));
    }
}
