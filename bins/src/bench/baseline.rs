//! `fepbench baseline`: the legs it runs (direct, the tokio proxy, the C
//! epoll relay, the gateway in each write mode, closed loop and
//! pipelined), and the `baseline.md` that compares them, each figure a
//! median across rounds and each ratio taken within the same run.

use std::path::{Path, PathBuf};

use fep_net::WriteMode;
use fep_trading::gateway::Routing;

use crate::bench::crelay;
use crate::bench::pin::LoadKind;
use crate::bench::report::Spread;
use crate::bench::run::{Leg, LoadFlags, Target};
use crate::bench::summary::{Percentile, RunSummary};
use crate::bench::tcpstat::TcpCounters;

/// The baseline legs, in the order they run each round; the C relay's
/// two legs only when it was compiled (`c_relay` is its binary).
/// `upstreams`: the upstream connections of the `upstreams-pipelined` leg.
pub fn baseline_legs(
    load: &LoadFlags,
    pipelined: &LoadFlags,
    upstreams: u16,
    c_relay: Option<&Path>,
) -> Vec<Leg> {
    let gateway = |write_mode: WriteMode| Target::Gateway {
        workers: 1,
        routing: Routing::Local,
        write_mode,
        upstream_connections: 1,
    };
    let leg = |name: &str, target: Target, load: &LoadFlags| Leg {
        name: name.into(),
        target,
        load: load.clone(),
    };
    let c_relay = c_relay.map(|program| Target::CRelay {
        program: program.to_path_buf(),
    });
    let mut legs = vec![
        leg("direct", Target::Exchange, load),
        leg("tokio", Target::TokioProxy, load),
    ];
    if let Some(target) = &c_relay {
        legs.push(leg(C_RELAY, target.clone(), load));
    }
    legs.extend([
        leg("gateway", gateway(WriteMode::Speculative), load),
        leg("deferred", gateway(WriteMode::Deferred), load),
        leg("batched", gateway(WriteMode::Batched), load),
        leg("tokio-pipelined", Target::TokioProxy, pipelined),
    ]);
    if let Some(target) = c_relay {
        legs.push(leg(C_RELAY_PIPELINED, target, pipelined));
    }
    legs.push(leg(
        "gateway-pipelined",
        gateway(WriteMode::Speculative),
        pipelined,
    ));
    legs.push(leg(
        "batched-pipelined",
        gateway(WriteMode::Batched),
        pipelined,
    ));
    legs.push(leg(
        UPSTREAMS_PIPELINED,
        Target::Gateway {
            workers: 1,
            routing: Routing::Local,
            write_mode: WriteMode::Speculative,
            upstream_connections: upstreams,
        },
        pipelined,
    ));
    legs
}

/// The pipelined gateway leg with several upstream connections per worker.
const UPSTREAMS_PIPELINED: &str = "upstreams-pipelined";

/// The C epoll relay's closed-loop leg (also a `fepbench knee` target).
pub const C_RELAY: &str = "c-relay";
/// The C epoll relay's pipelined leg.
const C_RELAY_PIPELINED: &str = "c-relay-pipelined";

/// Compiles the C relay into the baseline directory; `Err` is the warning
/// that says why its legs are skipped.
pub fn build_c_relay(base_dir: &Path) -> Result<PathBuf, String> {
    let cc = std::env::var("CC").ok();
    let compiler = crelay::compiler_command(cc.as_deref());
    crelay::build(base_dir, &compiler)
        .map_err(|e| format!("{C_RELAY} legs skipped: cannot compile the C epoll relay: {e}"))
}

/// Median across rounds of one figure of one leg.
fn leg_median(
    done: &[RunSummary],
    leg: &str,
    figure: impl Fn(&RunSummary) -> Option<f64>,
) -> Option<f64> {
    let values: Vec<f64> = done
        .iter()
        .filter(|s| s.settings.scenario == leg)
        .filter_map(figure)
        .collect();
    Spread::of(&values).map(|s| s.median)
}

fn rtt_at(p: Percentile) -> impl Fn(&RunSummary) -> Option<f64> {
    move |s| s.loadgen.as_ref().map(|l| l.rtt.at(p))
}

fn throughput(s: &RunSummary) -> Option<f64> {
    s.loadgen.as_ref().map(|l| l.throughput_msgs_per_s)
}

/// `baseline.md`: per leg the median of its rounds, and each comparison
/// as a ratio of medians taken in the same run; `warnings` (a leg that
/// could not run) come first.
pub fn baseline_markdown(legs: &[Leg], done: &[RunSummary], warnings: &[String]) -> String {
    use std::fmt::Write as _;
    let mut md = String::from("# fepbench baseline\n\n");
    for w in warnings {
        let _ = writeln!(md, "> **warning**: {w}\n");
    }
    if let Some(first) = done.first() {
        let _ = writeln!(
            md,
            "Machine: {} × {}{}.\n",
            first.machine.cores,
            first.machine.cpu_model,
            first.settings.congestion_clause()
        );
    }
    // Placement follows the load (closed loop vs pipelined), so it is
    // stated per leg, and each distinct choice once with its reason.
    let placement = |leg: &str| {
        done.iter()
            .find(|s| s.settings.scenario == leg)
            .map(|s| &s.pinning)
    };
    let _ = writeln!(
        md,
        "| leg | conns × inflight × size | rtt p50 | p99 | p99.9 | msgs/s | placement |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---|");
    for leg in legs {
        let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
        let _ = writeln!(
            md,
            "| {} | {} × {} × {} | {} | {} | {} | {} | {} |",
            leg.name,
            leg.load.connections,
            leg.load.inflight,
            leg.load.size,
            cell(leg_median(done, &leg.name, rtt_at(Percentile::P50))),
            cell(leg_median(done, &leg.name, rtt_at(Percentile::P99))),
            cell(leg_median(done, &leg.name, rtt_at(Percentile::P999))),
            leg_median(done, &leg.name, throughput)
                .map_or("–".to_string(), |v| format!("{v:.0}")),
            placement(&leg.name).map_or("–", |p| p.plan.as_str()),
        );
    }
    let mut reasons: Vec<(&str, &str)> = Vec::new();
    for leg in legs {
        if let Some(p) = placement(&leg.name) {
            if !reasons.contains(&(p.plan.as_str(), p.reason.as_str())) {
                reasons.push((p.plan.as_str(), p.reason.as_str()));
            }
        }
    }
    for (plan, reason) in reasons {
        let _ = writeln!(md, "\nPlacement {plan}: {reason}.");
    }
    let ratio = |a: &str, b: &str, figure: &dyn Fn(&RunSummary) -> Option<f64>| match (
        leg_median(done, a, figure),
        leg_median(done, b, figure),
    ) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}", x / y),
        _ => "–".to_string(),
    };
    let p50 = rtt_at(Percentile::P50);
    let p99 = rtt_at(Percentile::P99);
    let _ = writeln!(md, "\n| ratio of medians | rtt p50 | rtt p99 |");
    let _ = writeln!(md, "|---|---:|---:|");
    for (a, b) in [
        ("gateway", "direct"),
        ("gateway", "tokio"),
        ("gateway", C_RELAY),
        ("deferred", "gateway"),
        ("batched", "gateway"),
    ] {
        let _ = writeln!(
            md,
            "| {a}/{b} | {} | {} |",
            ratio(a, b, &p50),
            ratio(a, b, &p99)
        );
    }
    let _ = writeln!(md, "\n| ratio of medians | msgs/s |");
    let _ = writeln!(md, "|---|---:|");
    for (a, b) in [
        ("gateway-pipelined", "tokio-pipelined"),
        ("gateway-pipelined", C_RELAY_PIPELINED),
        ("batched-pipelined", "gateway-pipelined"),
        ("batched-pipelined", "tokio-pipelined"),
        (UPSTREAMS_PIPELINED, "gateway-pipelined"),
        (UPSTREAMS_PIPELINED, C_RELAY_PIPELINED),
    ] {
        let _ = writeln!(md, "| {a}/{b} | {} |", ratio(a, b, &throughput));
    }
    if let Some(Target::Gateway {
        upstream_connections,
        ..
    }) = legs
        .iter()
        .find(|l| l.name == UPSTREAMS_PIPELINED)
        .map(|l| &l.target)
    {
        let _ = writeln!(
            md,
            "
{UPSTREAMS_PIPELINED}: the gateway with {upstream_connections} upstream \
             connections per worker; the other gateway legs keep one, and the C relay \
             opens one per client."
        );
    }
    tcp_table(&mut md, legs, done);
    if let (Some(spec), Some(deferred)) = (
        leg_median(done, "gateway", &p99),
        leg_median(done, "deferred", &p99),
    ) {
        let _ = writeln!(
            md,
            "\nSpeculative writes change the rtt p99 by {:+.0}% against deferred.",
            (spec / deferred - 1.0) * 100.0
        );
    }
    md
}

/// What the kernel's TCP did during the pipelined legs (medians over each
/// leg's runs, per million messages of the leg, warm-up included): where a
/// single stream held back by its congestion control retransmits and
/// reorders, and a hundred streams do not.
fn tcp_table(md: &mut String, legs: &[Leg], done: &[RunSummary]) {
    use std::fmt::Write as _;
    let pipelined: Vec<&Leg> = legs
        .iter()
        .filter(|l| LoadKind::of(l.load.inflight, &l.load.extra_args) == LoadKind::Pipelined)
        .collect();
    let per_million = |leg: &str, pick: fn(&TcpCounters) -> u64| {
        leg_median(done, leg, |s| {
            let tcp = s.tcp.as_ref()?;
            let messages = (s.settings.warmup + s.settings.count) as f64;
            (messages > 0.0).then(|| pick(tcp) as f64 * 1e6 / messages)
        })
    };
    if pipelined.is_empty() || done.iter().all(|s| s.tcp.is_none()) {
        return;
    }
    let _ = writeln!(
        md,
        "
TCP during the pipelined legs (the kernel's counters, system-wide), \
         per million messages, median of the runs:\n\n\
         | leg | segments sent | retransmitted | SACK reorderings | DSACKs received | zero windows |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    for leg in pipelined {
        let cell = |pick: fn(&TcpCounters) -> u64| {
            per_million(&leg.name, pick).map_or("–".to_string(), |v| format!("{v:.0}"))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            leg.name,
            cell(|t| t.out_segs),
            cell(|t| t.retrans_segs),
            cell(|t| t.sack_reorder),
            cell(|t| t.dsack_recv),
            cell(|t| t.zero_window),
        );
    }
}
