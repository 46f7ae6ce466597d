//! The gateway's internal latency legs on passed-in time: a ping read and
//! forwarded in one read is 0 ns on the request leg, the time until its
//! pong is read lands on the upstream leg, and delivering the pong in the
//! same read is 0 ns on the answer leg. Recording them does not allocate.

use fep_core::Nanos;
use fep_trading::harness::GatewayRig;
use fep_trading::latency::{LatencyHistogram, LATENCY_BOUNDS_NS};
use fep_trading::msg::{offset, PerfPing, OP_PERF_PING, OP_PERF_PONG};

fn ping(seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    PerfPing::from_client(seq, Nanos(1), &[0; 10]).encode(OP_PERF_PING, &mut out);
    out
}

/// Sends a ping at `sent`, reads its pong at `answered`.
fn round_trip(rig: &mut GatewayRig, seq: u64, sent: Nanos, answered: Nanos) {
    rig.worker.handle_read(sent, rig.client, &ping(seq));
    let mut pong = rig.worker.transmit_buf(rig.upstream).to_vec();
    assert!(!pong.is_empty(), "the ping was forwarded");
    rig.flush();
    pong[offset::OPCODE..offset::OPCODE + 2].copy_from_slice(&OP_PERF_PONG.to_be_bytes());
    rig.worker.handle_read(answered, rig.upstream, &pong);
    rig.flush();
}

/// The one bucket holding a value, and the histogram's count and sum.
fn only_bucket(h: &LatencyHistogram) -> usize {
    let filled: Vec<usize> = (0..h.buckets.len()).filter(|&i| h.buckets[i] > 0).collect();
    assert_eq!(filled.len(), 1, "{h:?}");
    filled[0]
}

#[test]
fn the_exchange_leg_is_the_time_from_forwarding_to_the_answers_read() {
    let mut rig = GatewayRig::new();
    let t = Nanos::from_millis(1);
    round_trip(&mut rig, 1, t, t + Nanos::from_micros(30));
    round_trip(
        &mut rig,
        2,
        t + Nanos::from_micros(40),
        t + Nanos::from_micros(75),
    );
    let s = rig.worker.service().stats();
    assert_eq!(s.upstream_leg.count, 2);
    assert_eq!(s.upstream_leg.sum_ns, 65_000);
    // 30 µs and 35 µs both fall in (20 µs, 50 µs].
    let bucket = only_bucket(&s.upstream_leg);
    assert_eq!(LATENCY_BOUNDS_NS[bucket], 50_000);
    assert_eq!(s.upstream_leg.buckets[bucket], 2);
    // Read and forwarded, read and delivered: one `now` each.
    for leg in [s.request_leg, s.answer_leg] {
        assert_eq!((leg.count, leg.sum_ns), (2, 0));
        assert_eq!(only_bucket(&leg), 0);
    }
}

#[test]
fn recording_the_legs_does_not_allocate() {
    let mut rig = GatewayRig::new();
    let frame = ping(1);
    let mut pong = Vec::with_capacity(256);
    for _ in 0..100 {
        rig.round_trip(&frame, &mut pong);
    }
    let before = rig.worker.service().stats();
    let n = allocation_counter::measure(|| {
        for _ in 0..1_000 {
            rig.round_trip(&frame, &mut pong);
        }
    })
    .count_total;
    assert_eq!(n, 0, "allocations on 1,000 round trips");
    let after = rig.worker.service().stats();
    assert_eq!(after.upstream_leg.count - before.upstream_leg.count, 1_000);
    assert_eq!(after.answer_leg.count - before.answer_leg.count, 1_000);
}
