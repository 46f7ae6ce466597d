//! Every bound of the risk module in one place, checked against each other
//! at compile time.

use crate::msg::TOKEN_LEN_MAX;

/// Client names a process can know over its lifetime: every name ever
/// configured (a reload that removes a client keeps its slot, so the
/// exposure of its open orders can still be released). Shared state is
/// allocated for all of them up front.
pub const CLIENTS_MAX: usize = 1_024;

/// Largest instrument id whose last trade is tracked as a reference price.
/// Above it only the configured reference applies (the table of last
/// trades is allocated up front, one atomic per id).
pub const INSTRUMENT_ID_MAX: u32 = 16_384;

/// Longest hand-shake token, in bytes: the protocol's bound.
pub const CLIENT_TOKEN_LEN_MAX: usize = TOKEN_LEN_MAX;

/// Longest client name, in bytes (it shows in logs and `describe()`).
pub const CLIENT_NAME_LEN_MAX: usize = 64;

/// Longest `Reject{RISK_LIMIT}` reason, in bytes: the protocol's bound.
pub const REASON_LEN_MAX: usize = fep_core::limits::REASON_LEN_MAX;

/// Entries of one id list (`accounts`, `instruments`): ids and ranges.
pub const ID_LIST_LEN_MAX: usize = 4_096;

/// Configured reference prices.
pub const REFERENCE_PRICES_MAX: usize = 65_536;

/// Longest configuration text, in bytes; a file past it is refused whole
/// (it is read at start and on reload, never on the hot path).
pub const CONFIG_TEXT_LEN_MAX: usize = 16 * 1024 * 1024;

/// Fastest throttle: one message per nanosecond. Faster would make the
/// emission interval zero, which is no throttle at all.
pub const RATE_PER_S_MAX: u64 = 1_000_000_000;

/// Widest collar in basis points (100 times the reference price).
pub const COLLAR_BPS_MAX: u64 = 1_000_000;

/// Basis points in one.
pub(crate) const BPS_PER_UNIT: u64 = 10_000;

const _: () = assert!(CLIENTS_MAX <= u16::MAX as usize);
const _: () = assert!(CLIENT_TOKEN_LEN_MAX == 64);
const _: () = assert!(REASON_LEN_MAX >= 128);
const _: () = assert!(RATE_PER_S_MAX <= 1_000_000_000);
const _: () = assert!(COLLAR_BPS_MAX >= BPS_PER_UNIT);
const _: () = assert!(REFERENCE_PRICES_MAX >= INSTRUMENT_ID_MAX as usize);
