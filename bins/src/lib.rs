//! Shared code of the FEP binaries.

pub mod bench;
pub mod cli;
pub mod durable;
pub mod limits;
pub mod metrics;
