//! Shared code of the FEP binaries.

pub mod bench;
