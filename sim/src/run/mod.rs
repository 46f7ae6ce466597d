//! One simulated run of a scenario: hosts `exchange`, `gateway` and
//! `client-0…N` on turmoil, the fault plan applied between steps, then the
//! invariants checked.
//!
//! # Phases
//!
//! 1. The exchange and the gateway start; the run steps until every gateway
//!    worker is ready (its upstream hand-shaked). The clients start then,
//!    as a load generator starts after `ready`.
//! 2. The clients run their pings while the faults strike and heal.
//! 3. When every client that is still there is done (or the liveness
//!    deadline passes), every fault still in force heals and the run goes on
//!    for [`QUIESCE_MS`] so that closes reach the other side, and longer
//!    (up to [`QUIESCE_MS_MAX`]) while a connection is open on one side
//!    only: its input may still be taken at a handoff credit's pace.
//! 4. The checker looks at the wire, the hosts and the clients' reports.

use std::cell::RefCell;

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use fep_core::Nanos;
use fep_load::client::{Client, Report, RoundTrip};
use fep_trading::exchange::Exchange;
use fep_trading::gateway::{Gateway, Routing};

use crate::check::{self, Explain, Verdict, WireCheck};
use crate::driver::{Host, JournalLog};
use crate::faults::{Fault, FaultKind};
use crate::orders::OrderCheck;
use crate::trace::{Recorder, SharedRecorder};

mod config;
mod hosts;
mod strike;

pub use config::{
    pings_of, RunConfig, CLIENT_DRAIN_MS, CONNECT_TIMEOUT_MS, EPOCH_SECS, EXCHANGE_PORT,
    FRAME_SIZES_AT_EDGES, FRAME_SIZE_MAX, FRAME_SIZE_MIN, GATEWAY_HEARTBEAT_MS, GATEWAY_PORT,
    HANDOFF_BYTES_MIN, LATENCY_FAULT_MS_MAX, LINK_LATENCY_MS_MAX, LIVENESS_GRACE_MS, QUIESCE_MS,
    QUIESCE_MS_MAX, RUN_HORIZONS_MAX, STARTUP_MS_MAX,
};
pub use hosts::{order_engine, order_flow, StorageKnobs, JOURNAL_DIR, JOURNAL_RESTART_MS};

use hosts::{base_knobs, build_hosts, BUGGIFY_ON};
use strike::{begin, end, fault_line};

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The run.
    pub config: RunConfig,
    /// The faults as they were scheduled.
    pub faults: Vec<Fault>,
    /// FNV-1a of the trace text.
    pub digest: u64,
    /// Lines in the trace.
    pub trace_lines: u64,
    /// The trace text, if kept.
    pub trace: Option<String>,
    /// Simulated time the run took.
    pub sim_elapsed: Nanos,
    /// The clients' reports merged (clients that left are not in it).
    pub report: Option<Report>,
    /// The first round trips of client-0.
    pub round_trips: Vec<RoundTrip>,
    /// Pongs and `Reject`s the clients read off the wire, those of clients
    /// that left included.
    pub answered: u64,
    /// The invariants, safety first.
    pub verdicts: Vec<Verdict>,
    /// Journaled commands the order check ran through the model (0 in the
    /// ping scenarios).
    pub order_commands: u64,
    /// The exchange's journal as the order check saw it (o-scenarios).
    pub journal: Option<crate::orders::JournalStats>,
}

impl Outcome {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(Verdict::passed)
    }

    /// The first broken invariant.
    pub fn first_failure(&self) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| !v.passed())
    }
}

/// The hosts of one run.
pub(crate) struct Hosts {
    pub(crate) exchange: Host<Exchange>,
    /// The exchange's journal on the simulated disk (o-scenarios).
    pub(crate) journal: Option<JournalLog>,
    pub(crate) gateway: Host<Gateway>,
    pub(crate) clients: Vec<Host<Client>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Begin(usize),
    End(usize),
}

/// Late answers the checker still explains by an earlier cause: a latency
/// fault's slowest link (its `max` is below 30 ms) twice, plus handoff
/// delays.
pub const ANSWER_LATE_MS: u64 = 100;

/// When this run's rejects can be explained.
fn explain(config: &RunConfig) -> Explain {
    let gateway = config.gateway_config();
    let backoff_ns = gateway.reconnect_backoff_max.0;
    Explain {
        hands_off: config.scenario.routing() == Routing::Handoff,
        session_inflight_max: gateway.inflight_per_session_max,
        exchange_port: EXCHANGE_PORT,
        gateway_port: GATEWAY_PORT,
        upstream_back_ns: backoff_ns + (CONNECT_TIMEOUT_MS + ANSWER_LATE_MS) * 1_000_000,
        upstream_connections: gateway.upstream_connections,
        answer_late_ns: ANSWER_LATE_MS * 1_000_000,
    }
}

/// How long a client of a run under `faults` waits for its last answers:
/// [`CLIENT_DRAIN_MS`] beyond the longest fault that can hold answers
/// back. A client that stops reading (`stall`), or whose link is held,
/// for longer than its drain deadline would otherwise give up on answers
/// that are waiting in its socket (seed 840563 of o2: a 1,495 ms stall from
/// the client's last send). Buggify's delays are milliseconds, whatever
/// its length; a drain and a leave hold nothing back.
fn client_drain_ms(faults: &[Fault]) -> u64 {
    let longest = faults
        .iter()
        .filter(|f| {
            !matches!(
                f.kind,
                FaultKind::Buggify | FaultKind::Drain | FaultKind::Leave
            )
        })
        .map(|f| f.for_ms)
        .max()
        .unwrap_or(0);
    CLIENT_DRAIN_MS + longest
}

/// Runs `config` to the end and checks it.
pub fn run(config: &RunConfig) -> Outcome {
    assert!(config.clients >= 1 && config.connections >= 1 && config.inflight >= 1);
    crate::panics::arm();
    let recorder: SharedRecorder = Rc::new(RefCell::new(Recorder::new(config.keep_trace)));
    let faults = config
        .faults
        .resolve(config.seed, config.horizon_ms(), config.clients);
    let client_drain = client_drain_ms(&faults);
    let hosts = build_hosts(config, &recorder, client_drain);
    // Liveness waits past the clients' drain deadline, so a client that
    // gives up on lost pings reports them before liveness fails.
    let grace_ms = LIVENESS_GRACE_MS + (client_drain - CLIENT_DRAIN_MS);
    let clients = hosts.clients.iter().map(Host::ix).collect();
    let mut wire = WireCheck::new(
        clients,
        hosts.gateway.ix(),
        hosts.exchange.ix(),
        &faults,
        explain(config),
    );
    if config.scenario.orders() {
        wire.expect_orders();
        // Found one step after the failure, restarted JOURNAL_RESTART_MS
        // later, then the gateway's way back.
        wire.explain_journal_failures(
            (JOURNAL_RESTART_MS + 2) * 1_000_000 + explain(config).upstream_back_ns,
        );
        // A cut, or a hold long enough for the gateway to declare its
        // upstream dead, closes the connections the exchange owes messages
        // to.
        let unsent_excused = faults
            .iter()
            .any(|f| f.kind == FaultKind::Cut || (f.kind == FaultKind::Hold && f.causes_rejects()));
        let mut orders = OrderCheck::new(hosts.exchange.ix(), order_engine(), unsent_excused);
        orders.durable_log();
        recorder.borrow_mut().check_orders(orders);
    }
    recorder.borrow_mut().check_wire(wire);
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(config.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::from_millis(LINK_LATENCY_MS_MAX))
        .simulation_duration(Duration::from_secs(24 * 3600));
    if config.scenario.orders() {
        let storage = StorageKnobs::swarm(config.seed);
        builder
            .fs()
            .corruption_probability(storage.corruption_probability)
            .io_error_probability(storage.io_error_probability)
            .block_size(storage.block_size);
    }
    let mut sim = builder.build();
    hosts.exchange.install(&mut sim);
    hosts.gateway.install(&mut sim);

    let mut failures = Vec::new();
    let mut ready = false;
    for _ in 0..STARTUP_MS_MAX {
        if let Err(e) = sim.step() {
            failures.push(format!("host software failed during start-up: {e}"));
            break;
        }
        let workers = hosts.gateway.workers();
        if !workers.is_empty() && workers.iter().all(|w| w.borrow().is_ready()) {
            ready = true;
            break;
        }
    }
    if !ready && failures.is_empty() {
        failures.push(format!("gateway not ready after {STARTUP_MS_MAX} ms"));
    }
    let start_ms = millis(sim.elapsed());
    if let Some(wire) = recorder.borrow_mut().wire_check_mut() {
        wire.clients_started(start_ms * 1_000_000);
    }
    for client in &hosts.clients {
        client.install(&mut sim);
    }

    let mut schedule: Vec<(u64, Action)> = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        schedule.push((start_ms + f.at_ms, Action::Begin(i)));
        if f.heals() {
            schedule.push((start_ms + f.end_ms(), Action::End(i)));
        }
    }
    schedule.sort();
    let mut last_heal = schedule.iter().map(|(t, _)| *t).max().unwrap_or(start_ms);
    // A livelock still answers now and then: past this the run has failed
    // whatever its progress.
    let mut deadline_ms = last_heal.max(start_ms + config.length_bound_ms());
    let mut watch = JournalWatch::default();
    let mut progress = (0, start_ms);
    let mut next = 0;
    let mut begun = vec![false; faults.len()];
    let mut ended = vec![false; faults.len()];
    let mut state = State {
        gone: vec![false; hosts.clients.len()],
        away: vec![false; hosts.clients.len()],
        drain_ms: None,
        slowed: vec![0; hosts.clients.len()],
        returning: vec![false; hosts.clients.len()],
        dials_caught: vec![false; hosts.clients.len()],
        over: false,
    };
    while ready && failures.is_empty() {
        let now_ms = millis(sim.elapsed());
        while next < schedule.len() && schedule[next].0 <= now_ms {
            let (_, action) = schedule[next];
            next += 1;
            match action {
                Action::Begin(i) => {
                    begun[i] = true;
                    begin(&mut sim, &hosts, &recorder, &faults[i], &mut state);
                }
                Action::End(i) if begun[i] => {
                    ended[i] = true;
                    end(&mut sim, &hosts, &recorder, &faults[i], &mut state);
                }
                Action::End(_) => {}
            }
        }
        if let Some(drain_ms) = state.drain_ms {
            // A drained gateway ends the run when it is done; its clients
            // may never be.
            if hosts.gateway.is_done() {
                break;
            }
            if now_ms > drain_ms + grace_ms.max(last_heal.saturating_sub(drain_ms)) {
                failures.push(format!(
                    "the gateway's drain, begun at {drain_ms} ms, has not finished at {now_ms} ms"
                ));
                break;
            }
        } else if state.all_done(&hosts) {
            break;
        }
        let answered = recorder.borrow().answered();
        if answered != progress.0 {
            progress = (answered, now_ms);
        }
        let quiet_since = progress.1.max(last_heal);
        if now_ms > quiet_since + grace_ms {
            failures.push(format!(
                "no answer for {} ms after the faults healed (at {now_ms} ms, last fault healed at {last_heal} ms)",
                now_ms - quiet_since
            ));
            break;
        }
        if now_ms > deadline_ms {
            failures.push(format!(
                "clients still running at {now_ms} ms, {RUN_HORIZONS_MAX}× the expected length"
            ));
            break;
        }
        if let Err(e) = sim.step() {
            failures.push(format!("host software failed: {e}"));
            break;
        }
        if crate::panics::seen() {
            break;
        }
        let crash_active = faults
            .iter()
            .enumerate()
            .any(|(i, f)| f.kind == FaultKind::Crash && begun[i] && !ended[i]);
        if let Some(healed_ms) = watch.step(&mut sim, &hosts, &recorder, crash_active) {
            last_heal = last_heal.max(healed_ms);
            deadline_ms = deadline_ms.max(healed_ms + config.length_bound_ms());
        }
    }
    state.over = true;
    for (i, f) in faults.iter().enumerate() {
        // A client away for good now would rejoin into a run that is over.
        if begun[i] && !ended[i] && f.heals() && f.kind != FaultKind::Rejoin {
            end(&mut sim, &hosts, &recorder, f, &mut state);
        }
    }
    watch.heal(&mut sim, &hosts, &recorder);
    // Closes need a few steps to reach the other side; a connection whose
    // other end is gone may still hold input the gateway takes at the
    // handoff credit's pace (a client that left with megabytes sent): the
    // run goes on while one does, up to QUIESCE_MS_MAX.
    for ms in 0..QUIESCE_MS_MAX {
        if ms >= QUIESCE_MS && recorder.borrow().one_sided().next().is_none() {
            break;
        }
        if let Err(e) = sim.step() {
            failures.push(format!("host software failed while quiescing: {e}"));
            break;
        }
    }
    let panic = crate::panics::take();
    let sim_elapsed = Nanos(u64::try_from(sim.elapsed().as_nanos()).expect("short run"));

    let reports: Vec<Option<Report>> = hosts
        .clients
        .iter()
        .zip(state.gone.iter().zip(&state.away).map(|(g, a)| *g || *a))
        .map(|(c, gone)| {
            (!gone).then(|| {
                let workers = c.workers();
                let with_flow = |w: &Rc<RefCell<fep_core::Worker<Client>>>| {
                    let w = w.borrow();
                    let mut report = w.service().report().clone();
                    report.flow = w.service().flow_stats().cloned();
                    report
                };
                let mut report = with_flow(&workers[0]);
                for w in &workers[1..] {
                    report.merge(&with_flow(w));
                }
                report
            })
        })
        .collect();
    let round_trips = reports
        .first()
        .and_then(Option::as_ref)
        .map(|r| r.trace.clone())
        .unwrap_or_default();
    let wire = recorder
        .borrow_mut()
        .take_wire_check()
        .expect("installed before the run");
    let answered = wire.answered();
    let order_check = recorder.borrow_mut().take_order_check();
    let order_commands = order_check.as_ref().map_or(0, OrderCheck::commands);
    let journal = order_check.as_ref().map(OrderCheck::stats);
    let order_verdicts = order_check.map(|check| {
        let workers = hosts.exchange.workers();
        let worker = workers.first().map(|w| w.borrow());
        check.finish(worker.as_ref().and_then(|w| w.service().engine()))
    });
    let mut verdicts = check::check_run(
        config,
        &faults,
        &hosts,
        &recorder.borrow(),
        wire,
        &reports,
        check::Findings {
            failures,
            panic,
            drained: state.drain_ms.is_some(),
            dials_caught: state.dials_caught,
        },
    );
    // Safety before liveness: the order verdicts go before the last one.
    let liveness = verdicts.pop().expect("check_run ends with liveness");
    verdicts.extend(order_verdicts.into_iter().flatten());
    verdicts.push(liveness);
    drop(sim);
    let merged = reports
        .iter()
        .flatten()
        .fold(None, |acc: Option<Report>, r| {
            Some(match acc {
                None => r.clone(),
                Some(mut acc) => {
                    acc.merge(r);
                    acc
                }
            })
        });
    let recorder = recorder.borrow();
    Outcome {
        answered,
        config: config.clone(),
        faults,
        digest: recorder.digest(),
        trace_lines: recorder.lines(),
        trace: recorder.text().map(str::to_string),
        sim_elapsed,
        report: merged,
        round_trips,
        verdicts,
        order_commands,
        journal,
    }
}

/// Restarts an exchange whose journal failed (an I/O error on write or
/// sync, or while recovering): it stops acknowledging at once, refuses
/// `SHUTTING_DOWN`, and [`JOURNAL_RESTART_MS`] later the harness restarts
/// it on the same directory, as an operator would. The refusals and the
/// restart's lost upstream are explained to the wire check from the
/// failure on.
#[derive(Debug, Default)]
struct JournalWatch {
    /// The incarnation that failed, and when it is restarted (ms).
    restart: Option<(u32, u64)>,
    /// Incarnations up to this one were handled.
    handled: u32,
}

impl JournalWatch {
    /// After a step: returns when a restart healed the exchange (ms).
    fn step(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        hosts: &Hosts,
        recorder: &SharedRecorder,
        crash_active: bool,
    ) -> Option<u64> {
        let log = hosts.journal.as_ref()?;
        let now_ms = millis(sim.elapsed());
        let incarnation = hosts.exchange.incarnation();
        if let Some((failed, at_ms)) = self.restart {
            if now_ms < at_ms {
                return None;
            }
            self.restart = None;
            // A crash fault that struck meanwhile restarts it itself.
            if !crash_active && incarnation == failed {
                fault_line(recorder, sim, format_args!("journal restart"));
                sim.bounce("exchange");
            }
            return Some(now_ms);
        }
        let workers = hosts.exchange.workers();
        let unrecovered = log.slot.borrow().is_none();
        let broken = incarnation > self.handled
            && !crash_active
            && workers
                .first()
                .is_some_and(|w| unrecovered || w.borrow().service().journal_failed());
        if !broken {
            return None;
        }
        self.handled = incarnation;
        fault_line(recorder, sim, format_args!("journal failed: restart"));
        if unrecovered {
            // The driver reports a running journal's failure itself; a
            // start that could not recover is seen only here (o1–o3 seed
            // 1065 of 0..2000: an I/O error on the first segment's header
            // at the exchange's first start, then this restart lost the
            // gateway's upstream with no failure to explain it).
            let at = u64::try_from(sim.elapsed().as_nanos()).expect("short run");
            if let Some(wire) = recorder.borrow_mut().wire_check_mut() {
                wire.journal_failed(at);
            }
        }
        sim.crash("exchange");
        recorder.borrow_mut().host_crashed(hosts.exchange.ix());
        let at_ms = now_ms + JOURNAL_RESTART_MS;
        self.restart = Some((incarnation, at_ms));
        None
    }
}

impl JournalWatch {
    /// The run is over: a restart still due happens now, as every fault
    /// heals before the quiescence.
    fn heal(&mut self, sim: &mut turmoil::Sim<'_>, hosts: &Hosts, recorder: &SharedRecorder) {
        if let Some((failed, _)) = self.restart.take() {
            if hosts.exchange.incarnation() == failed {
                fault_line(recorder, sim, format_args!("journal restart"));
                sim.bounce("exchange");
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).expect("short run")
}

/// What the faults have done to the run so far.
struct State {
    /// Clients that left for good.
    gone: Vec<bool>,
    /// Clients away until their `rejoin` heals.
    away: Vec<bool>,
    /// When the gateway's drain began (simulated ms).
    drain_ms: Option<u64>,
    /// Latency and hold faults in force on each client's link.
    slowed: Vec<u32>,
    /// Clients whose rejoin is due but waits for their link to heal: a
    /// dial into a held or slowed link times out, which no client
    /// survives and nothing would explain.
    returning: Vec<bool>,
    /// Clients whose link a `hold` or `latency` fault began to slow while
    /// they were opening a connection: that dial may time out, and the
    /// fault explains it (a rejoin waits for a slowed link to heal, but a
    /// link can be slowed just after the dial began).
    dials_caught: Vec<bool>,
    /// The run is over: no client comes back any more.
    over: bool,
}

impl State {
    /// Every client is done or gone for good.
    fn all_done(&self, hosts: &Hosts) -> bool {
        hosts
            .clients
            .iter()
            .zip(self.gone.iter().zip(&self.away))
            .all(|(c, (gone, away))| *gone || !*away && c.is_done())
    }
}
