//! A seeded order flow for the load generator, and the checks a client can
//! make of what comes back.
//!
//! # The mix
//!
//! Modelled on exchange-core's benchmark: each connection first fills the
//! book with resting day orders until it holds its share of
//! [`FlowConfig::resting_target`]; from then on each request is drawn from
//! [`Mix`]: mostly replaces that move an open order to a new price near the
//! mid, some new day orders, some aggressive IOC orders that cross the
//! spread, some cancels. Prices sit around a per-instrument mid that drifts
//! by a random walk; quantities are small. Every draw comes from the
//! connection's own ChaCha stream, so a flow is a pure function of its
//! seed and of the answers it receives.
//!
//! # Accounts and ids
//!
//! Connection `i` trades accounts `i + 1, i + 1 + C, …` (C connections), so
//! no account is shared and each connection owns its accounts' `cl_ord_id`
//! marks. One counter per connection numbers all its requests, which makes
//! ids unique per connection and rising per account.
//!
//! # Checks
//!
//! [`OrderFlow::on_message`] classifies every message: a *first answer*
//! (which must be for the oldest request still waiting, except a `Reject`,
//! which may overtake), or a *later* message about an order of this
//! connection (its fills, an IOC's rest). Fills must agree with the order
//! they name: the right side of the limit price, never more than is open,
//! `leaves` = open − filled. Anything else is a [`Violation`].

use std::collections::{hash_map, BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use fep_core::{ErrorCode, Nanos};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use fep_trading::order::{
    BalanceQuery, BookQuery, CancelOrder, Header, NewOrder, OrderMsg, ReplaceOrder,
    CANCEL_REASON_IOC, CANCEL_REASON_REQUESTED, LIQUIDITY_MAKER, LIQUIDITY_TAKER, SIDE_BUY,
    SIDE_SELL, TIF_DAY, TIF_IOC,
};

/// Percentages of each request kind once a connection's book share is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Replaces that move an open order's price.
    pub replace: u8,
    /// Cancels of an open order.
    pub cancel: u8,
    /// New resting day orders.
    pub day: u8,
    /// New IOC orders that cross the spread.
    pub ioc: u8,
    /// Book and balance queries.
    pub query: u8,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            replace: 70,
            cancel: 9,
            day: 10,
            ioc: 10,
            query: 1,
        }
    }
}

/// Settings of an order flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// Instruments traded, numbered 1 …
    pub instruments: u32,
    /// Accounts of the exchange, numbered 1 …
    pub accounts: u32,
    /// Connections the flow is spread over (at most `accounts`).
    pub connections: u32,
    /// Where this flow's connections start among all the lanes of a run
    /// that has several load clients (the simulator's `client-0…N`):
    /// connection `i` is lane `lane_first + i`. 0 for one client.
    pub lane_first: u32,
    /// Lanes over all clients (0: just this flow's `connections`). Lane `l`
    /// trades accounts `l + 1, l + 1 + lanes, …`, so clients never share
    /// an account.
    pub lanes: u32,
    /// Seeds every connection's stream.
    pub seed: u64,
    /// Resting orders the whole flow aims to keep in all the books.
    pub resting_target: u32,
    /// Where every instrument's mid starts, in ticks.
    pub mid_start: i64,
    /// Half the width of the band resting orders are placed in, in ticks
    /// (exchange-core's benchmark spreads ~1,000 orders over ~750 levels).
    pub band: i64,
    /// Largest quantity of one order.
    pub qty_max: u64,
    /// The request mix.
    pub mix: Mix,
    /// Every lane's first `cl_ord_id` (then one more per request). An
    /// exchange refuses ids at or below an account's mark, so a flow run
    /// again against the same exchange must start above the last run's:
    /// `loadgen` starts at the wall clock in nanoseconds.
    pub first_id: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            instruments: 16,
            accounts: 1024,
            connections: 1,
            lane_first: 0,
            lanes: 0,
            seed: 0,
            resting_target: 1000,
            mid_start: 100_000,
            band: 375,
            qty_max: 100,
            mix: Mix::default(),
            first_id: 1,
        }
    }
}

/// Why a flow cannot run with its settings (a CLI prints it as one line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowError {
    /// More connections than accounts: connections would share accounts
    /// and race on their `cl_ord_id` marks.
    TooFewAccounts {
        /// `--connections`.
        connections: u32,
        /// `--accounts`.
        accounts: u32,
    },
    /// No instrument, no account or no connection.
    Empty,
    /// A mix whose percentages do not add up to 100.
    Mix {
        /// Their sum.
        sum: u32,
    },
    /// The band or quantity leaves no room for a valid order.
    Prices,
}

impl std::fmt::Display for FlowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowError::TooFewAccounts {
                connections,
                accounts,
            } => write!(
                f,
                "the order flow needs an account per connection: {connections} connections, \
                 {accounts} accounts (raise --accounts on loadgen and mock_exchange)"
            ),
            FlowError::Empty => write!(
                f,
                "the order flow needs instruments, accounts and connections"
            ),
            FlowError::Mix { sum } => write!(f, "the request mix adds up to {sum}%, not 100%"),
            FlowError::Prices => write!(f, "mid, band and quantity leave no valid order"),
        }
    }
}

impl std::error::Error for FlowError {}

/// What a request asked, kept until its first answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    New {
        name: Key,
        instrument: u32,
        side: u8,
        tif: u8,
        price: i64,
        qty: u64,
    },
    Cancel {
        target: Key,
    },
    Replace {
        target: Key,
        name: Key,
        price: i64,
        qty: u64,
    },
    Query,
}

/// An order's name: (account, `cl_ord_id` of its naming request).
type Key = (u32, u64);

/// A fixed multiplicative hash of a [`Key`]'s two words: no random state
/// (the simulator replays a seed exactly), and a few instructions where
/// SipHash takes tens of nanoseconds. The map it serves is never iterated,
/// so its order cannot reach a trace.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // The map takes its buckets from the low bits, which a product
        // mixes least: fold the high half in.
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(26) ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

#[derive(Clone, Copy, Debug)]
struct Pending {
    cl_ord_id: u64,
    asked: Asked,
}

/// An order of this connection the exchange has accepted and not closed.
#[derive(Clone, Copy, Debug)]
struct Open {
    order_id: u64,
    instrument: u32,
    side: u8,
    price: i64,
    open: u64,
    /// A cancel or replace naming it is in flight: pick another.
    busy: bool,
    /// Where its key sits in its lane's `open_keys` (set by `Lane::insert`).
    at: usize,
}

/// The kinds of message a client can receive, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `OrderAccepted`.
    Accepted,
    /// `OrderExecuted` as maker.
    ExecutedMaker,
    /// `OrderExecuted` as taker.
    ExecutedTaker,
    /// `OrderCanceled` on request.
    Canceled,
    /// `OrderCanceled`: the rest of an IOC.
    IocRest,
    /// `OrderReplaced`.
    Replaced,
    /// `BookSnapshot`.
    BookSnapshot,
    /// `Balance`.
    Balance,
    /// `Reject`.
    Reject,
}

impl Kind {
    /// Every kind, in the order of [`FlowStats::by_kind`].
    pub const ALL: [Kind; 9] = [
        Kind::Accepted,
        Kind::ExecutedMaker,
        Kind::ExecutedTaker,
        Kind::Canceled,
        Kind::IocRest,
        Kind::Replaced,
        Kind::BookSnapshot,
        Kind::Balance,
        Kind::Reject,
    ];

    /// The name used in reports (`snake_case`).
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Accepted => "accepted",
            Kind::ExecutedMaker => "executed_maker",
            Kind::ExecutedTaker => "executed_taker",
            Kind::Canceled => "canceled",
            Kind::IocRest => "ioc_rest",
            Kind::Replaced => "replaced",
            Kind::BookSnapshot => "book_snapshot",
            Kind::Balance => "balance",
            Kind::Reject => "reject",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// What a request of the flow is, for latency by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Request {
    /// A day `NewOrder`.
    NewDay,
    /// An IOC `NewOrder`.
    NewIoc,
    /// A `CancelOrder`.
    Cancel,
    /// A `ReplaceOrder`.
    Replace,
    /// A `BookQuery` or `BalanceQuery`.
    Query,
}

impl Request {
    /// Every kind, in the order of [`Request::index`].
    pub const ALL: [Request; 5] = [
        Request::NewDay,
        Request::NewIoc,
        Request::Cancel,
        Request::Replace,
        Request::Query,
    ];

    /// The name used in reports (`snake_case`).
    pub const fn name(self) -> &'static str {
        match self {
            Request::NewDay => "new_day",
            Request::NewIoc => "new_ioc",
            Request::Cancel => "cancel",
            Request::Replace => "replace",
            Request::Query => "query",
        }
    }

    /// Its place in [`Request::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl Asked {
    fn request(&self) -> Request {
        match self {
            Asked::New { tif, .. } if *tif == TIF_IOC => Request::NewIoc,
            Asked::New { .. } => Request::NewDay,
            Asked::Cancel { .. } => Request::Cancel,
            Asked::Replace { .. } => Request::Replace,
            Asked::Query => Request::Query,
        }
    }
}

/// How a received message relates to this connection's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The first answer of request `cl_ord_id`: its latency ends here.
    First {
        /// The request.
        cl_ord_id: u64,
    },
    /// A later message about one of this connection's orders.
    Later,
}

/// A message that breaks the contract or disagrees with this connection's
/// orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation(pub &'static str);

/// Counters of a flow: messages by kind, rejects by code, violations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Messages received, indexed as [`Kind::ALL`].
    pub by_kind: [u64; 9],
    /// Rejects by error code.
    pub rejects_by_code: BTreeMap<u16, u64>,
    /// Messages that broke the contract (see [`Violation`]).
    pub violations: u64,
    /// Requests sent.
    pub sent: u64,
    /// Quantity filled on this flow's orders (both sides of self-trades).
    pub filled_qty: u64,
}

impl FlowStats {
    /// The count of one kind.
    pub fn count(&self, kind: Kind) -> u64 {
        self.by_kind[kind.index()]
    }

    /// Adds `other` to these counters.
    pub fn merge(&mut self, other: &FlowStats) {
        for (a, b) in self.by_kind.iter_mut().zip(other.by_kind) {
            *a += b;
        }
        for (code, n) in &other.rejects_by_code {
            *self.rejects_by_code.entry(*code).or_default() += n;
        }
        self.violations += other.violations;
        self.sent += other.sent;
        self.filled_qty += other.filled_qty;
    }
}

/// One connection's part of the flow.
#[derive(Debug)]
struct Lane {
    rng: ChaCha8Rng,
    accounts: Vec<u32>,
    next_id: u64,
    /// Pending requests, oldest first.
    pending: VecDeque<Pending>,
    /// Never iterated (see [`KeyHasher`]).
    open: KeyMap<Open>,
    /// The keys of `open` in a vector, to draw one at random in O(1).
    open_keys: Vec<Key>,
    mids: Vec<i64>,
    resting_target: usize,
}

/// The order flow of a load generator: one lane per connection.
#[derive(Debug)]
pub struct OrderFlow {
    config: FlowConfig,
    lanes: Vec<Lane>,
    stats: FlowStats,
}

impl OrderFlow {
    /// A flow for `config`, or why it cannot run.
    pub fn new(config: FlowConfig) -> Result<OrderFlow, FlowError> {
        if config.instruments == 0 || config.accounts == 0 || config.connections == 0 {
            return Err(FlowError::Empty);
        }
        let lanes = if config.lanes == 0 {
            config.connections
        } else {
            config.lanes
        };
        if config.lane_first.saturating_add(config.connections) > lanes {
            return Err(FlowError::Empty);
        }
        if lanes > config.accounts {
            return Err(FlowError::TooFewAccounts {
                connections: lanes,
                accounts: config.accounts,
            });
        }
        let m = config.mix;
        let sum = u32::from(m.replace)
            + u32::from(m.cancel)
            + u32::from(m.day)
            + u32::from(m.ioc)
            + u32::from(m.query);
        if sum != 100 {
            return Err(FlowError::Mix { sum });
        }
        if config.band < 1 || config.mid_start <= 2 * config.band || config.qty_max == 0 {
            return Err(FlowError::Prices);
        }
        let per_lane = (config.resting_target as usize).div_ceil(config.connections as usize);
        let lanes = (config.lane_first..config.lane_first + config.connections)
            .map(|i| Lane {
                rng: ChaCha8Rng::seed_from_u64(config.seed ^ (u64::from(i) << 32) ^ 0x0f10),
                accounts: (i + 1..=config.accounts).step_by(lanes as usize).collect(),
                next_id: config.first_id.max(1),
                pending: VecDeque::new(),
                open: KeyMap::with_capacity_and_hasher(2 * per_lane, Default::default()),
                open_keys: Vec::new(),
                mids: vec![config.mid_start; config.instruments as usize],
                resting_target: per_lane,
            })
            .collect();
        Ok(OrderFlow {
            config,
            lanes,
            stats: FlowStats::default(),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    /// Orders of lane `lane` open at the exchange, as far as it was told.
    pub fn open_orders(&self, lane: usize) -> usize {
        self.lanes[lane].open.len()
    }

    /// Requests of lane `lane` waiting for their first answer.
    pub fn pending(&self, lane: usize) -> usize {
        self.lanes[lane].pending.len()
    }

    /// Appends lane `lane`'s next request, stamped `t1`, to `out`; returns
    /// its `cl_ord_id`.
    pub fn next_request(&mut self, lane: usize, t1: Nanos, out: &mut Vec<u8>) -> (u64, Request) {
        let config = self.config;
        let l = &mut self.lanes[lane];
        let cl_ord_id = l.next_id;
        l.next_id += 1;
        let h = Header {
            cl_ord_id,
            t1,
            ..Header::default()
        };
        let (msg, asked) = l.draw(&config, h);
        msg.encode(out);
        l.pending.push_back(Pending { cl_ord_id, asked });
        self.stats.sent += 1;
        (cl_ord_id, asked.request())
    }

    /// A `Reject` of request `cl_ord_id` arrived on lane `lane`.
    pub fn on_reject(
        &mut self,
        lane: usize,
        cl_ord_id: u64,
        code: ErrorCode,
    ) -> Result<Seen, Violation> {
        self.stats.by_kind[Kind::Reject.index()] += 1;
        *self.stats.rejects_by_code.entry(code.to_u16()).or_default() += 1;
        let l = &mut self.lanes[lane];
        // A reject may overtake older requests (a gateway sheds at once).
        let Some(at) = l.pending.iter().position(|p| p.cl_ord_id == cl_ord_id) else {
            return self.violation("a Reject for no request in flight");
        };
        let p = l.pending.remove(at).expect("position is in range");
        if let Asked::Cancel { target } | Asked::Replace { target, .. } = p.asked {
            if let Some(o) = l.open.get_mut(&target) {
                o.busy = false;
            }
        }
        // An UNKNOWN_ORDER means the order filled or was canceled meanwhile
        // (its closing message is on its way or came before): nothing to undo.
        Ok(Seen::First { cl_ord_id })
    }

    /// Any other order-entry message arrived on lane `lane`.
    pub fn on_message(&mut self, lane: usize, msg: &OrderMsg<'_>) -> Result<Seen, Violation> {
        let seen = self.classify(lane, msg);
        if seen.is_err() {
            self.stats.violations += 1;
        }
        seen
    }

    fn violation(&mut self, what: &'static str) -> Result<Seen, Violation> {
        self.stats.violations += 1;
        Err(Violation(what))
    }

    fn count(&mut self, kind: Kind) {
        self.stats.by_kind[kind.index()] += 1;
    }

    fn classify(&mut self, lane: usize, msg: &OrderMsg<'_>) -> Result<Seen, Violation> {
        match *msg {
            OrderMsg::OrderAccepted(m) => {
                self.count(Kind::Accepted);
                let p = self.first(lane, m.h.cl_ord_id)?;
                let Asked::New {
                    name,
                    instrument,
                    side,
                    tif,
                    price,
                    qty,
                } = p.asked
                else {
                    return Err(Violation(
                        "OrderAccepted answers a request that is no NewOrder",
                    ));
                };
                let asked = (name.0, instrument, side, tif, price, qty);
                if (m.account, m.instrument, m.side, m.tif, m.price, m.qty) != asked {
                    return Err(Violation("OrderAccepted disagrees with its NewOrder"));
                }
                let l = &mut self.lanes[lane];
                l.insert(
                    name,
                    Open {
                        order_id: m.order_id,
                        instrument,
                        side,
                        price,
                        open: qty,
                        busy: false,
                        at: 0,
                    },
                );
                Ok(Seen::First {
                    cl_ord_id: m.h.cl_ord_id,
                })
            }
            OrderMsg::OrderReplaced(m) => {
                self.count(Kind::Replaced);
                let p = self.first(lane, m.h.cl_ord_id)?;
                let Asked::Replace {
                    target,
                    name,
                    price,
                    qty,
                } = p.asked
                else {
                    return Err(Violation(
                        "OrderReplaced answers a request that is no ReplaceOrder",
                    ));
                };
                let l = &mut self.lanes[lane];
                let Some(o) = l.open.get(&target) else {
                    return Err(Violation(
                        "OrderReplaced for an order this client saw close",
                    ));
                };
                if o.order_id != m.order_id || m.price != price || m.qty != qty {
                    l.remove(target);
                    return Err(Violation("OrderReplaced disagrees with its ReplaceOrder"));
                }
                let o = l.rename(target, name);
                o.price = price;
                o.open = qty;
                o.busy = false;
                Ok(Seen::First {
                    cl_ord_id: m.h.cl_ord_id,
                })
            }
            OrderMsg::OrderCanceled(m) if m.reason == CANCEL_REASON_REQUESTED => {
                self.count(Kind::Canceled);
                let p = self.first(lane, m.h.cl_ord_id)?;
                let Asked::Cancel { target } = p.asked else {
                    return Err(Violation(
                        "OrderCanceled(1) answers a request that is no CancelOrder",
                    ));
                };
                let l = &mut self.lanes[lane];
                let Some(o) = l.remove(target) else {
                    return Err(Violation(
                        "OrderCanceled for an order this client saw close",
                    ));
                };
                // Less than this client thinks was open is the contract's
                // own case: a maker's fills are not sent once the
                // connection of the order's naming request closed (the
                // gateway lost its upstream and reconnected), yet they
                // happened. More never is.
                if o.order_id != m.order_id || m.canceled_qty > o.open {
                    return Err(Violation("OrderCanceled's quantity is more than was open"));
                }
                Ok(Seen::First {
                    cl_ord_id: m.h.cl_ord_id,
                })
            }
            OrderMsg::OrderCanceled(m) if m.reason == CANCEL_REASON_IOC => {
                self.count(Kind::IocRest);
                let l = &mut self.lanes[lane];
                let key = (m.account, m.h.cl_ord_id);
                let Some(o) = l.remove(key) else {
                    return Err(Violation("an IOC's rest canceled for no open order"));
                };
                if o.order_id != m.order_id || o.open != m.canceled_qty || m.canceled_qty == 0 {
                    return Err(Violation("an IOC's rest is not what was left open"));
                }
                Ok(Seen::Later)
            }
            OrderMsg::OrderCanceled(_) => Err(Violation("OrderCanceled with an unknown reason")),
            OrderMsg::OrderExecuted(m) => {
                let maker = m.liquidity == LIQUIDITY_MAKER;
                self.count(if maker {
                    Kind::ExecutedMaker
                } else {
                    Kind::ExecutedTaker
                });
                if !maker && m.liquidity != LIQUIDITY_TAKER {
                    return Err(Violation("OrderExecuted with an unknown liquidity"));
                }
                let l = &mut self.lanes[lane];
                let key = (m.account, m.h.cl_ord_id);
                let Some(o) = l.open.get_mut(&key) else {
                    return Err(Violation("OrderExecuted for no open order of this client"));
                };
                let through = match o.side {
                    SIDE_BUY => m.price > o.price,
                    _ => m.price < o.price,
                };
                if o.order_id != m.order_id || m.qty == 0 || m.qty > o.open || through {
                    return Err(Violation("a fill disagrees with the order it names"));
                }
                o.open -= m.qty;
                if m.leaves != o.open {
                    return Err(Violation("a fill's leaves is not open − filled"));
                }
                self.stats.filled_qty += m.qty;
                if o.open == 0 {
                    l.remove(key);
                }
                Ok(Seen::Later)
            }
            OrderMsg::BookSnapshot(m) => {
                self.count(Kind::BookSnapshot);
                self.first(lane, m.h.cl_ord_id)?;
                Ok(Seen::First {
                    cl_ord_id: m.h.cl_ord_id,
                })
            }
            OrderMsg::Balance(m) => {
                self.count(Kind::Balance);
                self.first(lane, m.h.cl_ord_id)?;
                if m.locked < 0 || m.locked > m.total {
                    return Err(Violation("a Balance locks more than it holds"));
                }
                Ok(Seen::First {
                    cl_ord_id: m.h.cl_ord_id,
                })
            }
            OrderMsg::NewOrder(_)
            | OrderMsg::CancelOrder(_)
            | OrderMsg::ReplaceOrder(_)
            | OrderMsg::BookQuery(_)
            | OrderMsg::BalanceQuery(_) => Err(Violation("a request sent to a client")),
        }
    }

    /// Takes the oldest pending request, which must be `cl_ord_id`.
    fn first(&mut self, lane: usize, cl_ord_id: u64) -> Result<Pending, Violation> {
        let l = &mut self.lanes[lane];
        match l.pending.front() {
            Some(p) if p.cl_ord_id == cl_ord_id => Ok(l.pending.pop_front().expect("front exists")),
            Some(_) => Err(Violation("a first answer out of request order")),
            None => Err(Violation("a first answer with no request in flight")),
        }
    }
}

impl Lane {
    fn insert(&mut self, key: Key, mut o: Open) {
        match self.open.entry(key) {
            hash_map::Entry::Occupied(mut e) => {
                o.at = e.get().at;
                e.insert(o);
            }
            hash_map::Entry::Vacant(e) => {
                o.at = self.open_keys.len();
                e.insert(o);
                self.open_keys.push(key);
            }
        }
    }

    /// The open order `old` now goes by `new` (a replace renamed it): it
    /// keeps its place among the keys the draw picks from, so nothing else
    /// moves. `new` is fresh: a lane's names come from its own counter.
    fn rename(&mut self, old: Key, new: Key) -> &mut Open {
        let o = self.open.remove(&old).expect("renaming an open order");
        self.open_keys[o.at] = new;
        match self.open.entry(new) {
            hash_map::Entry::Vacant(e) => e.insert(o),
            hash_map::Entry::Occupied(_) => unreachable!("a lane's names are fresh"),
        }
    }

    fn remove(&mut self, key: Key) -> Option<Open> {
        let o = self.open.remove(&key)?;
        // The last key takes the removed one's place, as the draw needs
        // them dense; its order learns where it went.
        self.open_keys.swap_remove(o.at);
        if let Some(moved) = self.open_keys.get(o.at) {
            self.open.get_mut(moved).expect("every open key is open").at = o.at;
        }
        Some(o)
    }

    /// An open order with no cancel or replace in flight, at random.
    fn pick_open(&mut self) -> Option<Key> {
        for _ in 0..4 {
            let n = self.open_keys.len();
            if n == 0 {
                return None;
            }
            let key = self.open_keys[self.rng.random_range(0..n)];
            if !self.open[&key].busy {
                return Some(key);
            }
        }
        None
    }

    fn passive_price(&mut self, config: &FlowConfig, instrument: u32, side: u8) -> i64 {
        let mid = self.mids[(instrument - 1) as usize];
        let off = self.rng.random_range(1..=config.band);
        if side == SIDE_BUY {
            mid - off
        } else {
            mid + off
        }
    }

    fn drift(&mut self, config: &FlowConfig, instrument: u32) {
        let mid = &mut self.mids[(instrument - 1) as usize];
        let step = self.rng.random_range(-1..=1);
        *mid = (*mid + step).clamp(2 * config.band + 1, i64::MAX / 4);
    }

    fn draw(&mut self, config: &FlowConfig, h: Header) -> (OrderMsg<'static>, Asked) {
        let instrument = self.rng.random_range(1..=config.instruments);
        self.drift(config, instrument);
        let account = self.accounts[self.rng.random_range(0..self.accounts.len())];
        let side = if self.rng.random_bool(0.5) {
            SIDE_BUY
        } else {
            SIDE_SELL
        };
        let qty = self.rng.random_range(1..=config.qty_max);
        let filling = self.open.len() + self.pending.len() < self.resting_target;
        let roll = self.rng.random_range(0..100u8);
        let m = config.mix;
        if !filling {
            if roll < m.replace {
                if let Some(target) = self.pick_open() {
                    return self.replace(config, h, target);
                }
            } else if roll < m.replace + m.cancel {
                if let Some(target) = self.pick_open() {
                    self.open.get_mut(&target).expect("picked").busy = true;
                    let msg = OrderMsg::CancelOrder(CancelOrder {
                        h,
                        account: target.0,
                        orig_cl_ord_id: target.1,
                    });
                    return (msg, Asked::Cancel { target });
                }
            } else if roll < m.replace + m.cancel + m.day {
                // A new day order: below.
            } else if roll < m.replace + m.cancel + m.day + m.ioc {
                let mid = self.mids[(instrument - 1) as usize];
                let reach = self.rng.random_range(0..=config.band / 4);
                let price = if side == SIDE_BUY {
                    mid + reach
                } else {
                    mid - reach
                };
                return new_order(h, account, instrument, side, TIF_IOC, price, qty);
            } else {
                let msg = if self.rng.random_bool(0.5) {
                    OrderMsg::BookQuery(BookQuery {
                        h,
                        instrument,
                        depth: 10,
                    })
                } else {
                    OrderMsg::BalanceQuery(BalanceQuery {
                        h,
                        account,
                        asset: self.rng.random_range(0..=config.instruments),
                    })
                };
                return (msg, Asked::Query);
            }
        }
        let price = self.passive_price(config, instrument, side);
        new_order(h, account, instrument, side, TIF_DAY, price, qty)
    }

    fn replace(
        &mut self,
        config: &FlowConfig,
        h: Header,
        target: Key,
    ) -> (OrderMsg<'static>, Asked) {
        let o = self.open.get_mut(&target).expect("picked");
        o.busy = true;
        let (side, open, instrument) = (o.side, o.open, o.instrument);
        let price = self.passive_price(config, instrument, side);
        let qty = self.rng.random_range(1..=open.max(1));
        let msg = OrderMsg::ReplaceOrder(ReplaceOrder {
            h,
            account: target.0,
            orig_cl_ord_id: target.1,
            price,
            qty,
        });
        let name = (target.0, h.cl_ord_id);
        (
            msg,
            Asked::Replace {
                target,
                name,
                price,
                qty,
            },
        )
    }
}

fn new_order(
    h: Header,
    account: u32,
    instrument: u32,
    side: u8,
    tif: u8,
    price: i64,
    qty: u64,
) -> (OrderMsg<'static>, Asked) {
    let msg = OrderMsg::NewOrder(NewOrder {
        h,
        account,
        instrument,
        side,
        tif,
        price,
        qty,
    });
    let name = (account, h.cl_ord_id);
    (
        msg,
        Asked::New {
            name,
            instrument,
            side,
            tif,
            price,
            qty,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fep_core::frame::Decoder;
    use fep_trading::order::{OrderAccepted, OrderExecuted, OP_NEW_ORDER};

    fn flow(connections: u32, seed: u64) -> OrderFlow {
        OrderFlow::new(FlowConfig {
            connections,
            seed,
            resting_target: 20,
            ..FlowConfig::default()
        })
        .expect("valid flow")
    }

    fn decode(bytes: &[u8]) -> OrderMsg<'_> {
        let mut d = Decoder::new(65_536);
        let mut frames = d.frames(bytes);
        let f = frames.next().expect("a frame").expect("well formed");
        // Re-borrow from `bytes`: the frame is whole, so its payload is too.
        let payload = &bytes[6..6 + f.payload.len()];
        OrderMsg::decode(f.opcode, payload).expect("decodes")
    }

    /// Answers every request the way a book that never matches would.
    fn accept_all(flow: &mut OrderFlow, lane: usize, request: &[u8], order_id: u64) {
        match decode(request) {
            OrderMsg::NewOrder(m) => {
                let acc = OrderMsg::OrderAccepted(OrderAccepted {
                    h: m.h,
                    account: m.account,
                    order_id,
                    instrument: m.instrument,
                    side: m.side,
                    tif: m.tif,
                    price: m.price,
                    qty: m.qty,
                });
                assert!(matches!(
                    flow.on_message(lane, &acc),
                    Ok(Seen::First { .. })
                ));
            }
            other => {
                let code = ErrorCode::UnknownOrder;
                flow.on_reject(lane, other.header().cl_ord_id, code)
                    .expect("a reject of a pending request is fine");
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_requests_and_another_seed_others() {
        let run = |seed| {
            let mut f = flow(3, seed);
            let mut out = Vec::new();
            for k in 0..200u64 {
                let start = out.len();
                f.next_request((k % 3) as usize, Nanos(k), &mut out);
                let req = out[start..].to_vec();
                accept_all(&mut f, (k % 3) as usize, &req, k + 1);
            }
            out
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn connections_trade_disjoint_accounts_and_refuse_to_share() {
        let f = flow(4, 0);
        let mut all: Vec<u32> = f.lanes.iter().flat_map(|l| l.accounts.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (1..=1024).collect::<Vec<_>>());
        let err = OrderFlow::new(FlowConfig {
            connections: 2000,
            ..FlowConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, FlowError::TooFewAccounts { .. }));
        assert!(err.to_string().contains("--accounts"));
    }

    #[test]
    fn a_lane_fills_its_book_share_then_mostly_replaces() {
        let mut f = flow(1, 3);
        let mut out = Vec::new();
        for k in 0..20u64 {
            out.clear();
            f.next_request(0, Nanos(k), &mut out);
            assert_eq!(
                decode(&out).opcode(),
                OP_NEW_ORDER,
                "filling the book first"
            );
            let req = out.clone();
            accept_all(&mut f, 0, &req, k + 1);
        }
        assert_eq!(f.open_orders(0), 20);
        let mut replaces = 0;
        for k in 20..1020u64 {
            out.clear();
            f.next_request(0, Nanos(k), &mut out);
            if matches!(decode(&out), OrderMsg::ReplaceOrder(_)) {
                replaces += 1;
            }
            let req = out.clone();
            accept_all(&mut f, 0, &req, k + 1);
        }
        // 70% of draws are replaces once the share is full.
        assert!((600..800).contains(&replaces), "{replaces} replaces");
        assert_eq!(f.stats().violations, 0);
    }

    #[test]
    fn answers_out_of_order_or_fills_past_the_order_are_violations() {
        let mut f = flow(1, 1);
        let mut out = Vec::new();
        f.next_request(0, Nanos(1), &mut out);
        let first = out.clone();
        out.clear();
        f.next_request(0, Nanos(2), &mut out);
        let second = out.clone();
        let OrderMsg::NewOrder(n2) = decode(&second) else {
            panic!("filling the book");
        };
        let acc2 = OrderMsg::OrderAccepted(OrderAccepted {
            h: n2.h,
            account: n2.account,
            order_id: 2,
            instrument: n2.instrument,
            side: n2.side,
            tif: n2.tif,
            price: n2.price,
            qty: n2.qty,
        });
        assert_eq!(
            f.on_message(0, &acc2),
            Err(Violation("a first answer out of request order"))
        );
        accept_all(&mut f, 0, &first, 1);
        let OrderMsg::NewOrder(n1) = decode(&first) else {
            panic!("filling the book");
        };
        let fill = |qty, leaves| {
            OrderMsg::OrderExecuted(OrderExecuted {
                h: n1.h,
                account: n1.account,
                order_id: 1,
                exec_id: 1,
                price: n1.price,
                qty,
                leaves,
                liquidity: LIQUIDITY_MAKER,
            })
        };
        assert_eq!(
            f.on_message(0, &fill(n1.qty + 1, 0)),
            Err(Violation("a fill disagrees with the order it names"))
        );
        assert_eq!(f.on_message(0, &fill(n1.qty, 0)), Ok(Seen::Later));
        assert_eq!(f.open_orders(0), 0, "a filled order is closed");
        assert_eq!(f.stats().violations, 2);
    }
}
