//! `fep-load`: load generation for the FEP gateway, as sans-IO services on
//! `fep-core`, kept out of the gateway and exchange binaries.
//!
//! - [`client`]: the load generator's logic: dial, hand-shake, warm up,
//!   measure, hop histograms;
//! - [`schedule`]: open-loop arrival schedules;
//! - [`flow`]: a seeded order flow and the checks a client makes of its
//!   answers;
//! - [`scenario`]: the benchmark scenarios and the report checks every
//!   driver shares;
//! - [`harness`]: a deterministic in-memory driver of the whole path
//!   (client, gateway workers, exchange) for tests and benches.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod flow;
pub mod harness;
pub mod scenario;
pub mod schedule;
