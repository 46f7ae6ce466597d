//! `fep-engine`: a price-time matching engine for one exchange, as a
//! library anyone can embed.
//!
//! Commands in, events out. It knows no wire, no protocol frames, no
//! sockets, no threads and no clock, and it needs no time at all: day
//! orders never expire and nothing else depends on when. The same
//! commands in the same order give the same events, so a journal of
//! commands (with [`Engine::snapshot`] to shorten it) restores it exactly.
//!
//! ```
//! use fep_engine::{Config, Engine, Event, NewOrder, Side, Tif};
//!
//! let mut engine = Engine::new(Config::default()).expect("valid settings");
//! let mut events: Vec<Event> = Vec::with_capacity(64);
//! let sell = NewOrder { account: 1, cl_ord_id: 1, instrument: 1, side: Side::Sell,
//!                       tif: Tif::Day, price: 100, qty: 5 };
//! engine.new_order(&sell, &mut events);
//! events.clear();
//! let buy = NewOrder { account: 2, cl_ord_id: 1, side: Side::Buy, price: 101, qty: 3, ..sell };
//! engine.new_order(&buy, &mut events);
//! // Accepted, then the maker's fill, then the taker's, at the maker's price.
//! assert!(matches!(events[1], Event::Executed { price: 100, qty: 3, leaves: 2, .. }));
//! ```
//!
//! The contract it implements is the protocol's "Order entry" section; the
//! engine makes every decision there except refusing a bad side or time in
//! force byte, which [`Side`] and [`Tif`] cannot represent.
//!
//! # Data structures, and why
//!
//! See the crate's README.md (the architecture notes): an order pool with a
//! free list, a sorted array of price levels per book side with the best
//! level last, FIFO queues linked through the pool, and an open-addressed
//! name index with a fixed hash.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod book;
mod command;
mod config;
mod engine;
mod event;
mod index;
pub mod limits;
mod pool;
pub mod reference;
mod snapshot;

pub use command::{
    BalanceQuery, BookQuery, Cancel, Command, CommandDecodeError, NewOrder, Replace, Side, Tif,
    COMMAND_ENCODED_LEN_MAX,
};
pub use config::{Config, ConfigError, CONFIG_ENCODED_LEN, CONFIG_MAGIC};
pub use engine::Engine;
pub use event::{reason, CancelReason, Event, EventSink, Liquidity, RejectCode};
pub use snapshot::{RestoreError, SNAPSHOT_MAGIC};
