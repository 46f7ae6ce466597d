//! The simulated drivers hold peers back the way the real backend does: a
//! full handoff queue leaves the bytes with their worker until it has room,
//! and a client that stops reading has its pongs wait in the gateway
//! instead of being lost.

use fep_load::scenario::Scenario;
use fep_sim::run::{run, Outcome, RunConfig};

fn traced(scenario: Scenario, faults: &str) -> Outcome {
    let outcome = run(&RunConfig {
        pings: 2_000,
        connections: 3,
        inflight: 8,
        faults: faults.parse().unwrap(),
        keep_trace: true,
        ..RunConfig::new(scenario, 5)
    });
    for v in &outcome.verdicts {
        assert!(v.passed(), "{}: {:?}", v.name, v.violations);
    }
    outcome
}

fn lines<'a>(outcome: &'a Outcome, what: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    outcome
        .trace
        .as_deref()
        .unwrap()
        .lines()
        .filter(move |l| l.contains(what))
}

#[test]
fn a_full_handoff_queue_holds_the_bytes_in_their_worker_until_it_has_room() {
    let outcome = traced(Scenario::S3, "refusehandoff@5+200/2");
    let waits = lines(&outcome, " handoff-wait ").count();
    assert!(waits > 0, "no handoff found its queue full");
    assert!(
        lines(&outcome, " handoff-lost ").next().is_none(),
        "a batch that waits is never dropped"
    );
    let report = outcome.report.unwrap();
    assert_eq!((report.pongs, report.rejects, report.lost), (2_000, 0, 0));
}

#[test]
fn a_client_that_stops_reading_gets_every_pong_once_it_reads_again() {
    let outcome = traced(Scenario::S1, "stall@5+60/0");
    let report = outcome.report.unwrap();
    assert_eq!((report.pongs, report.rejects, report.lost), (2_000, 0, 0));
    // The stall is in the client-bound hop, not upstream of the gateway.
    let hop4_max = report.hops[3].max();
    assert!(hop4_max >= 55_000_000, "hop4 max {hop4_max} ns");
    assert!(
        report.hops[1].max() < 10_000_000,
        "hop2 max {}",
        report.hops[1].max()
    );
}
