//! The checker can fail: deliberately broken drivers are caught by a sweep.

use fep_load::scenario::Scenario;
use fep_sim::driver::Sabotage;
use fep_sim::run::{run, RunConfig};
use fep_sim::sweep::{default_threads, sweep};

fn broken(scenario: Scenario, sabotage: Sabotage) -> RunConfig {
    RunConfig {
        sabotage,
        pings: 400,
        ..RunConfig::new(scenario, 0)
    }
}

fn failed_invariants(config: &RunConfig) -> Vec<&'static str> {
    run(config)
        .verdicts
        .iter()
        .filter(|v| !v.passed())
        .map(|v| v.name)
        .collect()
}

#[test]
fn a_gateway_whose_handoff_queues_swap_tasks_is_caught_by_a_sweep() {
    let base = broken(Scenario::S3, Sabotage::SwapHandoffs);
    let result = sweep(
        |seed| RunConfig {
            seed,
            ..base.clone()
        },
        0..20,
        default_threads(),
    );
    // A seed whose accept spread leaves every session on its own upstream
    // hands nothing off, and has nothing to swap.
    let caught = result.failures().count();
    assert!(caught >= 10, "only {caught} of 20 seeds caught it");
    // Swapped batches reorder a connection's pongs, or the last batch,
    // held for a successor that never comes, loses its pings.
    let seed = result.failures().next().expect("caught").seed;
    let names = failed_invariants(&RunConfig { seed, ..base });
    assert!(!names.is_empty());
    assert!(
        names.iter().all(|n| [
            "per-connection FIFO",
            "every ping answered exactly once",
            "client reports pass the scenario check"
        ]
        .contains(n)),
        "{names:?}"
    );
}

#[test]
fn a_gateway_that_writes_pongs_to_another_client_is_caught_by_a_sweep() {
    let base = broken(Scenario::S1, Sabotage::CrossWrites);
    let result = sweep(
        |seed| RunConfig {
            seed,
            ..base.clone()
        },
        0..20,
        default_threads(),
    );
    let caught = result.failures().count();
    assert_eq!(caught, 20, "only {caught} of 20 seeds caught it");
    let names = failed_invariants(&RunConfig { seed: 3, ..base });
    // The client side sees a pong for a seq it never sent on that
    // connection (or one carrying another ping's t1); the gateway side sees
    // a pong leave on a connection its tag does not name.
    assert!(names.contains(&"gateway routes by the tag"), "{names:?}");
    assert!(
        names.contains(&"every ping answered exactly once")
            || names.contains(&"pong on the connection that sent the ping"),
        "{names:?}"
    );
}

#[test]
fn a_driver_that_keeps_sessions_of_closed_connections_is_caught() {
    let base = broken(Scenario::S2, Sabotage::IgnoreEof);
    let names = failed_invariants(&base);
    // The gateway never hears of the closes, so its own count of closed
    // client connections falls behind the wire's too.
    assert_eq!(
        names,
        [
            "gateway counters agree with the wire",
            "no session left after close"
        ]
    );
}

#[test]
fn a_gateway_that_loses_handoffs_never_completes_and_is_caught() {
    // One client, one connection: when its pings cross workers, its window
    // fills with pings that never come back and the client never finishes.
    let base = RunConfig {
        clients: 1,
        connections: 1,
        ..broken(Scenario::S3, Sabotage::DropHandoffs)
    };
    let result = sweep(
        |seed| RunConfig {
            seed,
            ..base.clone()
        },
        0..10,
        default_threads(),
    );
    let seed = result.failures().next().expect("caught").seed;
    let names = failed_invariants(&RunConfig { seed, ..base });
    assert!(names.contains(&"completes after faults heal"), "{names:?}");
}

#[test]
fn a_gateway_that_loses_handoffs_under_load_is_caught_by_its_clients() {
    // With several connections the others go on; the lost pings show in
    // the reports when the drain deadline passes.
    let base = broken(Scenario::S3, Sabotage::DropHandoffs);
    let result = sweep(
        |seed| RunConfig {
            seed,
            ..base.clone()
        },
        0..10,
        default_threads(),
    );
    let seed = result.failures().next().expect("caught").seed;
    let outcome = run(&RunConfig { seed, ..base });
    let report = outcome
        .verdicts
        .iter()
        .find(|v| v.name == "client reports pass the scenario check")
        .expect("the report check runs");
    assert!(
        report.violations.iter().any(|v| v.contains("lost")),
        "{report}"
    );
}

#[test]
fn the_same_runs_pass_without_the_sabotage() {
    for scenario in [Scenario::S1, Scenario::S3] {
        let base = broken(scenario, Sabotage::None);
        let result = sweep(
            |seed| RunConfig {
                seed,
                ..base.clone()
            },
            0..20,
            default_threads(),
        );
        assert_eq!(
            result.failures().count(),
            0,
            "{scenario}: {:?}",
            result.failures().next()
        );
    }
}
