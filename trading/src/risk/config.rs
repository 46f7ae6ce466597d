//! The risk configuration: a TOML text in, validated settings out, with
//! every mistake reported (not just the first), one line each, naming the
//! key.
//!
//! Parsing is two passes. The first deserializes each key of each section
//! on its own (serde with `deny_unknown_fields`), so one bad key does not
//! hide the next; the second checks what only the whole file can show
//! (duplicate tokens, an account in two clients, a rate without a burst).

use std::fmt;
use std::ops::RangeInclusive;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::limits::{
    CLIENTS_MAX, CLIENT_NAME_LEN_MAX, CLIENT_TOKEN_LEN_MAX, COLLAR_BPS_MAX, CONFIG_TEXT_LEN_MAX,
    ID_LIST_LEN_MAX, RATE_PER_S_MAX, REFERENCE_PRICES_MAX,
};

/// A validated risk configuration. Build it with [`RiskConfig::parse`] (a
/// `--risk` file's text) or [`RiskConfig::open`] (no file: today's
/// behaviour).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskConfig {
    kill_switch: bool,
    clients: Vec<ClientConfig>,
    /// Sorted by instrument, no duplicates.
    reference_prices: Vec<(u32, i64)>,
    open: bool,
}

/// One named client: its hand-shake token, its accounts, its limits (the
/// top-level defaults with its own overrides applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The client's name (its key under `[clients]`); exposure and throttle
    /// state follow the name across a reload.
    pub name: String,
    /// The token its `RoleHelloReq` must carry; `None` only in the open
    /// configuration, where any token is accepted.
    pub token: Option<String>,
    /// The accounts it may trade, cancel and query.
    pub accounts: IdSet,
    /// Its own kill switch.
    pub kill_switch: bool,
    /// Its effective limits.
    pub limits: Limits,
}

/// Limits of one client; `None` is "no limit".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Largest quantity of one order.
    pub max_qty: Option<u64>,
    /// Largest `|price| × qty` of one order.
    pub max_notional: Option<u64>,
    /// How far a price may stray from the instrument's reference price.
    pub collar: Option<Collar>,
    /// The instruments the client may trade; `None` is all.
    pub instruments: Option<IdSet>,
    /// Most open orders, all the client's connections together.
    pub max_open_orders: Option<u64>,
    /// Most open notional (credit), all the client's connections together.
    pub max_open_notional: Option<u64>,
    /// Message-rate throttle on new orders and replaces.
    pub throttle: Option<Throttle>,
}

/// A price collar's half-width around the reference price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collar {
    /// In basis points of the reference price (`price_collar_bps`).
    Bps(u64),
    /// In ticks (`price_collar_ticks`).
    Ticks(u64),
}

impl Collar {
    /// The half-width in ticks around `reference` (> 0; its size is used).
    pub fn band(self, reference: i64) -> i128 {
        match self {
            Collar::Ticks(t) => i128::from(t),
            Collar::Bps(bps) => {
                // A 64-bit division when the product fits (every price
                // below ~1.8e13 ticks): the 128-bit one costs ~20 ns.
                let unit = super::limits::BPS_PER_UNIT;
                let reference = reference.unsigned_abs();
                match reference.checked_mul(bps) {
                    Some(p) => i128::from(p / unit),
                    None => (u128::from(reference) * u128::from(bps) / u128::from(unit)) as i128,
                }
            }
        }
    }
}

/// A token bucket: `burst` messages at once, refilled at `rate_per_s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    /// Refill rate, messages per second (1 ..= 10^9).
    pub rate_per_s: u64,
    /// Bucket size, messages (≥ 1).
    pub burst: u64,
}

impl Throttle {
    /// Nanoseconds between two messages at the steady rate.
    pub const fn interval_ns(self) -> u64 {
        // A validated throttle has a rate of at least 1; guard the division
        // for a hand-built one all the same.
        let rate = if self.rate_per_s == 0 {
            1
        } else {
            self.rate_per_s
        };
        1_000_000_000 / rate
    }

    /// How far ahead of `now` the bucket may run before it is empty.
    pub const fn tolerance_ns(self) -> u64 {
        self.interval_ns()
            .saturating_mul(self.burst.saturating_sub(1))
    }
}

/// A set of ids (accounts or instruments) as sorted, merged ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdSet {
    ranges: Vec<RangeInclusive<u32>>,
}

impl IdSet {
    /// Every id, 0 included: without a configuration the gateway decides
    /// nothing about accounts, so an id no exchange knows (0 among them)
    /// gets the exchange's `INVALID_ORDER`, not a risk refusal.
    pub fn all() -> IdSet {
        IdSet {
            ranges: vec![0..=u32::MAX],
        }
    }

    /// The set of the given ranges (sorted and merged here).
    pub fn from_ranges(mut ranges: Vec<RangeInclusive<u32>>) -> IdSet {
        ranges.retain(|r| r.start() <= r.end());
        ranges.sort_by_key(|r| *r.start());
        let mut merged: Vec<RangeInclusive<u32>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if u64::from(*r.start()) <= u64::from(*last.end()) + 1 => {
                    let end = (*last.end()).max(*r.end());
                    *last = *last.start()..=end;
                }
                _ => merged.push(r),
            }
        }
        IdSet { ranges: merged }
    }

    /// Whether `id` is in the set (a binary search; no allocation).
    pub fn contains(&self, id: u32) -> bool {
        let i = self.ranges.partition_point(|r| *r.end() < id);
        self.ranges.get(i).is_some_and(|r| r.contains(&id))
    }

    /// The merged ranges, ascending.
    pub fn ranges(&self) -> &[RangeInclusive<u32>] {
        &self.ranges
    }
}

/// Every mistake of a configuration, one line each, each naming its key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors {
    lines: Vec<String>,
}

impl ConfigErrors {
    /// The lines: per section in key order, then what the whole file shows.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    pub(super) fn push_line(&mut self, line: String) {
        self.lines.push(line);
    }

    fn push(&mut self, key: &str, what: impl fmt::Display) {
        self.lines.push(format!("{key}: {what}"));
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl RiskConfig {
    /// No configuration file: one client, every account, no limits; the
    /// hand-shake needs `token` when one is given, else any token passes.
    pub fn open(token: Option<String>) -> RiskConfig {
        RiskConfig {
            kill_switch: false,
            clients: vec![ClientConfig {
                name: OPEN_CLIENT_NAME.to_owned(),
                token,
                accounts: IdSet::all(),
                kill_switch: false,
                limits: Limits::default(),
            }],
            reference_prices: Vec::new(),
            open: true,
        }
    }

    /// Parses and validates a `--risk` file's text. On error every mistake
    /// found is returned, one line each.
    pub fn parse(text: &str) -> Result<RiskConfig, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        if text.len() > CONFIG_TEXT_LEN_MAX {
            errors.push(
                "(file)",
                format_args!("{} bytes, more than {CONFIG_TEXT_LEN_MAX}", text.len()),
            );
            return Err(errors);
        }
        let table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                errors.lines.push(syntax_line(text, &e));
                return Err(errors);
            }
        };
        let config = build(&table, &mut errors);
        match config {
            Some(c) if errors.lines.is_empty() => Ok(c),
            _ => Err(errors),
        }
    }

    /// Whether this is the open configuration (no file).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The global kill switch.
    pub fn kill_switch(&self) -> bool {
        self.kill_switch
    }

    /// The clients, in name order.
    pub fn clients(&self) -> &[ClientConfig] {
        &self.clients
    }

    /// The configured reference price of `instrument`, if any.
    pub fn reference_price(&self, instrument: u32) -> Option<i64> {
        self.reference_prices
            .binary_search_by_key(&instrument, |&(i, _)| i)
            .ok()
            .map(|i| self.reference_prices[i].1)
    }

    /// One line for the start-up log saying what is enforced.
    pub fn describe(&self) -> String {
        if self.open {
            let token = match &self.clients[0].token {
                Some(_) => "the configured token",
                None => "any token",
            };
            return format!(
                "risk: no configuration: one client ({token}), every account, no limits"
            );
        }
        let names: Vec<&str> = self.clients.iter().map(|c| c.name.as_str()).collect();
        format!(
            "risk: {} client(s) ({}), reference prices for {} instrument(s), global kill switch {}",
            self.clients.len(),
            names.join(", "),
            self.reference_prices.len(),
            if self.kill_switch { "ON" } else { "off" },
        )
    }
}

/// The name of the open configuration's one client.
pub const OPEN_CLIENT_NAME: &str = "(open)";

/// The file's top level: the global kill switch, the default limits, the
/// reference prices and the clients.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTop {
    kill_switch: Option<bool>,
    max_qty: Option<u64>,
    max_notional: Option<u64>,
    price_collar_bps: Option<u64>,
    price_collar_ticks: Option<u64>,
    instruments: Option<Vec<toml::Value>>,
    max_open_orders: Option<u64>,
    max_open_notional: Option<u64>,
    rate_per_s: Option<u64>,
    burst: Option<u64>,
    reference_prices: Option<toml::Table>,
    clients: Option<toml::Table>,
}

/// One `[clients.NAME]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    token: Option<String>,
    accounts: Option<Vec<toml::Value>>,
    kill_switch: Option<bool>,
    max_qty: Option<u64>,
    max_notional: Option<u64>,
    price_collar_bps: Option<u64>,
    price_collar_ticks: Option<u64>,
    instruments: Option<Vec<toml::Value>>,
    max_open_orders: Option<u64>,
    max_open_notional: Option<u64>,
    rate_per_s: Option<u64>,
    burst: Option<u64>,
}

/// The limit keys of one scope, as written (before defaults apply).
#[derive(Debug, Default)]
struct RawLimits {
    max_qty: Option<u64>,
    max_notional: Option<u64>,
    price_collar_bps: Option<u64>,
    price_collar_ticks: Option<u64>,
    instruments: Option<Vec<toml::Value>>,
    max_open_orders: Option<u64>,
    max_open_notional: Option<u64>,
    rate_per_s: Option<u64>,
    burst: Option<u64>,
}

fn syntax_line(text: &str, e: &toml::de::Error) -> String {
    let message = one_line(e.message());
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("TOML syntax, line {line}, column {column}: {message}")
        }
        None => message,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn path(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    }
}

/// Deserializes `table` as `T`, one key at a time first so that every bad
/// key is reported; the good keys are then read together, so that the
/// sections below a bad key are still checked.
fn section<T: DeserializeOwned>(
    table: &toml::Table,
    name: &str,
    errors: &mut ConfigErrors,
) -> Option<T> {
    let mut good = toml::Table::new();
    for (key, value) in table {
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        match one.try_into::<T>() {
            Ok(_) => {
                good.insert(key.clone(), value.clone());
            }
            Err(e) => {
                let message = one_line(e.message());
                match message.strip_prefix("unknown field") {
                    Some(rest) => errors.push(&path(name, key), unknown_key(key, rest)),
                    None => errors.push(&path(name, key), message),
                }
            }
        }
    }
    match good.try_into::<T>() {
        Ok(t) => Some(t),
        Err(e) => {
            let where_ = if name.is_empty() { "(top level)" } else { name };
            errors.push(where_, one_line(e.message()));
            None
        }
    }
}

/// "unknown key", with the nearest known key when one is a typo away.
/// `rest` is serde's tail: `` `x`, expected one of `a`, `b` ``.
fn unknown_key(key: &str, rest: &str) -> String {
    let known = rest
        .split_once("expected")
        .map_or("", |(_, k)| k)
        .split('`')
        .skip(1)
        .step_by(2);
    let nearest = known
        .map(|k| (edit_distance(key, k), k))
        .filter(|&(d, _)| d <= 2)
        .min();
    match nearest {
        Some((_, k)) => format!("unknown key (did you mean {k}?)"),
        None => "unknown key".to_owned(),
    }
}

/// Levenshtein distance (config keys are short; this runs at start only).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn build(table: &toml::Table, errors: &mut ConfigErrors) -> Option<RiskConfig> {
    let top: RawTop = section(table, "", errors)?;
    let defaults = RawLimits {
        max_qty: top.max_qty,
        max_notional: top.max_notional,
        price_collar_bps: top.price_collar_bps,
        price_collar_ticks: top.price_collar_ticks,
        instruments: top.instruments,
        max_open_orders: top.max_open_orders,
        max_open_notional: top.max_open_notional,
        rate_per_s: top.rate_per_s,
        burst: top.burst,
    };
    check_scope(&defaults, "", errors);
    let reference_prices = reference_prices(top.reference_prices.as_ref(), errors);
    let clients = clients(top.clients.as_ref(), &defaults, errors);
    check_tokens(&clients, errors);
    check_accounts(&clients, errors);
    Some(RiskConfig {
        kill_switch: top.kill_switch.unwrap_or(false),
        clients,
        reference_prices,
        open: false,
    })
}

/// Checks the values one scope writes, naming them by that scope's keys.
fn check_scope(raw: &RawLimits, scope: &str, errors: &mut ConfigErrors) {
    for (key, value) in [
        ("max_qty", raw.max_qty),
        ("max_notional", raw.max_notional),
        ("price_collar_bps", raw.price_collar_bps),
        ("price_collar_ticks", raw.price_collar_ticks),
        ("max_open_orders", raw.max_open_orders),
        ("max_open_notional", raw.max_open_notional),
        ("rate_per_s", raw.rate_per_s),
        ("burst", raw.burst),
    ] {
        if value == Some(0) {
            errors.push(&path(scope, key), "must be at least 1");
        }
    }
    if raw.price_collar_bps.is_some() && raw.price_collar_ticks.is_some() {
        errors.push(
            &path(scope, "price_collar_ticks"),
            "set with price_collar_bps in the same section: choose one",
        );
    }
    if raw.price_collar_bps.is_some_and(|b| b > COLLAR_BPS_MAX) {
        errors.push(
            &path(scope, "price_collar_bps"),
            format_args!("above {COLLAR_BPS_MAX}"),
        );
    }
    if raw.rate_per_s.is_some_and(|r| r > RATE_PER_S_MAX) {
        errors.push(
            &path(scope, "rate_per_s"),
            format_args!("above {RATE_PER_S_MAX}"),
        );
    }
    if let Some(items) = &raw.instruments {
        id_set(items, &path(scope, "instruments"), errors);
    }
}

/// The effective limits of a client: its own keys, else the defaults'.
fn merge(own: &RawLimits, defaults: &RawLimits, scope: &str, errors: &mut ConfigErrors) -> Limits {
    let collar = match (own.price_collar_bps, own.price_collar_ticks) {
        (Some(b), _) => Some(Collar::Bps(b)),
        (None, Some(t)) => Some(Collar::Ticks(t)),
        (None, None) => match (defaults.price_collar_bps, defaults.price_collar_ticks) {
            (Some(b), _) => Some(Collar::Bps(b)),
            (None, Some(t)) => Some(Collar::Ticks(t)),
            (None, None) => None,
        },
    };
    let rate = own.rate_per_s.or(defaults.rate_per_s);
    let burst = own.burst.or(defaults.burst);
    let throttle = match (rate, burst) {
        (Some(rate_per_s), Some(burst)) if rate_per_s > 0 && burst > 0 => Some(Throttle {
            rate_per_s: rate_per_s.min(RATE_PER_S_MAX),
            burst,
        }),
        (Some(_), None) => {
            errors.push(
                &path(scope, "rate_per_s"),
                "set without burst (set both, here or at the top level)",
            );
            None
        }
        (None, Some(_)) => {
            errors.push(
                &path(scope, "burst"),
                "set without rate_per_s (set both, here or at the top level)",
            );
            None
        }
        _ => None,
    };
    let instruments = own
        .instruments
        .as_ref()
        .or(defaults.instruments.as_ref())
        .map(|items| id_set(items, "", &mut ConfigErrors::default()));
    Limits {
        max_qty: own.max_qty.or(defaults.max_qty),
        max_notional: own.max_notional.or(defaults.max_notional),
        collar,
        instruments,
        max_open_orders: own.max_open_orders.or(defaults.max_open_orders),
        max_open_notional: own.max_open_notional.or(defaults.max_open_notional),
        throttle,
    }
}

/// Turns an id list into a set; bad entries are reported under `key`.
fn id_set(items: &[toml::Value], key: &str, errors: &mut ConfigErrors) -> IdSet {
    if items.is_empty() {
        errors.push(key, "empty list");
    }
    if items.len() > ID_LIST_LEN_MAX {
        errors.push(key, format_args!("more than {ID_LIST_LEN_MAX} entries"));
    }
    let mut ranges = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match id_range(item) {
            Ok(r) => ranges.push(r),
            Err(what) => errors.push(&format!("{key}[{i}]"), what),
        }
    }
    IdSet::from_ranges(ranges)
}

fn id_range(item: &toml::Value) -> Result<RangeInclusive<u32>, String> {
    let id = |n: i64| -> Result<u32, String> {
        match u32::try_from(n) {
            Ok(v) if v >= 1 => Ok(v),
            _ => Err(format!("{n} is not an id (1 ..= {})", u32::MAX)),
        }
    };
    match item {
        toml::Value::Integer(n) => id(*n).map(|v| v..=v),
        toml::Value::String(s) => {
            let bad = || format!("{s:?} is not a range \"A-B\"");
            let (a, b) = s.split_once('-').ok_or_else(bad)?;
            let a: i64 = a.trim().parse().map_err(|_| bad())?;
            let b: i64 = b.trim().parse().map_err(|_| bad())?;
            let (a, b) = (id(a)?, id(b)?);
            if a > b {
                return Err(format!("{s:?}: start above end"));
            }
            Ok(a..=b)
        }
        other => Err(format!(
            "expected an id or a range \"A-B\", found {}",
            other.type_str()
        )),
    }
}

fn reference_prices(table: Option<&toml::Table>, errors: &mut ConfigErrors) -> Vec<(u32, i64)> {
    let mut out = Vec::new();
    for (key, value) in table.into_iter().flatten() {
        let name = path("reference_prices", key);
        let instrument = match key.parse::<u32>() {
            Ok(i) if i >= 1 => Some(i),
            _ => {
                errors.push(&name, "not an instrument id (1 ..= 4294967295)");
                None
            }
        };
        let price = match value.as_integer() {
            Some(p) if p > 0 => Some(p),
            Some(p) => {
                errors.push(&name, format_args!("price {p} is not above 0"));
                None
            }
            None => {
                errors.push(
                    &name,
                    format_args!(
                        "expected an integer price in ticks, found {}",
                        value.type_str()
                    ),
                );
                None
            }
        };
        if let (Some(i), Some(p)) = (instrument, price) {
            out.push((i, p));
        }
    }
    if out.len() > REFERENCE_PRICES_MAX {
        errors.push(
            "reference_prices",
            format_args!("more than {REFERENCE_PRICES_MAX} instruments"),
        );
    }
    out.sort_unstable();
    // Keys like "7" and "07" name the same instrument.
    for w in out.windows(2) {
        if w[0].0 == w[1].0 {
            errors.push(
                &path("reference_prices", &w[0].0.to_string()),
                "instrument given twice",
            );
        }
    }
    out.dedup_by_key(|&mut (i, _)| i);
    out
}

fn clients(
    table: Option<&toml::Table>,
    defaults: &RawLimits,
    errors: &mut ConfigErrors,
) -> Vec<ClientConfig> {
    let Some(table) = table.filter(|t| !t.is_empty()) else {
        errors.push(
            "clients",
            "no client configured (add a [clients.NAME] section)",
        );
        return Vec::new();
    };
    if table.len() > CLIENTS_MAX {
        errors.push("clients", format_args!("more than {CLIENTS_MAX} clients"));
    }
    let mut out = Vec::with_capacity(table.len());
    for (name, value) in table {
        let scope = path("clients", name);
        if name.is_empty() || name.len() > CLIENT_NAME_LEN_MAX {
            errors.push(
                &scope,
                format_args!("a name of 1 ..= {CLIENT_NAME_LEN_MAX} bytes"),
            );
        }
        let Some(section_table) = value.as_table() else {
            errors.push(
                &scope,
                format_args!("expected a table, found {}", value.type_str()),
            );
            continue;
        };
        let Some(raw) = section::<RawClient>(section_table, &scope, errors) else {
            continue;
        };
        if let Some(c) = client(name, raw, defaults, &scope, errors) {
            out.push(c);
        }
    }
    out
}

fn client(
    name: &str,
    raw: RawClient,
    defaults: &RawLimits,
    scope: &str,
    errors: &mut ConfigErrors,
) -> Option<ClientConfig> {
    let own = RawLimits {
        max_qty: raw.max_qty,
        max_notional: raw.max_notional,
        price_collar_bps: raw.price_collar_bps,
        price_collar_ticks: raw.price_collar_ticks,
        instruments: raw.instruments,
        max_open_orders: raw.max_open_orders,
        max_open_notional: raw.max_open_notional,
        rate_per_s: raw.rate_per_s,
        burst: raw.burst,
    };
    check_scope(&own, scope, errors);
    let limits = merge(&own, defaults, scope, errors);
    let token = match raw.token {
        None => {
            errors.push(
                &path(scope, "token"),
                "missing (every client needs its own)",
            );
            None
        }
        Some(t) if t.is_empty() || t.len() > CLIENT_TOKEN_LEN_MAX => {
            errors.push(
                &path(scope, "token"),
                format_args!("must be 1 ..= {CLIENT_TOKEN_LEN_MAX} bytes"),
            );
            None
        }
        Some(t) => Some(t),
    };
    let accounts = match raw.accounts {
        None => {
            errors.push(&path(scope, "accounts"), "missing");
            None
        }
        Some(items) => Some(id_set(&items, &path(scope, "accounts"), errors)),
    };
    Some(ClientConfig {
        name: name.to_owned(),
        token: Some(token?),
        accounts: accounts?,
        kill_switch: raw.kill_switch.unwrap_or(false),
        limits,
    })
}

fn check_tokens(clients: &[ClientConfig], errors: &mut ConfigErrors) {
    for (i, c) in clients.iter().enumerate() {
        let first = clients[..i].iter().find(|o| o.token == c.token);
        if let Some(o) = first {
            errors.push(
                &path(&path("clients", &c.name), "token"),
                format_args!("same token as clients.{}", o.name),
            );
        }
    }
}

fn check_accounts(clients: &[ClientConfig], errors: &mut ConfigErrors) {
    let mut all: Vec<(RangeInclusive<u32>, usize)> = clients
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.accounts.ranges().iter().map(move |r| (r.clone(), i)))
        .collect();
    all.sort_by_key(|(r, i)| (*r.start(), *i));
    // Ranges within one client are merged, so any overlap is between two.
    let mut widest: Option<(u32, usize)> = None;
    for (r, i) in &all {
        if let Some((end, owner)) = widest {
            if *r.start() <= end && owner != *i {
                errors.push(
                    &path(&path("clients", &clients[*i].name), "accounts"),
                    format_args!(
                        "account {} is also in clients.{}",
                        r.start(),
                        clients[owner].name
                    ),
                );
            }
        }
        if widest.is_none_or(|(end, _)| *r.end() > end) {
            widest = Some((*r.end(), *i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_set_merges_adjacent_and_overlapping_ranges() {
        let s = IdSet::from_ranges(vec![5..=9, 1..=2, 3..=3, 8..=12]);
        assert_eq!(s.ranges(), &[1..=3, 5..=12]);
        assert!(s.contains(1) && s.contains(3) && s.contains(12));
        assert!(!s.contains(0) && !s.contains(4) && !s.contains(13));
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_known_one() {
        let rest = " `max_qtty`, expected one of `token`, `max_qty`, `burst`";
        assert_eq!(
            unknown_key("max_qtty", rest),
            "unknown key (did you mean max_qty?)"
        );
        assert_eq!(unknown_key("colour", rest), "unknown key");
        assert_eq!(edit_distance("kill_swich", "kill_switch"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn a_collar_in_bps_is_a_fraction_of_the_reference() {
        assert_eq!(Collar::Bps(500).band(10_000), 500);
        assert_eq!(Collar::Bps(1).band(9_999), 0, "rounds down");
        assert_eq!(Collar::Ticks(7).band(10_000), 7);
        // Past u64 in the product: the wide path gives the same answer.
        assert_eq!(
            Collar::Bps(1_000_000).band(i64::MAX),
            i128::from(i64::MAX) * 100
        );
    }

    #[test]
    fn a_throttle_spaces_messages_by_its_rate() {
        let t = Throttle {
            rate_per_s: 1_000,
            burst: 3,
        };
        assert_eq!(t.interval_ns(), 1_000_000);
        assert_eq!(t.tolerance_ns(), 2_000_000);
    }
}
