//! `fep-sim`: the FEP gateway's state machines under deterministic
//! simulation, on turmoil.
//!
//! The roles are the `fep-trading` services the real backend runs; only the
//! driver differs. One `u64` seed decides everything: turmoil's network
//! randomness, the accept spread over workers, handoff delays, the fault
//! schedule and the buggify points. A run leaves a trace whose digest is
//! equal for equal seeds, in any process, and a verdict of the invariant
//! checker.
//!
//! - [`run`]: one run of a scenario: hosts, fault schedule, checks;
//! - [`faults`]: fault plans;
//! - [`check`]: the invariants;
//! - [`driver`]: the generic turmoil driver of a `fep-core` worker;
//! - [`seed`]: seed derivation;
//! - [`sweep`]: many seeds in parallel, and shrinking;
//! - [`trace`]: the trace, its digest, and wire events;
//! - [`observe`]: decodes the wire apart from the roles.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod driver;
pub mod faults;
pub mod observe;
pub mod run;
pub mod seed;
pub mod sweep;
pub mod trace;
