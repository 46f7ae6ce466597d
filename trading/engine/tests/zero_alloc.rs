//! Steady-state matching allocates nothing: a counting global allocator
//! (the allocation-counter crate, which keeps a `GlobalAlloc`'s `unsafe`
//! out of our code) watches a warmed-up engine through 200,000 mixed
//! requests (new day and IOC orders, replaces that move price, cancels,
//! queries) over a book of about a thousand orders.

use fep_engine::{
    BalanceQuery, BookQuery, Cancel, Command, Config, Engine, Event, NewOrder, Replace, Side, Tif,
};

fn allocations_in(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

/// xorshift64*: enough randomness for a workload, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// A stream that keeps about 1,000 orders resting around a mid of 10,000.
struct Flow {
    rng: Rng,
    next_id: u64,
    open: Vec<(u32, u64)>,
}

impl Flow {
    fn command(&mut self, resting: u32) -> Command {
        let id = self.next_id;
        self.next_id += 1;
        let account = self.rng.below(64) as u32 + 1;
        let side = if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let away = self.rng.below(375) as i64;
        let price = match side {
            Side::Buy => 10_000 - away,
            Side::Sell => 10_001 + away,
        };
        let roll = self.rng.below(100);
        if resting < 1_000 || roll < 10 {
            let tif = if roll < 3 { Tif::Ioc } else { Tif::Day };
            let price = if tif == Tif::Ioc {
                20_000 - price
            } else {
                price
            };
            let qty = self.rng.below(10) + 1;
            let o = NewOrder {
                account,
                cl_ord_id: id,
                instrument: 1,
                side,
                tif,
                price,
                qty,
            };
            return Command::NewOrder(o);
        }
        let pick = self.rng.below(self.open.len() as u64) as usize;
        let (account, orig) = self.open[pick];
        match roll {
            10..=19 => Command::Cancel(Cancel {
                account,
                cl_ord_id: id,
                orig_cl_ord_id: orig,
            }),
            20..=21 => Command::BookQuery(BookQuery {
                instrument: 1,
                depth: 10,
            }),
            22..=23 => Command::BalanceQuery(BalanceQuery { account, asset: 0 }),
            _ => {
                let move_ticks = self.rng.below(11) as i64 - 5;
                let r = Replace {
                    account,
                    cl_ord_id: id,
                    orig_cl_ord_id: orig,
                    price: 10_000 + move_ticks + away - 187,
                    qty: self.rng.below(10) + 1,
                };
                Command::Replace(r)
            }
        }
    }

    /// Keeps `open` in step with what the engine says.
    fn observe(&mut self, events: &[Event]) {
        for e in events {
            match *e {
                Event::Accepted {
                    account,
                    cl_ord_id,
                    tif: Tif::Day,
                    ..
                } => self.open.push((account, cl_ord_id)),
                Event::Replaced {
                    account, cl_ord_id, ..
                } => self.open.push((account, cl_ord_id)),
                _ => {}
            }
        }
    }
}

#[test]
fn the_counter_sees_an_allocation() {
    let n = allocations_in(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert!(n >= 1);
}

#[test]
fn a_warm_engine_does_not_allocate_per_request() {
    let config = Config {
        accounts: 64,
        instruments: 1,
        orders_max: 4_096,
        ..Config::default()
    };
    let mut engine = Engine::new(config).unwrap();
    let mut flow = Flow {
        rng: Rng(0x9E37_79B9_7F4A_7C15),
        next_id: 1,
        open: Vec::with_capacity(1 << 20),
    };
    let mut events: Vec<Event> = Vec::with_capacity(4_096);
    let step = |engine: &mut Engine, flow: &mut Flow, events: &mut Vec<Event>| {
        events.clear();
        let command = flow.command(engine.open_orders());
        engine.handle(&command, events);
        flow.observe(events);
        // Stale names (filled, canceled, renamed) are left in `open` on
        // purpose: some requests then name unknown orders, as in life.
        if flow.open.len() > 3_000 {
            flow.open.drain(..1_000);
        }
        events.len()
    };
    for _ in 0..50_000 {
        step(&mut engine, &mut flow, &mut events);
    }
    let mut fills = 0;
    let mut count = 0;
    let n = allocations_in(|| {
        for _ in 0..200_000 {
            step(&mut engine, &mut flow, &mut events);
            fills += events
                .iter()
                .filter(|e| matches!(e, Event::Executed { .. }))
                .count();
            count += 1;
        }
    });
    assert_eq!(count, 200_000);
    assert!(fills > 10_000, "the workload matches ({fills} executions)");
    assert!(
        engine.open_orders() > 500,
        "the book stays deep ({})",
        engine.open_orders()
    );
    assert_eq!(n, 0, "allocations in 200,000 requests");
}
