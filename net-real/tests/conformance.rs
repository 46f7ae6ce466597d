//! The shared scenario bodies (`fep_load::scenario::conformance`) on the
//! real backend: exchange, gateway and client each on their own mio workers
//! over loopback, in this process.

use std::net::SocketAddr;
use std::time::Duration;

use fep_load::client::{Client, ClientConfig, Load, Report};
use fep_load::scenario::conformance::{run_all, Arm, Spec};
use fep_net::{Config, Readiness, Running};
use fep_trading::exchange::{Exchange, ExchangeConfig};
use fep_trading::gateway::Gateway;

const READY_TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

struct Real {
    exchange: Running<Exchange>,
}

impl Arm for Real {
    fn name(&self) -> &str {
        "real"
    }

    fn run(&mut self, spec: &Spec) -> Report {
        let upstream = self.exchange.local_addr().expect("the exchange listens");
        let scenario = spec.scenario;
        let workers = scenario.workers();
        let config = Config::new()
            .listen(loopback())
            .peers(vec![upstream])
            .workers(usize::from(workers));
        let gw = scenario.gateway_config();
        let gateway =
            fep_net::start(config, move |id| Gateway::new(id, gw.clone())).expect("gateway starts");
        assert_eq!(gateway.wait_ready(READY_TIMEOUT), Readiness::Ready);
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
        let target = gateway.local_addr().expect("the gateway listens");
        let clients = fep_net::run(Config::new().peers(vec![target]), move |_| {
            Client::new(client.clone())
        })
        .expect("the client runs");
        gateway.shutdown();
        gateway.join().expect("the gateway stops cleanly");
        let mut report = clients[0].service().report().clone();
        for c in &clients[1..] {
            report.merge(c.service().report());
        }
        report
    }
}

#[test]
fn the_scenario_bodies_pass_on_the_real_backend() {
    let config = Config::new().listen(loopback());
    let exchange = fep_net::start(config, |w| Exchange::new(w, ExchangeConfig::default()))
        .expect("exchange starts");
    assert_eq!(exchange.wait_ready(READY_TIMEOUT), Readiness::Ready);
    let mut arm = Real { exchange };
    run_all(&mut arm);
    arm.exchange.shutdown();
    arm.exchange.join().expect("the exchange stops cleanly");
}
