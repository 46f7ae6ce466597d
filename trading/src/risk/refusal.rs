//! Why a request was refused: which check, with the figures that tripped
//! it, rendered as a `Reject{RISK_LIMIT}` reason without allocating.

use std::fmt;

use super::limits::REASON_LEN_MAX;

/// The side of an order (PROTOCOL.md: 1 buy, 2 sell).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Side 1.
    Buy,
    /// Side 2.
    Sell,
}

impl Side {
    /// The wire value's side, `None` for anything but 1 or 2.
    pub const fn from_u8(b: u8) -> Option<Side> {
        match b {
            1 => Some(Side::Buy),
            2 => Some(Side::Sell),
            _ => None,
        }
    }

    /// Lower-case name, as in a reason.
    pub const fn name(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// The pre-trade checks, in the order a new order meets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// The account is not one the client may use.
    Account,
    /// The client's or the global kill switch is on.
    KillSwitch,
    /// The client's message rate passed its token bucket.
    Throttle,
    /// The instrument is not on the client's list.
    Instrument,
    /// The order's quantity passed the per-order maximum.
    MaxQty,
    /// The order's notional (`|price| × qty`) passed the per-order maximum.
    MaxNotional,
    /// The price is outside the collar around the reference price.
    PriceCollar,
    /// The client would have more open orders than allowed.
    MaxOpenOrders,
    /// The client's open notional (credit) would pass its maximum.
    MaxOpenNotional,
}

impl Check {
    /// Every check, in evaluation order (for per-check counters).
    pub const ALL: [Check; 9] = [
        Check::Account,
        Check::KillSwitch,
        Check::Throttle,
        Check::Instrument,
        Check::MaxQty,
        Check::MaxNotional,
        Check::PriceCollar,
        Check::MaxOpenOrders,
        Check::MaxOpenNotional,
    ];

    /// The check's name as the configuration and a reason spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Check::Account => "account",
            Check::KillSwitch => "kill_switch",
            Check::Throttle => "throttle",
            Check::Instrument => "instrument",
            Check::MaxQty => "max_qty",
            Check::MaxNotional => "max_notional",
            Check::PriceCollar => "price_collar",
            Check::MaxOpenOrders => "max_open_orders",
            Check::MaxOpenNotional => "max_open_notional",
        }
    }

    /// Position in [`Check::ALL`], for indexing a counter array.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// A refused request: the check and the figures that tripped it.
///
/// `Display` renders the `Reject{RISK_LIMIT}` reason, check name first
/// (`max_qty: 2000 > 1000`); [`Refusal::reason`] does the same into a
/// caller-owned buffer without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The client may not use `account` (or is no longer configured).
    Account {
        /// The account the request named.
        account: u32,
    },
    /// A kill switch is on: the client's own, or the global one.
    KillSwitch {
        /// Whether it is the global switch.
        global: bool,
    },
    /// The token bucket is empty.
    Throttle {
        /// The configured refill rate.
        rate_per_s: u64,
        /// The configured bucket size.
        burst: u64,
    },
    /// The instrument is not allowed for the client.
    Instrument {
        /// The instrument the order named.
        instrument: u32,
    },
    /// `qty > max`.
    MaxQty {
        /// The order's quantity.
        qty: u64,
        /// The limit.
        max: u64,
    },
    /// `notional > max` (`max` is `u64::MAX` when no limit is configured
    /// and the notional does not fit the exposure counters).
    MaxNotional {
        /// `|price| × qty`.
        notional: u128,
        /// The limit.
        max: u64,
    },
    /// The price is outside `low ..= high`.
    PriceCollar {
        /// The order's side, when known.
        side: Option<Side>,
        /// The order's price.
        price: i64,
        /// Lowest price allowed.
        low: i128,
        /// Highest price allowed.
        high: i128,
        /// The reference price the collar is centred on.
        reference: i64,
    },
    /// `open > max` with this order counted.
    MaxOpenOrders {
        /// Open orders the client would have.
        open: u64,
        /// The limit.
        max: u64,
    },
    /// `open_notional > max` with this order counted.
    MaxOpenNotional {
        /// Open notional the client would have.
        open_notional: u128,
        /// The limit.
        max: u64,
    },
}

impl Refusal {
    /// Which check refused.
    pub const fn check(&self) -> Check {
        match self {
            Refusal::Account { .. } => Check::Account,
            Refusal::KillSwitch { .. } => Check::KillSwitch,
            Refusal::Throttle { .. } => Check::Throttle,
            Refusal::Instrument { .. } => Check::Instrument,
            Refusal::MaxQty { .. } => Check::MaxQty,
            Refusal::MaxNotional { .. } => Check::MaxNotional,
            Refusal::PriceCollar { .. } => Check::PriceCollar,
            Refusal::MaxOpenOrders { .. } => Check::MaxOpenOrders,
            Refusal::MaxOpenNotional { .. } => Check::MaxOpenNotional,
        }
    }

    /// Renders the reason into `buf` and returns it: at most
    /// [`REASON_LEN_MAX`] bytes of ASCII, check name first.
    pub fn reason<'a>(&self, buf: &'a mut ReasonBuf) -> &'a str {
        buf.len = 0;
        // Writing to a ReasonBuf never fails: it truncates instead.
        let _ = fmt::write(buf, format_args!("{self}"));
        buf.as_str()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.check().name();
        match *self {
            Refusal::Account { account } => write!(f, "{name}: {account} not entitled"),
            Refusal::KillSwitch { global: true } => write!(f, "{name}: global"),
            Refusal::KillSwitch { global: false } => write!(f, "{name}: client"),
            Refusal::Throttle { rate_per_s, burst } => {
                write!(f, "{name}: over {rate_per_s}/s, burst {burst}")
            }
            Refusal::Instrument { instrument } => write!(f, "{name}: {instrument} not allowed"),
            Refusal::MaxQty { qty, max } => write!(f, "{name}: {qty} > {max}"),
            Refusal::MaxNotional { notional, max } => write!(f, "{name}: {notional} > {max}"),
            Refusal::PriceCollar {
                side,
                price,
                low,
                high,
                reference,
            } => {
                write!(f, "{name}: ")?;
                if let Some(side) = side {
                    write!(f, "{} ", side.name())?;
                }
                write!(f, "{price} outside {low}..={high} (reference {reference})")
            }
            Refusal::MaxOpenOrders { open, max } => write!(f, "{name}: {open} > {max}"),
            Refusal::MaxOpenNotional { open_notional, max } => {
                write!(f, "{name}: {open_notional} > {max}")
            }
        }
    }
}

/// A fixed buffer for a reason: [`REASON_LEN_MAX`] bytes on the stack,
/// reused across refusals.
#[derive(Clone)]
pub struct ReasonBuf {
    bytes: [u8; REASON_LEN_MAX],
    len: usize,
}

impl ReasonBuf {
    /// An empty buffer.
    pub const fn new() -> ReasonBuf {
        ReasonBuf {
            bytes: [0; REASON_LEN_MAX],
            len: 0,
        }
    }

    /// What was written so far.
    pub fn as_str(&self) -> &str {
        // Only whole chars are ever copied in (see write_str).
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Default for ReasonBuf {
    fn default() -> ReasonBuf {
        ReasonBuf::new()
    }
}

impl fmt::Debug for ReasonBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReasonBuf").field(&self.as_str()).finish()
    }
}

impl fmt::Write for ReasonBuf {
    /// Truncates at the bound, on a char boundary, rather than fail: a
    /// shortened reason still names the check first.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = REASON_LEN_MAX - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Refusal) -> String {
        let mut buf = ReasonBuf::new();
        r.reason(&mut buf).to_owned()
    }

    #[test]
    fn a_reason_names_its_check_first() {
        for (r, want) in [
            (
                Refusal::MaxQty {
                    qty: 2000,
                    max: 1000,
                },
                "max_qty: 2000 > 1000",
            ),
            (Refusal::Account { account: 7 }, "account: 7 not entitled"),
            (Refusal::KillSwitch { global: true }, "kill_switch: global"),
            (
                Refusal::Throttle {
                    rate_per_s: 10,
                    burst: 2,
                },
                "throttle: over 10/s, burst 2",
            ),
        ] {
            assert_eq!(reason(r), want);
            assert!(reason(r).starts_with(r.check().name()));
        }
    }

    #[test]
    fn the_longest_reason_fits_the_protocol_bound() {
        let r = Refusal::PriceCollar {
            side: Some(Side::Sell),
            price: i64::MIN,
            low: -(i64::MAX as i128) * 101,
            high: (i64::MAX as i128) * 101,
            reference: i64::MAX,
        };
        let full = r.to_string();
        assert!(full.len() <= REASON_LEN_MAX, "{} bytes", full.len());
        assert_eq!(reason(r), full);
    }

    #[test]
    fn a_reason_buffer_truncates_instead_of_overflowing() {
        use std::fmt::Write;
        let mut buf = ReasonBuf::new();
        let long = "é".repeat(REASON_LEN_MAX);
        buf.write_str(&long).unwrap();
        assert!(buf.as_str().len() <= REASON_LEN_MAX);
        assert_eq!(buf.as_str().len() % 2, 0, "cut on a char boundary");
    }

    #[test]
    fn check_indices_follow_evaluation_order() {
        for (i, c) in Check::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
