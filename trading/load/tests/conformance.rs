//! The shared scenario bodies on the in-memory harness (the simulator and
//! the real backend run the same bodies in their own crates).

use fep_load::client::{ClientConfig, Load, Report};
use fep_load::harness::{Harness, HarnessConfig};
use fep_load::scenario::conformance::{run_all, Arm, Spec};

struct InMemory;

impl Arm for InMemory {
    fn name(&self) -> &str {
        "in-memory"
    }

    fn run(&mut self, spec: &Spec) -> Report {
        let client = ClientConfig {
            connections: spec.connections,
            warmup: 0,
            count: spec.pings,
            load: Load::Pipelined {
                inflight: spec.inflight,
            },
            trace_max: spec.trace,
            ..ClientConfig::default()
        };
        let scenario = spec.scenario;
        let gateway = scenario.gateway_config();
        let mut h = Harness::new(HarnessConfig {
            gateway: Some(gateway),
            client,
            ..Default::default()
        });
        h.run();
        h.client().service().report().clone()
    }
}

#[test]
fn the_scenario_bodies_pass_in_memory() {
    run_all(&mut InMemory);
}
