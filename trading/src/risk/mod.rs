//! Entitlements and pre-trade risk checks for the gateway, sans-IO.
//!
//! No clock (time is `now: Nanos`, passed in), no files (the caller reads
//! the `--risk` file and passes its text to [`RiskConfig::parse`]), no
//! threads, no hashing with random state, and no allocation per check.
//!
//! # Shape
//!
//! One [`RiskHandle`] per process holds what every worker shares: the
//! current configuration, and per client its open orders, open notional
//! and throttle bucket as atomics (a client's connections may land on
//! different workers). Each worker takes its own [`Risk`] from the handle
//! ([`RiskHandle::risk`]) and calls it on every request:
//!
//! | request | call | on `Ok` |
//! |---|---|---|
//! | hand-shake | [`Risk::client_by_token`] | the connection's [`ClientId`] |
//! | `NewOrder` | [`Risk::check_new`] | one order and its notional reserved |
//! | `ReplaceOrder` | [`Risk::check_replace`] | the notional increase reserved |
//! | `CancelOrder` | [`Risk::check_cancel`] | nothing reserved |
//! | `BalanceQuery` | [`Risk::check_balance_query`] | nothing reserved |
//!
//! A refusal is a [`Refusal`]: answer `Reject{RISK_LIMIT}` with
//! [`Refusal::reason`] and do not forward. Nothing stays reserved.
//!
//! # Keeping exposure right
//!
//! The exchange's answers settle what a check reserved. Notional is
//! always `|price| × qty` at the order's **own limit price** (see
//! [`notional`]), never a fill's price: a taker's fill happens at the
//! maker's price, but what was reserved was priced at its own limit.
//!
//! - `Reject` of a `NewOrder` or `ReplaceOrder`: [`Risk::release`] the
//!   [`Reservation`] the check returned.
//! - `OrderExecuted` (maker or taker): [`Risk::on_fill`]`(client, order
//!   price, fill qty, leaves)`.
//! - `OrderCanceled` (on request, an IOC's rest, cancel on disconnect):
//!   [`Risk::on_canceled`]`(client, order price, canceled_qty)`.
//! - `OrderReplaced`: [`Risk::on_replaced`]`(client, reservation,
//!   old open notional, new open notional)`, a reduce and an open in one.
//! - An order the gateway learns of without a check: [`Risk::on_open`].
//!
//! Exposure never goes negative: removing more than is open is a broken
//! invariant of the caller and panics. Bad input never panics: the gateway
//! settles from its own record of each order (a fill or cancel never for
//! more than it knows to be open), so a misbehaving exchange cannot reach
//! the assertion.
//!
//! The throttle counts new orders and replaces, refused ones included (a
//! refused message is still a message); cancels and balance queries are
//! checked for the account alone and are never blocked otherwise, not even
//! by a kill switch.
//!
//! # Reload
//!
//! [`RiskHandle::reload`] swaps in a new configuration: limits apply from
//! each worker's next check; exposure and the throttle carry over for
//! clients of the same name. A [`ClientId`] stays valid: a client removed
//! by a reload is refused everything ([`Refusal::Account`]) but its
//! exposure can still be settled.

mod config;
mod limits;
mod refusal;
mod state;

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use fep_core::Nanos;

pub use config::{
    ClientConfig, Collar, ConfigErrors, IdSet, Limits, RiskConfig, Throttle, OPEN_CLIENT_NAME,
};
pub use limits::{
    CLIENTS_MAX, CLIENT_NAME_LEN_MAX, CLIENT_TOKEN_LEN_MAX, COLLAR_BPS_MAX, CONFIG_TEXT_LEN_MAX,
    ID_LIST_LEN_MAX, INSTRUMENT_ID_MAX, RATE_PER_S_MAX, REASON_LEN_MAX, REFERENCE_PRICES_MAX,
};
pub use refusal::{Check, ReasonBuf, Refusal, Side};

use state::ClientState;

/// A configured client, valid for the life of its [`RiskHandle`] (across
/// reloads: it names the client's slot, which follows its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(u16);

impl ClientId {
    /// The client's slot, `0 .. CLIENTS_MAX` (for per-client arrays).
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The terms of a `NewOrder` that risk looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderTerms {
    /// The account the order trades.
    pub account: u32,
    /// The instrument.
    pub instrument: u32,
    /// Buy or sell; `None` for a side byte that is neither (the exchange
    /// refuses such an order; no check here depends on the side, it only
    /// shows in a collar's reason).
    pub side: Option<Side>,
    /// Limit price in ticks.
    pub price: i64,
    /// Quantity.
    pub qty: u64,
}

/// The terms of a `ReplaceOrder`, with what the gateway knows of the
/// order it replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplaceTerms {
    /// The account the request names.
    pub account: u32,
    /// The new price.
    pub price: i64,
    /// The new open quantity.
    pub qty: u64,
    /// The order's price and open quantity now, when the gateway knows
    /// them: then only the increase is reserved (else the whole new
    /// notional).
    pub current: Option<Resting>,
    /// The order's instrument, when the gateway keeps it: then the
    /// instrument list and the collar apply to the replace too.
    pub instrument: Option<u32>,
    /// The order's side, when known (it only shows in a collar's reason).
    pub side: Option<Side>,
}

/// An open order as the gateway last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resting {
    /// Its limit price.
    pub price: i64,
    /// What is still open.
    pub open: u64,
}

/// What a passed check reserved, to [`Risk::release`] if the exchange
/// refuses the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "a reservation must be released if the exchange refuses the request"]
pub struct Reservation {
    /// Open orders reserved (1 for a new order, 0 for a replace).
    pub orders: u64,
    /// Notional reserved.
    pub notional: u64,
}

/// A client's open orders and open notional, all workers together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Orders counted open (including those reserved and in flight).
    pub open_orders: u64,
    /// Their notional.
    pub open_notional: u64,
}

/// `|price| × qty`, exact.
pub const fn notional(price: i64, qty: u64) -> u128 {
    price.unsigned_abs() as u128 * qty as u128
}

/// A configuration in force, with each client's slot.
#[derive(Debug)]
struct Applied {
    generation: u64,
    config: RiskConfig,
    /// Slot of `config.clients[i]`.
    slot_of: Vec<u16>,
    /// Index into `config.clients` by slot, for slots in use.
    client_at: Vec<Option<u16>>,
    /// The throttle of the client in each slot, in nanoseconds, worked
    /// out once here: the divisions stay off the per-order path.
    buckets: Vec<Option<Bucket>>,
}

/// A throttle as the check uses it: see [`Throttle::interval_ns`] and
/// [`Throttle::tolerance_ns`].
#[derive(Clone, Copy, Debug)]
struct Bucket {
    interval_ns: u64,
    tolerance_ns: u64,
}

/// What reload changes, behind the one lock of the module (taken on a
/// reload and on each worker's first check after one, never otherwise).
#[derive(Debug)]
struct Registry {
    generation: AtomicU64,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    applied: Arc<Applied>,
    /// Slot → client name, every name seen since start.
    names: Vec<String>,
}

/// The process-wide risk state; clone it freely, take one [`Risk`] per
/// worker.
#[derive(Clone)]
pub struct RiskHandle {
    registry: Arc<Registry>,
    clients: Arc<[ClientState]>,
    trades: Arc<[AtomicI64]>,
}

/// One worker's view: the checks, and the exposure updates.
pub struct Risk {
    registry: Arc<Registry>,
    applied: Arc<Applied>,
    clients: Arc<[ClientState]>,
    /// Last trade price by instrument id (0: none seen).
    trades: Arc<[AtomicI64]>,
}

/// Two handles are equal when they share one state (clones of each other).
impl PartialEq for RiskHandle {
    fn eq(&self, other: &RiskHandle) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry)
    }
}

impl Eq for RiskHandle {}

impl fmt::Debug for RiskHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RiskHandle")
            .field("generation", &self.registry.generation)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Risk")
            .field("generation", &self.applied.generation)
            .field("clients", &self.applied.config.clients().len())
            .finish_non_exhaustive()
    }
}

fn apply(config: RiskConfig, generation: u64, names: &mut Vec<String>) -> Result<Applied, String> {
    let mut slot_of = Vec::with_capacity(config.clients().len());
    for c in config.clients() {
        let slot = match names.iter().position(|n| *n == c.name) {
            Some(s) => s,
            None if names.len() < CLIENTS_MAX => {
                names.push(c.name.clone());
                names.len() - 1
            }
            None => {
                return Err(format!(
                    "clients: more than {CLIENTS_MAX} distinct client names since start \
                     (restart the gateway to forget removed ones)"
                ))
            }
        };
        // CLIENTS_MAX fits a u16 (asserted in limits).
        slot_of.push(slot as u16);
    }
    let mut client_at = vec![None; names.len()];
    let mut buckets = vec![None; names.len()];
    for (i, &slot) in slot_of.iter().enumerate() {
        client_at[usize::from(slot)] = Some(i as u16);
        buckets[usize::from(slot)] = config.clients()[i].limits.throttle.map(|t| Bucket {
            interval_ns: t.interval_ns(),
            tolerance_ns: t.tolerance_ns(),
        });
    }
    Ok(Applied {
        generation,
        config,
        slot_of,
        client_at,
        buckets,
    })
}

impl RiskHandle {
    /// The shared state for `config`; every per-client slot and the table
    /// of last trades are allocated here, once.
    pub fn new(config: RiskConfig) -> RiskHandle {
        let mut names = Vec::with_capacity(CLIENTS_MAX);
        // A parsed configuration has at most CLIENTS_MAX clients.
        let applied = apply(config, 0, &mut names).expect("a fresh registry has room");
        let clients: Arc<[ClientState]> =
            (0..CLIENTS_MAX).map(|_| ClientState::default()).collect();
        let trades: Arc<[AtomicI64]> = (0..=INSTRUMENT_ID_MAX).map(|_| AtomicI64::new(0)).collect();
        RiskHandle {
            registry: Arc::new(Registry {
                generation: AtomicU64::new(0),
                current: Mutex::new(Current {
                    applied: Arc::new(applied),
                    names,
                }),
            }),
            clients,
            trades,
        }
    }

    /// A worker's own view, sharing this handle's state.
    pub fn risk(&self) -> Risk {
        Risk {
            registry: Arc::clone(&self.registry),
            applied: self.current(),
            clients: Arc::clone(&self.clients),
            trades: Arc::clone(&self.trades),
        }
    }

    /// Puts `new` in force for every worker's next check. Exposure and
    /// throttle state carry over by client name. Fails (and changes
    /// nothing) only when the names since start would pass [`CLIENTS_MAX`].
    pub fn reload(&self, new: RiskConfig) -> Result<(), ConfigErrors> {
        let mut current = self
            .registry
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = current.applied.generation + 1;
        let mut names = current.names.clone();
        let applied = apply(new, generation, &mut names).map_err(ConfigErrors::one)?;
        current.applied = Arc::new(applied);
        current.names = names;
        self.registry
            .generation
            .store(generation, Ordering::Release);
        Ok(())
    }

    /// What a gateway does on SIGHUP: parses `text` and, only when it is
    /// good, puts it in force; returns the new [`RiskHandle::describe`]
    /// line. On error the limits in force stay as they were.
    pub fn reload_text(&self, text: &str) -> Result<String, ConfigErrors> {
        self.reload(RiskConfig::parse(text)?)?;
        Ok(self.describe())
    }

    /// One line for the start-up (and reload) log.
    pub fn describe(&self) -> String {
        self.current().config.describe()
    }

    /// The configuration in force.
    pub fn config(&self) -> RiskConfig {
        self.current().config.clone()
    }

    fn current(&self) -> Arc<Applied> {
        let current = self
            .registry
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&current.applied)
    }
}

impl Risk {
    /// The client whose token this is (hand-shake). `None`: answer
    /// `Error{ROLE_REFUSED}`. Compares every token in full, so the time
    /// taken does not tell how much of a token was right.
    pub fn client_by_token(&mut self, token: &str) -> Option<ClientId> {
        self.refresh();
        let applied = &*self.applied;
        let mut found = None;
        for (i, c) in applied.config.clients().iter().enumerate() {
            let hit = match &c.token {
                None => true,
                Some(t) => same_bytes(t.as_bytes(), token.as_bytes()),
            };
            if hit && found.is_none() {
                found = Some(ClientId(applied.slot_of[i]));
            }
        }
        found
    }

    /// Checks a new order, in the documented order: account, kill switch,
    /// throttle, instrument, max_qty, max_notional, price_collar,
    /// max_open_orders, max_open_notional. On `Ok` one order and its
    /// notional are reserved; a refusal reserves nothing (the throttle
    /// token it took stays taken: a refused message is still a message).
    pub fn check_new(
        &mut self,
        now: Nanos,
        client: ClientId,
        order: &OrderTerms,
    ) -> Result<Reservation, Refusal> {
        self.refresh();
        let c = self.entitled(client, order.account)?;
        let state = &self.clients[client.index()];
        gate(&self.applied, client, c, state, now)?;
        let limits = &c.limits;
        check_instrument(limits, order.instrument)?;
        let n = check_size(limits, order.price, order.qty)?;
        check_collar(
            self.reference(order.instrument),
            limits,
            order.side,
            order.price,
        )?;
        state
            .reserve_order(limits.max_open_orders)
            .map_err(|over| Refusal::MaxOpenOrders {
                open: over.0 as u64,
                max: limits.max_open_orders.unwrap_or(u64::MAX),
            })?;
        if let Err(over) = state.reserve_notional(n, limits.max_open_notional) {
            state.sub(1, 0);
            return Err(Refusal::MaxOpenNotional {
                open_notional: over.0,
                max: limits.max_open_notional.unwrap_or(u64::MAX),
            });
        }
        Ok(Reservation {
            orders: 1,
            notional: n,
        })
    }

    /// Checks a replace: account, kill switch, throttle, instrument (when
    /// known), the new size, collar (when the instrument is known), and the
    /// open notional with the increase only. On `Ok` the increase over the
    /// current open notional (the whole new notional when unknown) is
    /// reserved.
    pub fn check_replace(
        &mut self,
        now: Nanos,
        client: ClientId,
        replace: &ReplaceTerms,
    ) -> Result<Reservation, Refusal> {
        self.refresh();
        let c = self.entitled(client, replace.account)?;
        let state = &self.clients[client.index()];
        gate(&self.applied, client, c, state, now)?;
        let limits = &c.limits;
        if let Some(instrument) = replace.instrument {
            check_instrument(limits, instrument)?;
        }
        let n = check_size(limits, replace.price, replace.qty)?;
        if let Some(instrument) = replace.instrument {
            let reference = self.reference(instrument);
            check_collar(reference, limits, replace.side, replace.price)?;
        }
        let held = replace
            .current
            .map_or(0, |cur| notional(cur.price, cur.open));
        // `n` fits a u64 (check_size); `held` may not, then nothing is added.
        let increase = u128::from(n).saturating_sub(held) as u64;
        state
            .reserve_notional(increase, limits.max_open_notional)
            .map_err(|over| Refusal::MaxOpenNotional {
                open_notional: over.0,
                max: limits.max_open_notional.unwrap_or(u64::MAX),
            })?;
        Ok(Reservation {
            orders: 0,
            notional: increase,
        })
    }

    /// A cancel is checked for the account alone: never blocked by a kill
    /// switch, the throttle or any limit.
    pub fn check_cancel(&mut self, client: ClientId, account: u32) -> Result<(), Refusal> {
        self.refresh();
        self.entitled(client, account).map(|_| ())
    }

    /// A balance query is checked for the account alone.
    pub fn check_balance_query(&mut self, client: ClientId, account: u32) -> Result<(), Refusal> {
        self.refresh();
        self.entitled(client, account).map(|_| ())
    }

    /// Gives back what a check reserved (the exchange refused the request).
    pub fn release(&self, client: ClientId, reserved: Reservation) {
        self.clients[client.index()].sub(reserved.orders, reserved.notional);
    }

    /// Counts an order open that no check reserved.
    pub fn on_open(&self, client: ClientId, notional: u64) {
        self.clients[client.index()].add(1, notional);
    }

    /// Removes `notional` of an open order (a fill or a cancel); `closed`
    /// when the order is no longer open. Panics if more is removed than is
    /// open: the caller's bookkeeping is broken.
    pub fn on_reduce(&self, client: ClientId, notional: u64, closed: bool) {
        self.clients[client.index()].sub(u64::from(closed), notional);
    }

    /// Settles an `OrderExecuted`: `qty` filled of an order whose limit
    /// price is `order_price`, `leaves` still open after it.
    pub fn on_fill(&self, client: ClientId, order_price: i64, qty: u64, leaves: u64) {
        self.on_reduce(client, settled(order_price, qty), leaves == 0);
    }

    /// Settles an `OrderCanceled`: `canceled_qty` of an order whose limit
    /// price is `order_price`; the order is closed.
    pub fn on_canceled(&self, client: ClientId, order_price: i64, canceled_qty: u64) {
        self.on_reduce(client, settled(order_price, canceled_qty), true);
    }

    /// Settles an `OrderReplaced`: the order's exposure goes from `held`
    /// (its open notional before) plus the replace's `reserved` to `now_open`
    /// (its open notional after). Equivalent to `on_reduce(held + reserved)`
    /// then the new notional opened, in one step.
    pub fn on_replaced(&self, client: ClientId, reserved: Reservation, held: u64, now_open: u64) {
        let state = &self.clients[client.index()];
        let before = u128::from(held) + u128::from(reserved.notional);
        let after = u128::from(now_open);
        if before >= after {
            // A difference of two u64-bounded sums, itself ≤ held + reserved.
            let down = before - after;
            let down = u64::try_from(down).expect("a reduce within u64: held + reserved ≤ open");
            state.sub(reserved.orders, down);
        } else {
            state.add(0, (after - before) as u64);
            state.sub(reserved.orders, 0);
        }
    }

    /// The last trade the gateway saw on `instrument`: the collar's
    /// reference from now on. A price ≤ 0 or an instrument above
    /// [`INSTRUMENT_ID_MAX`] is ignored.
    pub fn on_trade(&self, instrument: u32, price: i64) {
        if price > 0 {
            if let Some(slot) = self.trades.get(instrument as usize) {
                slot.store(price, Ordering::Relaxed);
            }
        }
    }

    /// A client's exposure now, all workers together.
    pub fn exposure(&self, client: ClientId) -> Exposure {
        let s = &self.clients[client.index()];
        Exposure {
            open_orders: s.open_orders(),
            open_notional: s.open_notional(),
        }
    }

    /// The collar's reference for `instrument`: the last trade seen, else
    /// the configured price, else none (then there is no collar).
    pub fn reference(&self, instrument: u32) -> Option<i64> {
        let traded = self
            .trades
            .get(instrument as usize)
            .map_or(0, |t| t.load(Ordering::Relaxed));
        if traded > 0 {
            return Some(traded);
        }
        self.applied.config.reference_price(instrument)
    }

    /// The name of a client in the configuration in force (`None` after a
    /// reload removed it).
    pub fn client_name(&self, client: ClientId) -> Option<&str> {
        self.client(client).map(|c| c.name.as_str())
    }

    /// Picks up a reload: one atomic load per check, the lock only once
    /// after each reload.
    #[inline]
    fn refresh(&mut self) {
        let generation = self.registry.generation.load(Ordering::Acquire);
        if generation != self.applied.generation {
            let current = self
                .registry
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.applied = Arc::clone(&current.applied);
        }
    }

    fn client(&self, client: ClientId) -> Option<&ClientConfig> {
        let applied = &*self.applied;
        let i = (*applied.client_at.get(client.index())?)?;
        applied.config.clients().get(usize::from(i))
    }

    fn entitled(&self, client: ClientId, account: u32) -> Result<&ClientConfig, Refusal> {
        match self.client(client) {
            Some(c) if c.accounts.contains(account) => Ok(c),
            _ => Err(Refusal::Account { account }),
        }
    }
}

impl ConfigErrors {
    fn one(line: String) -> ConfigErrors {
        let mut e = ConfigErrors::default();
        e.push_line(line);
        e
    }
}

/// The notional of part of an open order. The whole order's notional was
/// reserved as a u64, so a part that does not fit is the caller's bug.
fn settled(price: i64, qty: u64) -> u64 {
    let n = notional(price, qty);
    u64::try_from(n).unwrap_or_else(|_| panic!("settling {n}, more than was ever reserved"))
}

/// Kill switches, then the throttle.
fn gate(
    applied: &Applied,
    client: ClientId,
    c: &ClientConfig,
    state: &ClientState,
    now: Nanos,
) -> Result<(), Refusal> {
    if applied.config.kill_switch() {
        return Err(Refusal::KillSwitch { global: true });
    }
    if c.kill_switch {
        return Err(Refusal::KillSwitch { global: false });
    }
    // `c` is entitled, so its slot is in the table.
    if let Some(b) = applied.buckets[client.index()] {
        if !state.take_token(now.as_u64(), b.interval_ns, b.tolerance_ns) {
            let t = c.limits.throttle.expect("a bucket comes from a throttle");
            return Err(Refusal::Throttle {
                rate_per_s: t.rate_per_s,
                burst: t.burst,
            });
        }
    }
    Ok(())
}

fn check_instrument(limits: &Limits, instrument: u32) -> Result<(), Refusal> {
    match &limits.instruments {
        Some(set) if !set.contains(instrument) => Err(Refusal::Instrument { instrument }),
        _ => Ok(()),
    }
}

/// max_qty and max_notional; the notional, which then fits a u64.
fn check_size(limits: &Limits, price: i64, qty: u64) -> Result<u64, Refusal> {
    if let Some(max) = limits.max_qty {
        if qty > max {
            return Err(Refusal::MaxQty { qty, max });
        }
    }
    let n = notional(price, qty);
    let max = limits.max_notional.unwrap_or(u64::MAX);
    match u64::try_from(n) {
        Ok(v) if v <= max => Ok(v),
        _ => Err(Refusal::MaxNotional { notional: n, max }),
    }
}

fn check_collar(
    reference: Option<i64>,
    limits: &Limits,
    side: Option<Side>,
    price: i64,
) -> Result<(), Refusal> {
    let (Some(collar), Some(reference)) = (limits.collar, reference) else {
        return Ok(());
    };
    let band = collar.band(reference);
    let (low, high) = (i128::from(reference) - band, i128::from(reference) + band);
    if (low..=high).contains(&i128::from(price)) {
        return Ok(());
    }
    Err(Refusal::PriceCollar {
        side,
        price,
        low,
        high,
        reference,
    })
}

/// Equality that looks at every byte whatever the first difference.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}
