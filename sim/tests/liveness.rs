//! The exchange goes silent (a `hold` of the gateway–exchange link): the
//! gateway's heartbeat watch declares it dead after three intervals,
//! rejects what was in flight, and reconnects once the link delivers
//! again; the run ends and passes every check, it does not hang.

use fep_sim::faults::FaultPlan;
use fep_sim::run::{run, Outcome, RunConfig, GATEWAY_HEARTBEAT_MS};
use fep_load::scenario::Scenario;

const HOLD_AT_MS: u64 = 20;

fn held(scenario: Scenario, hold_ms: u64) -> Outcome {
    let plan: FaultPlan = format!("hold@{HOLD_AT_MS}+{hold_ms}/0").parse().unwrap();
    let config = RunConfig {
        faults: plan,
        pings: 4_000,
        keep_trace: true,
        ..RunConfig::new(scenario, 7)
    };
    let outcome = run(&config);
    assert!(
        outcome.passed(),
        "{}: {:?}",
        config.command(),
        outcome.first_failure()
    );
    outcome
}

/// Lines of the gateway containing `what` after the trace line `after`.
fn gateway_lines_after(outcome: &Outcome, after: &str, what: &str) -> usize {
    let trace = outcome.trace.as_deref().expect("kept");
    trace
        .lines()
        .skip_while(|l| !l.contains(after))
        .filter(|l| l.contains(" gateway/w") && l.contains(what))
        .count()
}

/// Simulated ms at which the gateway first closed a connection after the
/// hold began (the gateway closes no client here: it is the upstream).
fn gateway_close_ms(outcome: &Outcome) -> Option<u64> {
    let trace = outcome.trace.as_deref().expect("kept");
    trace
        .lines()
        .skip_while(|l| !l.contains("fault begin hold"))
        .find(|l| l.contains(" gateway/w") && l.contains(" close "))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .map(|ns| ns / 1_000_000)
}

#[test]
fn a_silent_exchange_ends_in_rejects_within_the_deadline_and_the_gateway_reconnects() {
    for scenario in Scenario::ALL {
        let outcome = held(scenario, 10 * GATEWAY_HEARTBEAT_MS);
        let report = outcome.report.as_ref().expect("the clients stayed");
        assert!(report.rejects > 0, "{scenario}: the silence went unnoticed");
        assert_eq!(report.sent, report.pongs + report.rejects, "{scenario}");
        // Declared dead three intervals after the exchange's last bytes
        // (it was answering until the hold began), give or take a tick.
        let at = gateway_close_ms(&outcome).expect("the gateway closed its upstream");
        let dead = HOLD_AT_MS + 3 * GATEWAY_HEARTBEAT_MS;
        assert!(
            (dead - 10..=dead + 10).contains(&at),
            "{scenario}: upstream declared dead at {at} ms, expected about {dead} ms"
        );
        // The gateway dials again (its dials time out while the link
        // holds, so it keeps trying with backoff).
        assert!(
            gateway_lines_after(&outcome, "fault begin hold", " connect p0") >= 1,
            "{scenario}: the gateway did not redial"
        );
        if scenario == Scenario::S1 {
            // Its dial in flight at the release completes: hand-shaked
            // again. (With two workers, a worker may still be in its
            // backoff, up to 500 ms, when the clients finish.)
            assert!(
                gateway_lines_after(&outcome, "fault end hold", " connected ") >= 1,
                "the gateway did not reconnect"
            );
        }
    }
}

#[test]
fn a_hold_shorter_than_three_intervals_costs_no_ping_its_pong() {
    let outcome = held(Scenario::S1, GATEWAY_HEARTBEAT_MS);
    let report = outcome.report.as_ref().expect("the clients stayed");
    assert_eq!(report.rejects, 0);
    assert_eq!(report.pongs, report.sent);
}
