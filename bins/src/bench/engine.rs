//! `fepbench engine`: the matching engine alone (no network, one thread),
//! on exchange-core's workload shape, open loop at fixed rates and at the
//! maximum, and the same command stream through the `lobster` crate.
//! Each rate also runs an open loop that does nothing (`no-op`): the
//! machine's own floor under the engine's figures.
//!
//! The workload follows the shape of exchange-core's benchmark generator
//! (its `TestOrdersGenerator`, re-derived here, not copied): a book kept
//! near a target number of resting orders (default 1,000); while a side is
//! short, new day orders near the last trade price; once full, 90% moves
//! (a replace to a new price, drifting toward the last trade), 5% IOC
//! orders that sweep, 2.5% reductions (a replace to a smaller quantity at
//! the same price) and 2.5% cancels. Quantities are `1 + a·b·c` with `a,
//! b, c` uniform in 0..6. The stream is drawn from a seeded ChaCha and
//! decided against a scratch engine, so every cancel and replace names an
//! order that is open at that point.
//!
//! Latency at a fixed rate is measured from each command's *intended*
//! start (`start + i / rate`), so a stall delays every later command's
//! figure (coordinated omission corrected by construction, as wrk2 does).
//! The maximum is a closed loop: throughput from an untimed pass, service
//! time per command from a timed one.
//!
//! The measured stream is pre-generated (tens of MiB), which a real
//! exchange never holds: its commands arrive in a small, hot receive
//! buffer. On a virtual machine whose host unmaps guest pages left idle
//! (this project's VM does, at about a tenth of idle pages per second, and
//! re-touching one costs about 125 µs), reading that stream would measure
//! the host's page faults, not the engine. So a second thread (`feed`)
//! walks the input's pages in a loop, keeping them mapped; the engine's own
//! memory gets no such help. `--no-feed` turns it off, to see the effect.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use fep_engine::{Cancel, Command, Config, Engine, Event, NewOrder, Replace, Side, Tif};
use fep_net::monotonic_now;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The flags of `fepbench engine`.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Seed of the command stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Measured commands per leg (after the fill that builds the book).
    #[arg(long, default_value_t = 2_000_000)]
    pub commands: usize,
    /// Open-loop rates in commands per second, comma-separated; a leg at
    /// the maximum always follows.
    #[arg(long, default_value = "1000000", value_delimiter = ',')]
    pub rates: Vec<u64>,
    /// Resting orders the flow keeps in the book (both sides together).
    #[arg(long, default_value_t = 1_000)]
    pub orders: usize,
    /// The widest distance, in ticks, of a new day order from the last
    /// trade (sets how many price levels the book spreads over).
    #[arg(long, default_value_t = 5_000)]
    pub deviation: i64,
    /// Accounts the orders are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub accounts: u32,
    /// Skip the same stream through the lobster crate.
    #[arg(long)]
    pub no_compare: bool,
    /// Do not keep the pre-generated input stream mapped from a second
    /// thread (see `feed`): every leg then also pays for the host's page
    /// faults on its input. A machine with one CPU never runs that thread
    /// (it would take the measured thread's CPU).
    #[arg(long)]
    pub no_feed: bool,
    /// Sleep this long before each leg. Under a real-time scheduler
    /// (`chrt -f 10 fepbench engine --pause-ms 1000 --commands 800000`)
    /// each leg then starts with a full real-time budget (95% of each second
    /// by default), so a leg shorter than that is never throttled and other
    /// processes cannot preempt it: the figures are then the engine's, not
    /// the machine's other load.
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
}

/// What a command does, for per-kind figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new day order.
    Place,
    /// A new IOC order.
    Ioc,
    /// A replace to a new price (same quantity).
    Move,
    /// A replace to a smaller or equal quantity at the same price.
    Reduce,
    /// A cancel.
    Cancel,
}

const KINDS: [Kind; 5] = [
    Kind::Place,
    Kind::Ioc,
    Kind::Move,
    Kind::Reduce,
    Kind::Cancel,
];

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Place => "place",
            Kind::Ioc => "ioc",
            Kind::Move => "move",
            Kind::Reduce => "reduce",
            Kind::Cancel => "cancel",
        }
    }
}

/// The same command for lobster: it has no replace (a cancel then a new
/// limit order, which loses time priority even for a reduction) and no
/// IOC with a limit (a market order, which is what a sweeping IOC is).
type LobsterOp = (lobster::OrderType, Option<lobster::OrderType>);

/// The generated stream and what it did to a scratch engine.
#[derive(Debug)]
pub struct Workload {
    /// The engine's settings.
    pub config: Config,
    /// Commands that build the book (replayed before every leg, unmeasured).
    pub fill: Vec<Command>,
    /// The measured commands.
    pub bench: Vec<Command>,
    /// The kind of each measured command.
    pub kinds: Vec<Kind>,
    /// `fill` for lobster.
    pub lobster_fill: Vec<LobsterOp>,
    /// `bench` for lobster.
    pub lobster_bench: Vec<LobsterOp>,
    /// Resting orders, mean over the measured stream (sampled).
    pub orders_mean: f64,
    /// Price levels (both sides), mean over the measured stream (sampled).
    pub levels_mean: f64,
    /// Fills during the measured stream.
    pub fills: u64,
    /// Rejected commands during the measured stream (the generator avoids
    /// them; a non-zero count is a generator bug worth a look).
    pub rejects: u64,
    /// Where each leg records its commands' figures.
    pub tape: Tape,
}

#[derive(Debug, Clone, Copy)]
struct Live {
    account: u32,
    name: u64,
    side: Side,
    price: i64,
    open: u64,
    lobster_id: u128,
    /// Where its order_id sits in `Generator::ids`.
    position: usize,
}

struct Generator {
    rng: ChaCha8Rng,
    engine: Engine,
    events: Vec<Event>,
    live: std::collections::BTreeMap<u64, Live>,
    ids: Vec<u64>,
    resting: [usize; 2],
    next_name: Vec<u64>,
    last_price: i64,
    direction: i64,
    price_min: i64,
    price_max: i64,
    deviation: i64,
    half: usize,
    next_lobster_id: u128,
    /// The lobster id the next accepted order or replace takes.
    pending_lobster_id: u128,
    fills: u64,
    rejects: u64,
}

const MID_START: i64 = 1_000_000;

fn side_index(side: Side) -> usize {
    usize::from(side == Side::Sell)
}

fn lobster_side(side: Side) -> lobster::Side {
    match side {
        Side::Buy => lobster::Side::Bid,
        Side::Sell => lobster::Side::Ask,
    }
}

impl Generator {
    fn qty(&mut self) -> u64 {
        let mut r = || self.rng.random_range(0..6u64);
        1 + r() * r() * r()
    }

    fn name(&mut self, account: u32) -> u64 {
        let next = &mut self.next_name[account as usize - 1];
        *next += 1;
        *next
    }

    fn lobster_id(&mut self) -> u128 {
        self.next_lobster_id += 1;
        self.pending_lobster_id = self.next_lobster_id;
        self.next_lobster_id
    }

    /// One command, or `None` when it picked an order and none is open.
    fn draw(&mut self, filled: bool) -> Option<(Command, Kind, LobsterOp)> {
        let side = if self.rng.random_range(0..4i64) + self.direction >= 2 {
            Side::Buy
        } else {
            Side::Sell
        };
        let lack = self.half as i64 - self.resting[side_index(side)] as i64;
        let grow = lack > 0;
        let fast = !filled || lack > (self.half as i64 * 3 / 4).min(512);
        let q = self.rng.random_range(
            0..if grow {
                if fast {
                    2
                } else {
                    10
                }
            } else {
                40
            },
        );
        if q < 2 {
            let account = self.rng.random_range(1..=self.next_name.len() as u32);
            let cl_ord_id = self.name(account);
            let qty = self.qty();
            let id = self.lobster_id();
            let (tif, price, kind, op) = if grow {
                let price = self.passive_price(side);
                let limit = lobster::OrderType::Limit {
                    id,
                    side: lobster_side(side),
                    qty,
                    price: price as u64,
                };
                (Tif::Day, price, Kind::Place, limit)
            } else {
                let price = if side == Side::Buy {
                    self.price_max
                } else {
                    self.price_min
                };
                let market = lobster::OrderType::Market {
                    id,
                    side: lobster_side(side),
                    qty,
                };
                (Tif::Ioc, price, Kind::Ioc, market)
            };
            let o = NewOrder {
                account,
                cl_ord_id,
                instrument: 1,
                side,
                tif,
                price,
                qty,
            };
            return Some((Command::NewOrder(o), kind, (op, None)));
        }
        if self.ids.is_empty() {
            return None;
        }
        let order_id = self.ids[self.rng.random_range(0..self.ids.len())];
        let o = self.live[&order_id];
        let cancel_old = lobster::OrderType::Cancel { id: o.lobster_id };
        if q == 2 {
            let c = Cancel {
                account: o.account,
                cl_ord_id: 0,
                orig_cl_ord_id: o.name,
            };
            return Some((Command::Cancel(c), Kind::Cancel, (cancel_old, None)));
        }
        let (price, qty, kind) = if q == 3 {
            (o.price, 1 + self.rng.random_range(0..o.open), Kind::Reduce)
        } else {
            (self.moved_price(o.price), o.open, Kind::Move)
        };
        let cl_ord_id = self.name(o.account);
        let id = self.lobster_id();
        let r = Replace {
            account: o.account,
            cl_ord_id,
            orig_cl_ord_id: o.name,
            price,
            qty,
        };
        let place = lobster::OrderType::Limit {
            id,
            side: lobster_side(o.side),
            qty,
            price: price as u64,
        };
        Some((Command::Replace(r), kind, (cancel_old, Some(place))))
    }

    /// A day order's price on its own side of the last trade: bell-shaped
    /// around it, the width itself random (most orders near the touch).
    fn passive_price(&mut self, side: Side) -> i64 {
        let u: f64 = self.rng.random();
        let dev = 1 + (u * u * self.deviation as f64) as i64;
        let sum: i64 = (0..4).map(|_| self.rng.random_range(0..dev)).sum();
        let mut p = sum / 4 * 2 - dev;
        if (p > 0) ^ (side == Side::Sell) {
            p = -p;
        }
        (self.last_price + p).max(1)
    }

    /// A move: 1% of the way toward the last trade, at least one tick.
    fn moved_price(&mut self, previous: i64) -> i64 {
        let toward = (self.last_price - previous) as f64 * 0.01;
        let step = match previous.cmp(&self.last_price) {
            std::cmp::Ordering::Greater => toward.floor() as i64,
            std::cmp::Ordering::Less => toward.ceil() as i64,
            std::cmp::Ordering::Equal => self.rng.random_range(0..2i64) * 2 - 1,
        };
        (previous + step).max(1)
    }

    fn forget(&mut self, order_id: u64) {
        if let Some(o) = self.live.remove(&order_id) {
            self.ids.swap_remove(o.position);
            if let Some(&moved) = self.ids.get(o.position) {
                self.live
                    .get_mut(&moved)
                    .expect("listed orders are live")
                    .position = o.position;
            }
            self.resting[side_index(o.side)] -= 1;
        }
    }

    /// Applies a command to the scratch engine and follows its events.
    fn apply(&mut self, command: &Command) {
        self.events.clear();
        self.engine.handle(command, &mut self.events);
        for i in 0..self.events.len() {
            match self.events[i] {
                Event::Accepted {
                    order_id,
                    account,
                    cl_ord_id,
                    side,
                    tif: Tif::Day,
                    price,
                    qty,
                    ..
                } => {
                    let live = Live {
                        account,
                        name: cl_ord_id,
                        side,
                        price,
                        open: qty,
                        lobster_id: self.pending_lobster_id,
                        position: self.ids.len(),
                    };
                    self.live.insert(order_id, live);
                    self.ids.push(order_id);
                    self.resting[side_index(side)] += 1;
                }
                Event::Executed {
                    order_id,
                    price,
                    leaves,
                    ..
                } => {
                    self.fills += 1;
                    self.last_price = price.clamp(self.price_min, self.price_max);
                    if price <= self.price_min {
                        self.direction = 1;
                    } else if price >= self.price_max {
                        self.direction = -1;
                    }
                    if leaves == 0 {
                        self.forget(order_id);
                    } else if let Some(o) = self.live.get_mut(&order_id) {
                        o.open = leaves;
                    }
                }
                Event::Canceled { order_id, .. } => self.forget(order_id),
                Event::Replaced {
                    order_id,
                    cl_ord_id,
                    price,
                    qty,
                    ..
                } => {
                    let pending = self.pending_lobster_id;
                    let o = self
                        .live
                        .get_mut(&order_id)
                        .expect("a replaced order is live");
                    o.name = cl_ord_id;
                    o.price = price;
                    o.open = qty;
                    o.lobster_id = pending;
                }
                Event::Rejected { .. } => self.rejects += 1,
                _ => {}
            }
        }
    }
}

/// The engine settings of the benchmark: one instrument, balances so large
/// that no order is refused for them.
fn engine_config(accounts: u32, orders: usize) -> Config {
    let per_account = i64::MAX / i64::from(accounts.max(1)) / 2;
    Config {
        instruments: 1,
        accounts,
        cash: per_account,
        units: per_account,
        orders_max: (orders as u32 * 8).max(1 << 12),
        levels_max: 1 << 16,
    }
}

/// Draws the stream (see the module's doc).
pub fn generate(args: &EngineArgs) -> Result<Workload, String> {
    let config = engine_config(args.accounts, args.orders);
    let engine = Engine::new(config).map_err(|e| e.to_string())?;
    let mut g = Generator {
        rng: ChaCha8Rng::seed_from_u64(args.seed),
        engine,
        events: Vec::with_capacity(4_096),
        live: Default::default(),
        ids: Vec::new(),
        resting: [0, 0],
        next_name: vec![0; args.accounts as usize],
        last_price: MID_START,
        direction: 0,
        price_min: MID_START - 5 * args.deviation,
        price_max: MID_START + 5 * args.deviation,
        deviation: args.deviation.max(1),
        half: args.orders / 2,
        next_lobster_id: 0,
        pending_lobster_id: 0,
        fills: 0,
        rejects: 0,
    };
    let (mut fill, mut lobster_fill) = (Vec::new(), Vec::new());
    let fill_max = 100 * args.orders + 10_000;
    while g.resting.iter().any(|&n| n < g.half) {
        if fill.len() > fill_max {
            return Err(format!(
                "the book did not reach {} orders in {fill_max} commands",
                args.orders
            ));
        }
        if let Some((command, _, op)) = g.draw(false) {
            g.apply(&command);
            fill.push(command);
            lobster_fill.push(op);
        }
    }
    g.fills = 0;
    g.rejects = 0;
    let mut bench = Vec::with_capacity(args.commands);
    let mut kinds = Vec::with_capacity(args.commands);
    let mut lobster_bench = Vec::with_capacity(args.commands);
    let (mut orders_sum, mut levels_sum, mut samples) = (0f64, 0f64, 0f64);
    while bench.len() < args.commands {
        let Some((command, kind, op)) = g.draw(true) else {
            continue;
        };
        g.apply(&command);
        bench.push(command);
        kinds.push(kind);
        lobster_bench.push(op);
        if bench.len() % 1_000 == 0 {
            let (bids, asks) = g.engine.level_counts(1).expect("instrument 1");
            orders_sum += f64::from(g.engine.open_orders());
            levels_sum += (bids + asks) as f64;
            samples += 1.0;
        }
    }
    Ok(Workload {
        tape: Tape::new(kinds.len()),
        config,
        fill,
        bench,
        kinds,
        lobster_fill,
        lobster_bench,
        orders_mean: orders_sum / samples.max(1.0),
        levels_mean: levels_sum / samples.max(1.0),
        fills: g.fills,
        rejects: g.rejects,
    })
}

/// Per-kind and overall latency of one leg, in nanoseconds.
#[derive(Debug)]
pub struct Leg {
    /// What ran: `fep-engine` or `lobster`.
    pub subject: &'static str,
    /// The intended rate, or `None` for the closed loop.
    pub rate: Option<u64>,
    /// Per [`Kind`], indexed by `Kind as usize`.
    pub by_kind: Vec<Histogram<u64>>,
    /// Every command.
    pub all: Histogram<u64>,
    /// Every command's own time, from its start to its end (no queueing):
    /// from the clock read that found it due, or from the previous
    /// command's end when it was due by then, so it includes the loop's own
    /// bookkeeping (two stores) but only one clock read.
    pub service: Histogram<u64>,
    /// Long gaps between clock reads.
    pub gaps: Gaps,
    /// Page faults the measuring thread took during the leg (minor, major),
    /// where `/proc/thread-self/stat` can be read.
    pub faults: Option<(u64, u64)>,
    /// Commands run.
    pub ops: usize,
    /// Wall time of the measured commands.
    pub elapsed: Duration,
}

impl Leg {
    /// Commands per second achieved.
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Where a leg writes each command's figures while it runs: written once,
/// up front, and kept mapped by `feed` like the input, so recording costs
/// a store to a page that is there. The histograms are built after the leg.
///
/// It starts filled with distinct values, not zeros: this VM's host shares
/// pages of zeros until they are written, and the first write to each then
/// faults (about 180 stalls over 50 µs in the first leg of a run that
/// started from zeroed tapes, against about 20 in the legs after it).
#[derive(Debug)]
pub struct Tape {
    /// Nanoseconds from the intended start to the end, per command.
    latency: Vec<AtomicU64>,
    /// Nanoseconds from the actual start to the end, per command.
    service: Vec<AtomicU64>,
}

impl Tape {
    fn new(len: usize) -> Tape {
        let filled = || (0..len).map(|i| AtomicU64::new(i as u64)).collect();
        Tape {
            latency: filled(),
            service: filled(),
        }
    }
}

/// Runs `op(i)` for every command, open loop at `rate` or closed loop,
/// recording each command's latency under its kind.
fn measure(
    subject: &'static str,
    kinds: &[Kind],
    tape: &Tape,
    rate: Option<u64>,
    mut op: impl FnMut(usize),
) -> Leg {
    assert!(
        tape.latency.len() >= kinds.len(),
        "a tape for every command"
    );
    let mut gaps = Gaps::default();
    let faults_before = thread_faults();
    let period = rate.map(|rate| 1e9 / rate as f64);
    let start = monotonic_now().0;
    // The last clock read. A command that is due starts where the previous
    // one ended: reading the clock again there would time the harness, not
    // the engine, and slow every backlog's drain by a clock read a command.
    // Only a loop ahead of its schedule reads the clock before a command
    // (spinning until it is due), so each command costs one read.
    let mut last = start;
    for i in 0..kinds.len() {
        // Open loop: wait for the intended start; the closed loop starts
        // each command as the last one ends.
        let intended = match period {
            Some(period) => start + (i as f64 * period) as u64,
            None => last,
        };
        let mut began = last;
        while began < intended {
            std::hint::spin_loop();
            let now = monotonic_now().0;
            gaps.see(now - began);
            began = now;
        }
        op(i);
        let done = monotonic_now().0;
        gaps.see(done - began);
        let ns = |d: u64| d.clamp(1, 60_000_000_000);
        tape.latency[i].store(ns(done.saturating_sub(intended)), Ordering::Relaxed);
        tape.service[i].store(ns(done - began), Ordering::Relaxed);
        last = done;
    }
    let elapsed = Duration::from_nanos(last - start);
    let faults =
        faults_before
            .zip(thread_faults())
            .map(|((minor, major), (minor_after, major_after))| {
                (
                    minor_after.saturating_sub(minor),
                    major_after.saturating_sub(major),
                )
            });
    let mut by_kind: Vec<Histogram<u64>> = KINDS.iter().map(|_| histogram()).collect();
    let mut all = histogram();
    let mut service = histogram();
    for (i, kind) in kinds.iter().enumerate() {
        let latency = tape.latency[i].load(Ordering::Relaxed);
        by_kind[kind.index()]
            .record(latency)
            .expect("within bounds");
        all.record(latency).expect("within bounds");
        service
            .record(tape.service[i].load(Ordering::Relaxed))
            .expect("within bounds");
    }
    Leg {
        subject,
        rate,
        by_kind,
        all,
        service,
        gaps,
        faults,
        ops: kinds.len(),
        elapsed,
    }
}

/// The calling thread's page faults so far, (minor, major): fields 10 and
/// 12 of `/proc/thread-self/stat`, counted after the command name (which
/// may hold spaces and parentheses, so from the last `)`).
fn thread_faults() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    parse_faults(&stat)
}

fn parse_faults(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state(3) ppid pgrp session tty_nr tpgid flags
    // minflt(10) cminflt majflt(12).
    let mut fields = rest.split_whitespace().skip(7);
    let minor = fields.next()?.parse().ok()?;
    let major = fields.nth(1)?.parse().ok()?;
    Some((minor, major))
}

/// Gaps between consecutive clock reads of a leg longer than
/// [`Gaps::THRESHOLD`]: a command that slow is rare (see the service
/// time's p99.99), so nearly all of them are the thread off the CPU, which
/// on a shared machine is where an open loop's tail comes from.
///
/// Shorter gaps are counted too, by size ([`Gaps::STEPS`]): an interrupt or
/// a hypervisor exit takes microseconds, not fifty, and at a million
/// commands a second a few thousand of them a second are what sets an
/// open loop's p99. Comparing those counts between the engine's leg and
/// the no-op leg tells whether the engine meets more of them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gaps {
    /// How many.
    pub count: u64,
    /// Their sum.
    pub total: Duration,
    /// The longest.
    pub max: Duration,
    /// `at_least[k]`: intervals between clock reads of at least
    /// `STEPS[k]`.
    pub at_least: [u64; Gaps::STEPS.len()],
}

impl Gaps {
    /// What counts as a gap.
    pub const THRESHOLD: Duration = Duration::from_micros(50);
    /// The sizes short gaps are counted by.
    pub const STEPS: [Duration; 5] = [
        Duration::from_micros(2),
        Duration::from_micros(5),
        Duration::from_micros(10),
        Duration::from_micros(20),
        Duration::from_micros(50),
    ];

    fn see(&mut self, gap_ns: u64) {
        if gap_ns < Self::STEPS[0].as_nanos() as u64 {
            return;
        }
        let gap = Duration::from_nanos(gap_ns);
        for (step, n) in Self::STEPS.iter().zip(&mut self.at_least) {
            *n += u64::from(gap >= *step);
        }
        if gap > Self::THRESHOLD {
            self.count += 1;
            self.total += gap;
            self.max = self.max.max(gap);
        }
    }
}

/// A fresh engine with the book built.
fn filled_engine(w: &Workload, events: &mut Vec<Event>) -> Engine {
    let mut engine = Engine::new(w.config).expect("valid settings");
    for command in &w.fill {
        events.clear();
        engine.handle(command, events);
    }
    engine
}

fn filled_lobster(w: &Workload) -> lobster::OrderBook {
    let mut book = lobster::OrderBook::new(w.config.orders_max as usize, 16, false);
    for &(a, b) in &w.lobster_fill {
        book.execute(a);
        if let Some(b) = b {
            book.execute(b);
        }
    }
    book
}

fn engine_leg(w: &Workload, rate: Option<u64>) -> Leg {
    let mut events = Vec::with_capacity(4_096);
    let mut engine = filled_engine(w, &mut events);
    measure("fep-engine", &w.kinds, &w.tape, rate, |i| {
        events.clear();
        engine.handle(&w.bench[i], &mut events);
        black_box(events.len());
    })
}

fn lobster_leg(w: &Workload, rate: Option<u64>) -> Leg {
    let mut book = filled_lobster(w);
    measure("lobster", &w.kinds, &w.tape, rate, |i| {
        let (a, b) = w.lobster_bench[i];
        black_box(book.execute(a));
        if let Some(b) = b {
            black_box(book.execute(b));
        }
    })
}

/// Throughput of an untimed closed loop (no clock read per command), per
/// wall second and per second of this thread's CPU time. On a shared
/// machine the wall figure counts the time other processes held the CPU;
/// the CPU-time figure does not.
#[derive(Debug, Clone, Copy)]
pub struct Max {
    /// Commands per wall-clock second.
    pub wall: f64,
    /// Commands per second of the thread's CPU time.
    pub cpu: f64,
}

/// CPU time of the calling thread (what a shared machine's other load
/// does not add to).
pub(crate) fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn closed_loop_max(ops: usize, mut op: impl FnMut(usize)) -> Max {
    let (wall, cpu) = (Instant::now(), thread_cpu_time());
    for i in 0..ops {
        op(i);
    }
    let (wall, cpu) = (wall.elapsed(), thread_cpu_time().saturating_sub(cpu));
    Max {
        wall: ops as f64 / wall.as_secs_f64(),
        cpu: ops as f64 / cpu.as_secs_f64(),
    }
}

fn engine_max(w: &Workload) -> Max {
    let mut events = Vec::with_capacity(4_096);
    let mut engine = filled_engine(w, &mut events);
    closed_loop_max(w.bench.len(), |i| {
        events.clear();
        engine.handle(&w.bench[i], &mut events);
        black_box(events.len());
    })
}

fn lobster_max(w: &Workload) -> Max {
    let mut book = filled_lobster(w);
    closed_loop_max(w.lobster_bench.len(), |i| {
        let (a, b) = w.lobster_bench[i];
        black_box(book.execute(a));
        if let Some(b) = b {
            black_box(book.execute(b));
        }
    })
}

fn print_leg(leg: &Leg, untimed_max: Option<Max>) {
    let load = match leg.rate {
        Some(rate) => format!("open loop at {rate} cmd/s"),
        None => "closed loop".to_string(),
    };
    println!(
        "{} {load}: {} commands in {:.3} s = {:.0} cmd/s{}",
        leg.subject,
        leg.ops,
        leg.elapsed.as_secs_f64(),
        leg.throughput(),
        untimed_max
            .map(|m| format!(
                "; untimed max {:.0} cmd/s wall, {:.0} cmd/s per CPU-second",
                m.wall, m.cpu
            ))
            .unwrap_or_default(),
    );
    println!(
        "  {:<7} {:>9} {:>9} {:>9} {:>10} {:>11}",
        "kind", "count", "p50 ns", "p99 ns", "p99.99 ns", "max ns"
    );
    let rows = std::iter::once(("all", &leg.all))
        .chain(KINDS.iter().map(|k| (k.name(), &leg.by_kind[k.index()])))
        .chain(std::iter::once(("service", &leg.service)));
    for (name, h) in rows {
        if h.is_empty() {
            continue;
        }
        println!(
            "  {:<7} {:>9} {:>9} {:>9} {:>10} {:>11}",
            name,
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.9999),
            h.max()
        );
    }
    println!(
        "  off-CPU estimate: {} gaps over {} us between clock reads, {:.1} ms in all, longest {:.1} ms",
        leg.gaps.count,
        Gaps::THRESHOLD.as_micros(),
        leg.gaps.total.as_secs_f64() * 1e3,
        leg.gaps.max.as_secs_f64() * 1e3,
    );
    let steps: Vec<String> = Gaps::STEPS
        .iter()
        .zip(leg.gaps.at_least)
        .map(|(step, n)| format!("{} us {n}", step.as_micros()))
        .collect();
    println!(
        "  intervals between clock reads of at least: {}",
        steps.join(", ")
    );
    if let Some((minor, major)) = leg.faults {
        println!(
            "  page faults of the measuring thread during the leg: {minor} minor, {major} major"
        );
    }
}

/// Runs the whole benchmark and prints it.
pub fn run(args: &EngineArgs) -> Result<(), String> {
    let w = generate(args)?;
    let mut mix = [0usize; KINDS.len()];
    for k in &w.kinds {
        mix[k.index()] += 1;
    }
    let share = |k: Kind| 100.0 * mix[k.index()] as f64 / w.kinds.len().max(1) as f64;
    println!(
        "fepbench engine: seed {}, {} measured commands after {} that build the book, one thread, no network",
        args.seed,
        w.bench.len(),
        w.fill.len()
    );
    println!(
        "  mix: place {:.1}%, ioc {:.1}%, move {:.1}%, reduce {:.1}%, cancel {:.1}%; {} fills, {} rejects",
        share(Kind::Place),
        share(Kind::Ioc),
        share(Kind::Move),
        share(Kind::Reduce),
        share(Kind::Cancel),
        w.fills,
        w.rejects
    );
    println!(
        "  book (mean over the stream): {:.0} resting orders over {:.0} price levels",
        w.orders_mean, w.levels_mean
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let feeding = AtomicBool::new(!args.no_feed && cpus > 1);
    println!(
        "  input: {}",
        if feeding.load(Ordering::Relaxed) {
            "kept mapped by a second thread"
        } else if args.no_feed {
            "not kept mapped (--no-feed)"
        } else {
            "not kept mapped (one CPU: the second thread would take the measured one's)"
        }
    );
    let passes = AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| feed(&w, &feeding, &passes));
        // The feeder stops however the legs end: a panic in them (a closed
        // stdout, say) would otherwise leave the scope waiting for it for
        // good.
        let _stop = StopOnDrop(&feeding);
        // The first pass maps back every page the host took while the
        // stream was generated; no leg starts before it is done.
        while feeding.load(Ordering::Relaxed) && passes.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        legs(args, &w)
    })
}

/// Lowers its flag when dropped, on return or on unwinding.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Reads one element per page of the input stream, over and over, until
/// `feeding` turns false: a page is then touched every few milliseconds, so
/// the host has no time to unmap it before a leg reads it. Runs on the
/// other CPU (the measured thread holds its own), and sleeps a millisecond
/// between passes so it never holds that CPU.
fn feed(w: &Workload, feeding: &AtomicBool, passes: &AtomicU64) {
    fn touch<T: Copy>(items: &[T]) {
        let step = (4096 / std::mem::size_of::<T>().max(1)).max(1);
        for item in items.iter().step_by(step) {
            black_box(*item);
        }
    }
    while feeding.load(Ordering::Relaxed) {
        touch(&w.bench);
        touch(&w.kinds);
        touch(&w.lobster_bench);
        for figures in [&w.tape.latency, &w.tape.service] {
            for figure in figures.iter().step_by(512) {
                black_box(figure.load(Ordering::Relaxed));
            }
        }
        passes.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every leg, printed as it ends.
fn legs(args: &EngineArgs, w: &Workload) -> Result<(), String> {
    let pause = || std::thread::sleep(Duration::from_millis(args.pause_ms));
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut floors = Vec::new();
    for &rate in &args.rates {
        // The same open loop doing nothing: what this machine alone does
        // to an open loop's tail (its off-CPU gaps), measured beside the
        // engine so the two can be told apart.
        pause();
        floors.push(measure("no-op", &w.kinds, &w.tape, Some(rate), |i| {
            black_box(i);
        }));
        print_leg(floors.last().expect("just pushed"), None);
        pause();
        ours.push(engine_leg(w, Some(rate)));
        print_leg(ours.last().expect("just pushed"), None);
        if !args.no_compare {
            pause();
            theirs.push(lobster_leg(w, Some(rate)));
            print_leg(theirs.last().expect("just pushed"), None);
        }
    }
    println!("fep-engine against the no-op open loop at the same rate (the machine's floor):");
    for (engine, floor) in ours.iter().zip(&floors) {
        let q = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q);
        println!(
            "  at {} cmd/s: p50 {} vs {} ns, p99 {} vs {} ns, p99.99 {} vs {} ns",
            floor.rate.unwrap_or_default(),
            q(&engine.all, 0.5),
            q(&floor.all, 0.5),
            q(&engine.all, 0.99),
            q(&floor.all, 0.99),
            q(&engine.all, 0.9999),
            q(&floor.all, 0.9999),
        );
    }
    pause();
    let our_max = engine_max(w);
    pause();
    ours.push(engine_leg(w, None));
    print_leg(ours.last().expect("just pushed"), Some(our_max));
    if args.no_compare {
        return Ok(());
    }
    pause();
    let their_max = lobster_max(w);
    pause();
    theirs.push(lobster_leg(w, None));
    print_leg(theirs.last().expect("just pushed"), Some(their_max));
    println!("fep-engine / lobster (lobster runs a replace as cancel + limit, an IOC as a market order):");
    println!(
        "  untimed max throughput: {:.2}x wall ({:.0} / {:.0} cmd/s), {:.2}x per CPU-second ({:.0} / {:.0})",
        our_max.wall / their_max.wall,
        our_max.wall,
        their_max.wall,
        our_max.cpu / their_max.cpu,
        our_max.cpu,
        their_max.cpu,
    );
    for (a, b) in ours.iter().zip(&theirs) {
        let load = a
            .rate
            .map(|r| format!("at {r} cmd/s"))
            .unwrap_or_else(|| "closed loop".into());
        let ratio =
            |q: f64| a.all.value_at_quantile(q) as f64 / b.all.value_at_quantile(q).max(1) as f64;
        println!(
            "  {load}: p50 {:.2}x ({} / {} ns), p99 {:.2}x ({} / {} ns)",
            ratio(0.5),
            a.all.value_at_quantile(0.5),
            b.all.value_at_quantile(0.5),
            ratio(0.99),
            a.all.value_at_quantile(0.99),
            b.all.value_at_quantile(0.99),
        );
        for leg in [a, b] {
            if leg.rate.is_some_and(|r| leg.throughput() < 0.95 * r as f64) {
                println!(
                    "    {} fell behind ({:.0} cmd/s achieved): its latency there is mostly backlog",
                    leg.subject,
                    leg.throughput()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_faults_are_read_after_the_thread_name() {
        // A name with spaces and a parenthesis must not shift the fields.
        let stat = "4242 (fep worker) 1) S 1 4242 4242 0 -1 4194560 1234 0 56 0 7 3";
        assert_eq!(parse_faults(stat), Some((1234, 56)));
        assert_eq!(parse_faults("4242 (x) S 1 2"), None);
        if std::path::Path::new("/proc/thread-self/stat").exists() {
            let (before, _) = thread_faults().expect("this thread's stat parses");
            // Touching fresh pages faults them in. 64 MiB is past the
            // largest size glibc's malloc serves from a reused heap (its
            // mmap threshold grows to at most 32 MiB), so the pages are
            // new whatever other tests freed before.
            let pages = vec![1u8; 64 << 20];
            black_box(&pages);
            let (after, _) = thread_faults().expect("this thread's stat parses");
            assert!(after > before, "{before} -> {after}");
        }
    }

    fn args(seed: u64) -> EngineArgs {
        EngineArgs {
            seed,
            commands: 20_000,
            rates: vec![],
            orders: 400,
            deviation: 2_000,
            accounts: 50,
            no_compare: false,
            no_feed: false,
            pause_ms: 0,
        }
    }

    #[test]
    fn the_stream_is_the_seeds_and_every_command_is_accepted() {
        let a = generate(&args(7)).unwrap();
        let b = generate(&args(7)).unwrap();
        let c = generate(&args(8)).unwrap();
        assert_eq!(a.bench, b.bench, "same seed, same stream");
        assert_ne!(a.bench, c.bench, "another seed, another stream");
        assert_eq!(a.rejects, 0, "cancels and replaces name open orders");
        assert!(a.fills > 0);
        assert!(
            (300.0..=500.0).contains(&a.orders_mean),
            "book near its target: {}",
            a.orders_mean
        );
        let moves = a.kinds.iter().filter(|k| **k == Kind::Move).count();
        assert!(
            moves * 2 > a.kinds.len(),
            "mostly moves: {moves} of {}",
            a.kinds.len()
        );
    }

    #[test]
    fn a_leg_measures_every_command_under_its_kind() {
        let w = generate(&args(1)).unwrap();
        let leg = engine_leg(&w, None);
        assert_eq!(leg.all.len(), w.bench.len() as u64);
        assert_eq!(leg.service.len(), w.bench.len() as u64);
        let moves = w.kinds.iter().filter(|k| **k == Kind::Move).count() as u64;
        assert_eq!(leg.by_kind[Kind::Move.index()].len(), moves);
        let lobster = lobster_leg(&w, Some(10_000_000));
        assert_eq!(lobster.all.len(), w.bench.len() as u64);
    }

    /// Spins for `ns` nanoseconds of the clock the harness reads.
    fn busy(ns: u64) {
        let until = monotonic_now().0 + ns;
        while monotonic_now().0 < until {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn an_open_loop_counts_the_backlog_and_the_service_time_does_not() {
        // Each command takes 20 µs against a schedule of one every 10 µs:
        // command i starts about 10·i µs late. Its latency (from the
        // intended start) must show that backlog; its service time (from
        // its actual start, the previous command's end) must not.
        let n = 50;
        let kinds = vec![Kind::Move; n];
        let tape = Tape::new(n);
        let leg = measure("busy", &kinds, &tape, Some(100_000), |_| busy(20_000));
        let latency = |i: usize| tape.latency[i].load(Ordering::Relaxed);
        let service = |i: usize| tape.service[i].load(Ordering::Relaxed);
        for i in 0..n {
            assert!(service(i) >= 20_000, "command {i}: service {}", service(i));
            assert!(latency(i) >= service(i), "command {i}");
            // The i commands before it each ran ≥ 20 µs, due 10 µs apart.
            let backlog = 10_000 * i as u64;
            assert!(
                latency(i) >= backlog + 20_000,
                "command {i}: {}",
                latency(i)
            );
        }
        assert!(
            leg.service.value_at_quantile(0.5) < 40_000,
            "no backlog in service"
        );
        assert!(leg.elapsed >= Duration::from_micros(20 * n as u64));

        // Closed loop: each command starts as the last ends, so its latency
        // is its service time.
        let tape = Tape::new(n);
        measure("busy", &kinds, &tape, None, |_| busy(1_000));
        for i in 0..n {
            assert_eq!(
                tape.latency[i].load(Ordering::Relaxed),
                tape.service[i].load(Ordering::Relaxed)
            );
        }
    }
}
