//! A seed that panics is that seed's failure: the sweep goes on, reports
//! every other seed, and counts the panicking one among its failures.

use fep_load::scenario::Scenario;
use fep_sim::check::HOST_PANICKED;
use fep_sim::driver::Sabotage;
use fep_sim::faults::FaultPlan;
use fep_sim::run::run;
use fep_sim::run::RunConfig;
use fep_sim::sweep::{shrink, sweep, PANICKED};

/// Seeds whose driver is sabotaged to panic at its first write.
const PANICKING: [u64; 2] = [2, 5];

fn config(seed: u64) -> RunConfig {
    RunConfig {
        sabotage: if PANICKING.contains(&seed) {
            Sabotage::Panic
        } else {
            Sabotage::None
        },
        ..RunConfig::seeded(Scenario::S1, seed, 200, FaultPlan::none())
    }
}

#[test]
fn a_panicking_seed_fails_alone_and_the_sweep_reports_every_seed() {
    let result = sweep(config, 0..8, 2);
    let seeds: Vec<u64> = result.results.iter().map(|r| r.seed).collect();
    assert_eq!(seeds, (0..8).collect::<Vec<_>>(), "every seed reported");
    let failed: Vec<u64> = result.failures().map(|r| r.seed).collect();
    assert_eq!(failed, PANICKING.to_vec());
    for f in result.failures() {
        let failure = f.failure.as_deref().unwrap_or("");
        assert!(failure.starts_with(HOST_PANICKED), "{failure}");
        assert!(
            failure.contains("sabotage"),
            "the panic message is kept: {failure}"
        );
    }
    for ok in result.results.iter().filter(|r| r.failure.is_none()) {
        assert!(ok.answered > 0, "seed {} answered nothing", ok.seed);
    }
}

#[test]
fn a_panic_in_the_harness_itself_is_caught_as_that_seeds_failure() {
    // Zero clients trips the harness's own precondition (an assert).
    let result = sweep(
        |seed| RunConfig {
            clients: if seed == 1 { 0 } else { 1 },
            ..RunConfig::seeded(Scenario::S1, seed, 100, FaultPlan::none())
        },
        0..3,
        2,
    );
    let failed: Vec<(u64, bool)> = result
        .failures()
        .map(|r| {
            let f = r.failure.as_deref().unwrap_or("");
            (r.seed, f.starts_with(PANICKED))
        })
        .collect();
    assert_eq!(failed, vec![(1, true)]);
    assert_eq!(result.results.len(), 3);
}

#[test]
fn the_replay_command_of_a_panicking_seed_names_that_seed() {
    let result = sweep(config, 5..6, 1);
    let failure = result.failures().next().expect("seed 5 panics");
    assert!(config(failure.seed)
        .command()
        .contains(&format!("--seed {}", PANICKING[1])));
}

#[test]
fn a_seed_whose_host_panics_shrinks_to_a_smaller_run_that_still_panics() {
    let failing = config(PANICKING[0]);
    let small = shrink(&failing).expect("the seed fails");
    assert!(small.pings < failing.pings, "{} pings", small.pings);
    let replay = run(&small);
    assert_eq!(replay.first_failure().map(|v| v.name), Some(HOST_PANICKED));
}

#[test]
fn a_seed_whose_harness_panics_shrinks_without_taking_the_shrink_down() {
    let failing = RunConfig {
        clients: 0,
        ..RunConfig::seeded(Scenario::S1, 3, 64, FaultPlan::all())
    };
    let small = shrink(&failing).expect("the run panics: a failure");
    assert!(small.pings < failing.pings, "{} pings", small.pings);
    assert_eq!(small.clients, 0);
    assert!(small.faults.items.is_empty(), "{}", small.faults);
    let replay = std::panic::catch_unwind(|| run(&small));
    assert!(replay.is_err(), "the shrunk run panics again");
}
