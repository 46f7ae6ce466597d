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

/// Seed 840563 of o2 (a long run): a client sent its last requests just
/// as a stall of 1,495 ms began, and gave up on their answers at its
/// 1-second drain deadline while they waited in its socket. A client now
/// waits out the longest fault of its run before its drain deadline runs.
#[test]
fn a_client_that_stops_reading_past_its_drain_deadline_still_gets_every_pong() {
    // One connection, two rounds of eight. The stall begins while the
    // reader waits for the first round's pongs, so it takes them and then
    // stops; the second round, the last pings, are sent from them, and
    // their pongs wait out the stall, well past the one-second deadline.
    let outcome = run(&RunConfig {
        pings: 16,
        clients: 1,
        connections: 1,
        inflight: 8,
        faults: "stall@3+2500/0".parse().unwrap(),
        ..RunConfig::new(Scenario::S1, 5)
    });
    for v in &outcome.verdicts {
        assert!(v.passed(), "{}: {:?}", v.name, v.violations);
    }
    let report = outcome.report.unwrap();
    assert_eq!(
        (report.pongs, report.lost, report.drain_timeouts),
        (16, 0, 0)
    );
    assert!(
        report.hops[3].max() >= 2_400_000_000,
        "the pongs waited out the stall: hop4 max {} ns",
        report.hops[3].max()
    );
}

/// Seeds 202811 and 203010 of the long sweeps: the exchange paused the
/// gateway's connection while its pongs passed the output's high-water
/// mark, and the write that drained them queued the resume
/// (`Service::on_drained`) without the driver polling it, so the exchange
/// read nothing more until the gateway, hearing nothing for three
/// heartbeat intervals, declared it dead and rejected what was in flight.
#[test]
fn an_exchange_that_paused_a_gateway_for_its_backlog_reads_again_once_its_writes_drain_it() {
    let outcome = run(&RunConfig {
        pings: 500,
        clients: 1,
        connections: 3,
        // Deep windows of 33 kB pings: the exchange's pongs pass its
        // 2 MiB high-water mark within a step.
        inflight: 64,
        size: 33_411,
        keep_trace: true,
        ..RunConfig::new(Scenario::S1, 5)
    });
    let pauses = lines(&outcome, "exchange/w0 pause ").count();
    let resumes = lines(&outcome, "exchange/w0 resume ").count();
    assert!(pauses > 0, "the exchange never paused its gateway");
    assert_eq!(pauses, resumes, "every pause ends in a resume");
    for v in &outcome.verdicts {
        assert!(v.passed(), "{}: {:?}", v.name, v.violations);
    }
    let report = outcome.report.unwrap();
    assert_eq!((report.pongs, report.rejects, report.lost), (500, 0, 0));
}
