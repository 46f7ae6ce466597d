//! The cost of the pre-trade checks on the state machine alone: a new
//! order through every check with every limit configured (account, kill
//! switches, throttle, instrument list, max_qty, max_notional, collar,
//! open orders, open notional), as the gateway worker would call it.
//!
//! Each case runs twice: group `risk` in wall time, group `risk_cpu` in
//! this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), which a preemption
//! on a shared machine does not inflate.
//!
//! `cargo bench -p fep-trading --bench risk`.

use std::hint::black_box;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fep_core::Nanos;
use fep_trading::risk::{OrderTerms, ReplaceTerms, Resting, RiskConfig, RiskHandle, Side};

/// Every limit on, generous enough that a good order passes every one of
/// them however many iterations criterion runs (the bucket refills faster
/// than the bench's clock advances).
const EVERY_LIMIT: &str = "\
max_qty = 1000\nmax_notional = 100_000_000\nprice_collar_bps = 500\n\
instruments = [1, \"3-9\", 12, \"20-40\"]\nmax_open_orders = 9_000_000_000_000_000_000\n\
max_open_notional = 9_000_000_000_000_000_000\nrate_per_s = 1_000_000_000\nburst = 1_000_000_000\n\
[reference_prices]\n1 = 10_000\n\
[clients.alice]\ntoken = \"ta\"\naccounts = [1, \"10-19\", 33, \"100-199\"]\n\
[clients.bob]\ntoken = \"tb\"\naccounts = [\"20-29\"]\n";

fn checks(c: &mut Criterion) {
    checks_in(c, "risk");
}

fn checks_cpu(c: &mut Criterion<ThreadCpu>) {
    checks_in(c, "risk_cpu");
}

fn checks_in<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let handle = RiskHandle::new(RiskConfig::parse(EVERY_LIMIT).unwrap());
    let mut risk = handle.risk();
    let alice = risk.client_by_token("ta").unwrap();
    let order = OrderTerms {
        account: 150,
        instrument: 1,
        side: Some(Side::Buy),
        price: 10_100,
        qty: 10,
    };
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    let mut now = Nanos(1_000_000_000);
    group.bench_function("new_order_all_limits_check_and_release", |b| {
        b.iter(|| {
            now = now + Nanos(1_000);
            let r = risk
                .check_new(black_box(now), alice, black_box(&order))
                .unwrap();
            risk.release(alice, r);
        })
    });
    group.bench_function("new_order_all_limits_check_only", |b| {
        b.iter(|| {
            now = now + Nanos(1_000);
            black_box(risk.check_new(black_box(now), alice, black_box(&order)))
        })
    });
    let too_big = OrderTerms { qty: 1001, ..order };
    group.bench_function("new_order_refused_max_qty", |b| {
        b.iter(|| {
            now = now + Nanos(1_000);
            black_box(risk.check_new(black_box(now), alice, black_box(&too_big)))
        })
    });
    let replace = ReplaceTerms {
        account: 150,
        price: 10_050,
        qty: 10,
        current: Some(Resting {
            price: 10_100,
            open: 10,
        }),
        instrument: Some(1),
        side: Some(Side::Buy),
    };
    group.bench_function("replace_down_all_limits", |b| {
        b.iter(|| {
            now = now + Nanos(1_000);
            black_box(risk.check_replace(black_box(now), alice, black_box(&replace)))
        })
    });
    group.finish();
}

/// This thread's CPU time, in nanoseconds.
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanoseconds
    }
}

/// Values in nanoseconds (of CPU time), shown as such.
struct Nanoseconds;

impl ValueFormatter for Nanoseconds {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        "ns (cpu)"
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => {
                *n as f64
            }
        };
        for v in values.iter_mut() {
            *v = per * 1e9 / *v;
        }
        "/s (cpu)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(benches, checks);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = checks_cpu
}
criterion_main!(benches, cpu);
