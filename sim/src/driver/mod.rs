//! The turmoil driver of a `fep-core` [`Worker`], generic over the role.
//!
//! A simulated host runs `workers` tokio tasks on its `LocalSet`, each
//! owning one [`Worker`]. Everything a worker task reacts to arrives on one
//! inbox, in the order the (deterministic) runtime produced it: accepted
//! streams, dial results, bytes read, end of stream, handoffs, delayed
//! flushes and fault commands; the one other wake-up is the worker's timer.
//! After every input the task drains [`Worker::poll_effect`] completely.
//!
//! What the kernel does for the real backend is modelled here, seeded:
//! - the spread of accepted connections over workers (SO_REUSEPORT): one
//!   acceptor task picks the worker with the host's `accept` stream;
//! - the cross-worker handoff queue: one courier task per (source, target)
//!   pair, FIFO, delivering each batch of handed-off frames after a delay
//!   drawn from the source's `handoff` stream; the queue is bounded, and
//!   past its bound the bytes wait in their worker;
//! - the socket send buffer: one writer task per connection drains a
//!   buffer of at most [`SEND_BUF_MAX`] bytes into the turmoil stream, whose
//!   end-to-end flow control holds it while the peer does not read. Bytes
//!   enter the buffer only while it has room ([`Worker::handle_written`]
//!   then), so a peer that stops reading makes the worker's own output
//!   backlog grow, as a full kernel buffer does for the real backend;
//! - the receive side: each connection's reader waits for room in the
//!   worker's bounded inbox before it reads on (TCP holds the sender back).
//!
//! The modules: `host` (incarnations, the acceptor), `worker_task`
//! (inbox and effects), `fabric` (couriers), `socket` (send buffers,
//! readers, gates), `knobs` (what faults change during a run).
//!
//! Buggify points (off unless [`Knobs::buggify`] says otherwise) nudge the
//! worker the way a real event loop may: a read delivered in pieces, a
//! spurious timeout, a write held back for a few milliseconds.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use fep_core::{
    ConnId, Effect, InputGroup, Nanos, PeerId, Service, Worker, WorkerConfig, WorkerId,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{channel, Receiver, Sender};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use turmoil::net::{TcpListener, TcpStream};

use crate::observe::ConnObserver;
use crate::seed;
use crate::trace::{Dir, Handled, HostIx, OpenConn, SharedRecorder, WireEvent};

mod fabric;
mod host;
mod knobs;
mod socket;
mod worker_task;

pub use host::{Host, HostSpec, JournalLog, JournalSlot};
pub use knobs::{Buggify, Control, Knobs, Sabotage};

use fabric::*;
use host::*;
use socket::*;
use worker_task::*;

/// Bytes one read may return; a larger segment is read in several.
const READ_BUF_LEN: usize = 64 * 1024;

/// Inputs waiting for one worker task; past it their producers wait (a
/// connection's reader, a courier, the acceptor).
const INBOX_MAX: usize = 1024;

/// The simulated socket send buffer of one connection, in bytes.
pub const SEND_BUF_MAX: usize = 64 * 1024;

/// Commands the harness may queue for a host before its software takes them.
const CONTROL_MAX: usize = 64;

/// The simulated time, as the state machines see it.
pub fn sim_now() -> Nanos {
    let elapsed = turmoil::sim_elapsed().expect("called inside a simulated host");
    Nanos(u64::try_from(elapsed.as_nanos()).expect("a run lasts less than 584 years"))
}
