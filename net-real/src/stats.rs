//! What a worker's event loop did: counters for comparing write modes and
//! checking that a path was taken (a `WouldBlock`, a handoff refusal).

use std::fmt;

/// Counters of one worker's I/O, kept without atomics (one thread each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Polls of the event loop.
    pub polls: u64,
    /// `read` calls that returned bytes.
    pub reads: u64,
    /// `write` calls that wrote bytes.
    pub writes: u64,
    /// Writes that took less than what was pending.
    pub partial_writes: u64,
    /// Writes that met `WouldBlock`: output then waits for `WRITABLE`.
    pub would_blocks: u64,
    /// Deferred mode: waits for `WRITABLE` armed before writing.
    pub deferred_waits: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Dials that connected.
    pub dialed: u64,
    /// Dials that failed or timed out.
    pub dial_failures: u64,
    /// Batches of handed-off bytes put in other workers' mailboxes.
    pub handoffs_sent: u64,
    /// Batches taken from this worker's mailboxes (one per source and turn).
    pub handoffs_received: u64,
    /// Times a batch found its mailbox full and waited for the target.
    pub handoff_waits: u64,
    /// Closing connections cut when their linger ran out.
    pub lingers_expired: u64,
    /// Connections whose input the service paused
    /// ([`fep_core::Effect::PauseInput`]): backpressure.
    pub input_pauses: u64,
}

impl fmt::Display for IoStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "polls {} reads {} writes {} partial {} would_block {} deferred_waits {} \
             accepted {} dialed {} dial_failures {} handoffs sent {} received {} waits {} \
             lingers_expired {} input_pauses {}",
            self.polls,
            self.reads,
            self.writes,
            self.partial_writes,
            self.would_blocks,
            self.deferred_waits,
            self.accepted,
            self.dialed,
            self.dial_failures,
            self.handoffs_sent,
            self.handoffs_received,
            self.handoff_waits,
            self.lingers_expired,
            self.input_pauses
        )
    }
}
