//! `fep-trading`: the FEP wire protocol and its three roles as sans-IO
//! services on `fep-core`.
//!
//! - [`msg`]: every message of PROTOCOL.md, encode and decode;
//! - [`exchange`]: answers pings with pongs stamped `t3`;
//! - [`gateway`]: client sessions, one upstream per worker, local or
//!   cross-worker routing, `t2`/`t4` stamps;
//! - [`harness`]: one gateway worker driven in memory, for the allocation
//!   test and the benchmark.
//!
//! Load generation (the client, schedules, scenarios and the in-memory
//! harness of the whole path) is the `fep-load` crate: the gateway and the
//! exchange do not link it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod exchange;
pub mod gateway;
pub mod harness;
pub mod hello;
pub mod msg;

pub use msg::Role;
