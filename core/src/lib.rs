//! `fep-core`: the sans-IO engine of the FEP gateway.
//!
//! Bytes and time go in, bytes and effects come out. There are no sockets,
//! threads or clocks in this crate: drivers (`fep-sim` on turmoil, `fep-net`
//! on mio) own those and feed a [`Worker`] through its `handle_*` methods,
//! then drain [`Worker::poll_effect`]. The same worker code runs under both.
//!
//! - [`frame`]: the incremental decoder and the frame writer;
//! - [`wire`]: the `Error` and `Reject` frames every role speaks;
//! - [`state`]: connection states and the sets handlers declare;
//! - [`session`]: per-connection state and output;
//! - [`worker`]: the worker, its inputs and effects, and the [`Service`]
//!   trait a role implements;
//! - [`limits`]: every bound, in one place.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod frame;
pub mod limits;
pub mod session;
pub mod state;
pub mod time;
pub mod wire;
pub mod worker;

pub use error::{ErrorCode, Fault, FrameError};
pub use frame::{Decoder, Frame, FrameWriter};
pub use session::{Chunks, ConnId, Session, SessionId};
pub use state::{ConnState, Phase, Side, StateSet};
pub use time::Nanos;
pub use worker::{
    Context, Effect, Handler, InputGroup, Origin, PeerId, Service, Worker, WorkerConfig, WorkerId,
};
