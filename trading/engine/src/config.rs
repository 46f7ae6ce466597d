//! The settings that shape the engine's state, with a stable encoding so a
//! restore (or a journal) can refuse a state made under other settings.

use std::fmt;

use crate::limits::{ACCOUNTS_MAX, BALANCE_CELLS_MAX, INSTRUMENTS_MAX, LEVELS_MAX, ORDERS_MAX};

/// What an engine is made of. Everything is sized from it at start; nothing
/// grows afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Instruments are numbered `1 ..= instruments`; asset `i` is instrument
    /// `i`'s units, asset 0 is cash.
    pub instruments: u32,
    /// Accounts are numbered `1 ..= accounts`.
    pub accounts: u32,
    /// Cash every account starts with.
    pub cash: i64,
    /// Units of each instrument every account starts with.
    pub units: i64,
    /// Open (resting) orders across all books; a day order that would need
    /// a slot past it is rejected with [`RejectCode::BookFull`](crate::RejectCode::BookFull).
    pub orders_max: u32,
    /// Price levels per side of one book; past it, as for `orders_max`.
    pub levels_max: u32,
}

impl Default for Config {
    /// The exchange's defaults (16 instruments, 1,024 accounts) with room for
    /// 2^18 open orders and 4,096 levels a side.
    fn default() -> Self {
        Config {
            instruments: 16,
            accounts: 1_024,
            cash: 1_000_000_000_000,
            units: 1_000_000_000,
            orders_max: 1 << 18,
            levels_max: 4_096,
        }
    }
}

/// Why a configuration cannot start an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count that must be at least 1 is 0.
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// A count is above its limit (see [`limits`](crate::limits)).
    TooLarge {
        /// The field's name.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// A starting balance is negative.
    Negative {
        /// The field's name.
        field: &'static str,
        /// The value given.
        value: i64,
    },
    /// `accounts × cash` (or `× units`) does not fit an `i64`, so a balance
    /// could overflow once trades concentrate the asset.
    BalanceOverflow {
        /// `"cash"` or `"units"`.
        asset: &'static str,
        /// The number of accounts.
        accounts: u32,
        /// The starting balance per account.
        per_account: i64,
    },
    /// Encoded settings that are not a configuration (wrong magic or length).
    Malformed,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero { field } => write!(f, "engine setting {field} must be at least 1"),
            ConfigError::TooLarge { field, value, max } => {
                write!(
                    f,
                    "engine setting {field} = {value} is above its limit {max}"
                )
            }
            ConfigError::Negative { field, value } => {
                write!(f, "engine setting {field} = {value} must not be negative")
            }
            ConfigError::BalanceOverflow {
                asset,
                accounts,
                per_account,
            } => write!(
                f,
                "{accounts} accounts x {per_account} {asset} does not fit in an i64 (at most {})",
                i64::MAX
            ),
            ConfigError::Malformed => write!(f, "encoded engine settings are malformed"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The first bytes of an encoded [`Config`]; the digit is the format's
/// version.
pub const CONFIG_MAGIC: [u8; 8] = *b"FEPENGC1";

/// The length of [`Config::encode`]'s output.
pub const CONFIG_ENCODED_LEN: usize = 8 + 4 + 4 + 8 + 8 + 4 + 4;

impl Config {
    /// Checks every limit, and that no balance can overflow.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let counts = [
            ("instruments", self.instruments, INSTRUMENTS_MAX),
            ("accounts", self.accounts, ACCOUNTS_MAX),
            ("orders_max", self.orders_max, ORDERS_MAX),
            ("levels_max", self.levels_max, LEVELS_MAX),
        ];
        for (field, value, max) in counts {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
            if value > max {
                return Err(ConfigError::TooLarge {
                    field,
                    value: value.into(),
                    max: max.into(),
                });
            }
        }
        let cells = u64::from(self.accounts) * (u64::from(self.instruments) + 1);
        if cells > BALANCE_CELLS_MAX {
            return Err(ConfigError::TooLarge {
                field: "accounts x (instruments + 1)",
                value: cells,
                max: BALANCE_CELLS_MAX,
            });
        }
        for (asset, value) in [("cash", self.cash), ("units", self.units)] {
            if value < 0 {
                return Err(ConfigError::Negative {
                    field: asset,
                    value,
                });
            }
            if i64::from(self.accounts).checked_mul(value).is_none() {
                return Err(ConfigError::BalanceOverflow {
                    asset,
                    accounts: self.accounts,
                    per_account: value,
                });
            }
        }
        Ok(())
    }

    /// Appends the stable encoding: [`CONFIG_MAGIC`], then every field
    /// big-endian in declaration order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&CONFIG_MAGIC);
        out.extend_from_slice(&self.instruments.to_be_bytes());
        out.extend_from_slice(&self.accounts.to_be_bytes());
        out.extend_from_slice(&self.cash.to_be_bytes());
        out.extend_from_slice(&self.units.to_be_bytes());
        out.extend_from_slice(&self.orders_max.to_be_bytes());
        out.extend_from_slice(&self.levels_max.to_be_bytes());
    }

    /// Reads what [`Config::encode`] wrote (exactly [`CONFIG_ENCODED_LEN`]
    /// bytes). It does not validate: call [`Config::validate`].
    pub fn decode(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.len() != CONFIG_ENCODED_LEN || bytes[..8] != CONFIG_MAGIC {
            return Err(ConfigError::Malformed);
        }
        let u32_at =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let i64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            i64::from_be_bytes(b)
        };
        Ok(Config {
            instruments: u32_at(8),
            accounts: u32_at(12),
            cash: i64_at(16),
            units: i64_at(24),
            orders_max: u32_at(32),
            levels_max: u32_at(36),
        })
    }
}
