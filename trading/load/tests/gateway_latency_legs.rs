//! The gateway's latency legs under handoff routing, on the in-memory
//! wiring's passed-in time: an order's first answer read on one worker and
//! delivered on the other counts the crossing on the answer leg (the lane
//! carries the read's time), and the request leg counts the crossing the
//! other way; nothing counts a time it did not see.

mod support;

use fep_core::Nanos;
use fep_load::client::ClientConfig;
use fep_load::harness::{Harness, HarnessConfig, NodeRef};
use fep_trading::gateway::{GatewayConfig, Routing};
use fep_trading::latency::LatencyHistogram;
use fep_trading::order::{self, SIDE_SELL, TIF_DAY};

use support::{connect, new_order};

/// Both workers' histograms of one leg, added up.
fn merged(
    h: &Harness,
    leg: impl Fn(&fep_trading::gateway::GatewayStats) -> LatencyHistogram,
) -> LatencyHistogram {
    let mut sum = LatencyHistogram::default();
    for w in 0..2 {
        let one = leg(&h.gateway(w).service().stats());
        for (b, n) in sum.buckets.iter_mut().zip(one.buckets) {
            *b += n;
        }
        sum.count += one.count;
        sum.sum_ns += one.sum_ns;
    }
    sum
}

#[test]
fn orders_crossing_workers_count_their_crossings_on_the_request_and_answer_legs() {
    let step = Nanos::from_micros(10);
    let mut h = Harness::new(HarnessConfig {
        gateway: Some(GatewayConfig {
            workers: 2,
            routing: Routing::Handoff,
            ..GatewayConfig::default()
        }),
        client: ClientConfig {
            connections: 1,
            warmup: 0,
            count: 1,
            ..Default::default()
        },
        step,
        ..Default::default()
    });
    // Two clients on worker 0: one is routed through worker 1's upstream.
    let mut clients = [
        connect(&mut h, NodeRef::Gateway(0)),
        connect(&mut h, NodeRef::Gateway(0)),
    ];
    for (i, c) in clients.iter_mut().enumerate() {
        let id = i as u64 + 1;
        c.send(
            &mut h,
            &new_order(id, 0, id as u32, SIDE_SELL, TIF_DAY, 100, 1),
        );
        assert_eq!(c.take(&h)[0].0, order::OP_ORDER_ACCEPTED);
    }
    let request = merged(&h, |s| s.request_leg);
    let upstream = merged(&h, |s| s.upstream_leg);
    let answer = merged(&h, |s| s.answer_leg);
    assert_eq!((request.count, upstream.count, answer.count), (2, 2, 2));
    // The local order crosses nothing: 0 on both legs. The other one waits
    // for a delivery step each way: a few steps, never more than the run.
    let elapsed = h.now().as_u64();
    for (name, leg) in [("request", request), ("answer", answer)] {
        assert!(leg.sum_ns > 0, "{name}: no crossing counted");
        assert!(
            leg.sum_ns % step.as_u64() == 0,
            "{name}: {} is no whole step",
            leg.sum_ns
        );
        assert!(
            leg.sum_ns < elapsed,
            "{name}: {} ns in a {elapsed} ns run",
            leg.sum_ns
        );
        assert_eq!(leg.buckets[0], 1, "{name}: the local order's 0 ns");
    }
    assert!(upstream.sum_ns > 0 && upstream.sum_ns < elapsed);
}
