//! `fep-sim`: the FEP gateway's state machines under deterministic
//! simulation, on turmoil.
//!
//! The roles are the `fep-trading` services the real backend runs; only the
//! driver differs. One `u64` seed decides everything: turmoil's network
//! randomness (`rng_seed`), the accept spread over workers, handoff delays,
//! the fault schedule and the buggify points (ChaCha streams named by host
//! and purpose, [`seed`]). The epoch is fixed and the tick is 1 ms. A run
//! leaves a trace whose digest is equal for equal seeds, in any process,
//! and a verdict per invariant.
//!
//! - [`run`]: one run of a scenario: hosts `exchange`, `gateway` and
//!   `client-0…N`, the fault schedule, the checks;
//! - [`faults`]: fault plans (`all`, kinds, pinned `KIND@AT+FOR/TARGET`);
//! - [`check`]: the invariants, safety then liveness;
//! - [`driver`]: the turmoil driver of a `fep-core` worker, generic over
//!   the service;
//! - [`sweep`]: many seeds on every core, and shrinking a failing one;
//! - [`seed`]: seed derivation;
//! - [`storage`]: the exchange's journal on turmoil's simulated filesystem
//!   (crash, torn writes, I/O errors);
//! - [`trace`]: the trace, its digest, and wire events;
//! - [`observe`]: decodes the wire apart from the roles;
//! - [`oracle`]: the checker's own wire decoder, written from the contract;
//! - [`orders`]: the order-entry invariants, against the reference model;
//! - [`panics`]: a panic in host software fails the run by name.
//!
//! # Modelling choices
//!
//! - Time is turmoil's: `now` is `sim_elapsed`, which moves in 1 ms ticks,
//!   and a message is delivered no earlier than the tick after it was sent.
//!   Hop stamps are therefore whole milliseconds.
//! - Links draw 0–1 ms latency; the `latency` fault uses turmoil's link
//!   latency (1 ms resolution, jitter within `min..max`); `hold` uses
//!   turmoil's `hold`/`release`, which delays and keeps per-stream order.
//! - A partition kills a turmoil TCP stream for good, so a `cut` is a
//!   partition plus both drivers dropping their connections to the other
//!   side (a TCP stack giving up), and dials time out while it lasts.
//! - A crashed exchange is `crash` then `bounce`: a new incarnation with
//!   fresh workers and fresh RNG streams. In the ping scenarios it starts
//!   empty; in the order scenarios (o1–o3) it journals on turmoil's
//!   simulated filesystem and recovers on the same directory, under
//!   storage faults drawn from the seed ([`run::StorageKnobs`]: torn
//!   writes, lost unsynced writes, I/O errors, read corruption); a journal
//!   that fails is healed by a restart, as an operator would.
//! - A worker whose service is done (a drained gateway) keeps serving
//!   until every worker of its host is done, as net-real's workers do: one
//!   that stopped early would drop what another still hands it.
//! - The checker sees each frame twice on a receiving host: when the
//!   driver read it, and when the worker handled it (the read handed to
//!   the worker, or a handoff taken from another worker). Hop stamps are
//!   checked against the second: `t2`/`t3`/`t4` must equal it.
//!
//! # Reproducing
//!
//! Every failure is printed with the one `fepsim run …` command that
//! repeats it bit for bit; `fepsim shrink` makes it small.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod driver;
pub mod durable;
pub mod faults;
pub mod observe;
pub mod oracle;
pub mod orders;
pub mod panics;
pub mod run;
pub mod seed;
pub mod storage;
pub mod sweep;
pub mod trace;
