//! `fep-trading`: the FEP wire protocol and its three roles as sans-IO
//! services on `fep-core`.
//!
//! - [`msg`]: every message of PROTOCOL.md, encode and decode;
//! - [`order`]: the order-entry messages (20100 … 20155);
//! - [`exchange`]: answers pings with pongs stamped `t3`;
//! - [`gateway`]: client sessions, one upstream per worker, local or
//!   cross-worker routing, `t2`/`t4` stamps, order entry, cancel on
//!   disconnect;
//! - [`risk`]: entitlements and pre-trade risk checks the gateway calls;
//! - [`latency`]: fixed-bucket latency histograms (the gateway's legs);
//! - [`open_orders`]: the gateway's view of its clients' open orders;
//! - [`harness`]: one gateway worker driven in memory, for the allocation
//!   test and the benchmark.
//!
//! Load generation (the client, schedules, the order flow, scenarios and
//! the in-memory harness of the whole path) is the `fep-load` crate: the
//! gateway and the exchange do not link it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod exchange;
pub mod gateway;
pub mod harness;
pub mod hello;
mod id_table;
pub mod latency;
pub mod msg;
pub mod open_orders;
pub mod order;
pub mod risk;

pub use msg::Role;
