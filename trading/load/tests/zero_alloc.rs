//! The hot path does not allocate: a counting global allocator watches a
//! warmed-up gateway through 10,000 round trips, alone (copying its input,
//! and forwarding from a lent one as the real driver does) and in the full
//! in-memory path (s1, and s3, where handoffs travel as bytes in reused
//! lanes).

use fep_core::Nanos;
use fep_load::client::{ClientConfig, Load};
use fep_load::harness::{Harness, HarnessConfig};
use fep_load::scenario::Scenario;
use fep_trading::harness::GatewayRig;
use fep_trading::msg::{PerfPing, OP_PERF_PING};

/// Allocations made while running `f` (the allocation-counter crate swaps
/// in a counting global allocator for this test binary; it keeps the
/// `unsafe` of a `GlobalAlloc` out of our code).
fn allocations_in(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

#[test]
fn the_counter_sees_an_allocation() {
    // Guards the guard: a counter that never counts would pass every test.
    let n = allocations_in(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert!(n >= 1);
}

#[test]
fn a_warm_gateway_worker_does_not_allocate_per_round_trip() {
    let mut rig = GatewayRig::new();
    let pad = [7u8; 10];
    let mut ping = Vec::new();
    PerfPing::from_client(1, Nanos(1), &pad).encode(OP_PERF_PING, &mut ping);
    let mut pong = Vec::with_capacity(256);
    for _ in 0..100 {
        rig.round_trip(&ping, &mut pong);
    }
    let mut bytes = 0;
    let n = allocations_in(|| {
        for _ in 0..10_000 {
            bytes += rig.round_trip(&ping, &mut pong);
        }
    });
    assert_eq!(
        bytes,
        10_000 * 2 * ping.len(),
        "every ping and pong went through"
    );
    assert_eq!(rig.worker.service().stats().pongs, 10_100);
    assert_eq!(n, 0, "allocations in 10,000 round trips");
}

#[test]
fn forwarding_from_a_lent_input_does_not_allocate_per_round_trip() {
    // The real driver's path: 1 KiB pads written from the read buffer, all
    // of them, or part (the rest copied in when the input is settled).
    for write_max in [usize::MAX, 100] {
        let mut rig = GatewayRig::new();
        let pad = [7u8; 1024];
        let mut ping = Vec::new();
        PerfPing::from_client(1, Nanos(1), &pad).encode(OP_PERF_PING, &mut ping);
        let mut pong = Vec::with_capacity(4096);
        let mut delivered = Vec::with_capacity(4096);
        for _ in 0..100 {
            rig.round_trip_into(&ping, Some(write_max), &mut pong, &mut delivered);
        }
        let mut bytes = 0;
        let n = allocations_in(|| {
            for _ in 0..10_000 {
                bytes += rig.round_trip_into(&ping, Some(write_max), &mut pong, &mut delivered);
            }
        });
        assert_eq!(bytes, 10_000 * 2 * ping.len(), "writes of {write_max}");
        assert_eq!(delivered.len(), ping.len());
        assert_eq!(
            n, 0,
            "allocations in 10,000 round trips, writes of {write_max}"
        );
    }
}

fn full_path_allocations(scenario: Scenario) -> u64 {
    let client = ClientConfig {
        connections: 4,
        warmup: 0,
        count: 30_000,
        load: Load::Pipelined { inflight: 4 },
        ..Default::default()
    };
    let gateway = scenario.gateway_config();
    let mut h = Harness::new(HarnessConfig {
        gateway: Some(gateway),
        client,
        ..Default::default()
    });
    h.client_start();
    h.run_until(|h| h.client().service().report().pongs >= 5_000);
    let n = allocations_in(|| h.run_until(|h| h.client().service().report().pongs >= 15_000));
    assert!(h.client().service().report().pongs >= 15_000);
    n
}

#[test]
fn the_whole_in_memory_path_does_not_allocate_in_s1_or_s3() {
    assert_eq!(full_path_allocations(Scenario::S1), 0, "s1");
    assert_eq!(full_path_allocations(Scenario::S3), 0, "s3");
}
