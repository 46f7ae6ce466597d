//! `fep-trading`: the FEP wire protocol and its three roles as sans-IO
//! services on `fep-core`.
//!
//! - [`msg`]: every message of PROTOCOL.md, encode and decode;
//! - [`order`]: the order-entry messages (20100 … 20155);
//! - [`exchange`]: answers pings with pongs stamped `t3`;
//! - [`gateway`]: client sessions, one upstream per worker, local or
//!   cross-worker routing, `t2`/`t4` stamps;
//! - [`client`]: the load generator's logic: hand-shake, warm-up, measure,
//!   hop histograms;
//! - [`risk`]: entitlements and pre-trade risk checks the gateway calls;
//! - [`scenario`]: the benchmark scenarios and the report checks both
//!   drivers share;
//! - [`harness`]: a deterministic in-memory driver for tests and benches.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod exchange;
pub mod flow;
pub mod gateway;
pub mod harness;
pub mod hello;
mod id_table;
pub mod msg;
pub mod open_orders;
pub mod order;
pub mod risk;
pub mod scenario;
pub mod schedule;

pub use msg::Role;
