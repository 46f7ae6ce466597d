//! One ping through the gateway worker (decode, route, stamp, encode) and
//! one through the exchange, on the state machines alone.
//!
//! `cargo bench -p fep-trading --bench worker`. A gateway round trip is two
//! passes: the ping out to the upstream and its pong back to the client.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fep_core::{Effect, Nanos, Worker, WorkerConfig, WorkerId};
use fep_trading::exchange::{Exchange, ExchangeConfig};
use fep_trading::harness::GatewayRig;
use fep_trading::msg::{PerfPing, RoleHelloReq, OP_PERF_PING};

fn ping_frame(size: usize) -> Vec<u8> {
    let pad = vec![7u8; size - 54];
    let mut out = Vec::new();
    PerfPing::from_client(1, Nanos(1), &pad).encode(OP_PERF_PING, &mut out);
    out
}

fn gateway(c: &mut Criterion) {
    let mut group = c.benchmark_group("gateway");
    for size in [64usize, 1024] {
        let mut rig = GatewayRig::new();
        let ping = ping_frame(size);
        let mut pong = Vec::with_capacity(size);
        group.throughput(Throughput::Elements(2));
        group.bench_function(format!("round_trip_{size}B"), |b| {
            b.iter(|| black_box(rig.round_trip(black_box(&ping), &mut pong)))
        });
    }
    group.finish();
}

fn exchange(c: &mut Criterion) {
    let mut worker = Worker::new(
        WorkerId(0),
        WorkerConfig::default(),
        Exchange::new(WorkerId(0), ExchangeConfig::default()),
    );
    let mut now = Nanos(1);
    worker.start(now);
    let conn = worker.handle_accepted(now).expect("room");
    let mut hello = Vec::new();
    RoleHelloReq {
        role: 2,
        version: 1,
        token: "",
    }
    .encode(&mut hello);
    worker.handle_read(now, conn, &hello);
    let flush = |w: &mut Worker<Exchange>| {
        let mut n = 0;
        while let Some(e) = w.poll_effect() {
            if let Effect::Transmit { conn } = e {
                n = w.transmit_buf(conn).len();
                w.handle_written(Nanos::ZERO, conn, n);
            }
        }
        n
    };
    flush(&mut worker);
    let ping = ping_frame(64);
    let mut group = c.benchmark_group("exchange");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ping_64B", |b| {
        b.iter(|| {
            now = now + Nanos(100);
            worker.handle_read(now, conn, black_box(&ping));
            black_box(flush(&mut worker))
        })
    });
    group.finish();
}

criterion_group!(benches, gateway, exchange);
criterion_main!(benches);
