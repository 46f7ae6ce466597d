//! The shared scenario bodies (`fep_load::scenario::conformance`) under
//! the simulator: one client host, no faults, a fixed seed.

use fep_load::client::Report;
use fep_load::scenario::conformance::{run_all, Arm, Spec};
use fep_sim::run::{run, RunConfig};

struct Simulated {
    seed: u64,
}

impl Arm for Simulated {
    fn name(&self) -> &str {
        "simulation"
    }

    fn run(&mut self, spec: &Spec) -> Report {
        let config = RunConfig {
            pings: spec.pings,
            clients: 1,
            connections: spec.connections,
            inflight: spec.inflight,
            round_trips: spec.trace,
            ..RunConfig::new(spec.scenario, self.seed)
        };
        let outcome = run(&config);
        assert!(
            outcome.passed(),
            "{}: {:?}",
            config.command(),
            outcome.first_failure()
        );
        outcome.report.expect("the client stayed to the end")
    }
}

#[test]
fn the_scenario_bodies_pass_in_simulation() {
    run_all(&mut Simulated { seed: 11 });
}
