//! The driver's settings that faults may change during a run (knobs,
//! buggify points, sabotage for the checker's own tests) and the commands
//! the harness sends a running host.

use super::*;

/// Buggify points of the driver: probabilities per opportunity.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Buggify {
    /// A read is handed to the worker in 2–4 pieces.
    pub short_read: f64,
    /// An input is followed by a spurious [`Worker::handle_timeout`].
    pub spurious_wake: f64,
    /// A transmit is held back 1..=`delayed_write_ms_max` ms.
    pub delayed_write: f64,
    /// Longest hold of a delayed write.
    pub delayed_write_ms_max: u64,
}

impl Buggify {
    /// Every point off.
    pub const OFF: Buggify = Buggify {
        short_read: 0.0,
        spurious_wake: 0.0,
        delayed_write: 0.0,
        delayed_write_ms_max: 0,
    };
}

/// A deliberately broken driver. It exists so that the checker's own tests
/// can prove the checker fails a broken gateway; nothing else sets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sabotage {
    /// A correct driver.
    #[default]
    None,
    /// Handoff queues swap each pair of consecutive tasks (broken FIFO per
    /// worker pair).
    SwapHandoffs,
    /// Now and then a pong goes out on another client connection of the
    /// same worker (misrouting).
    CrossWrites,
    /// The end of a stream is not reported to the worker: its session
    /// outlives the connection.
    IgnoreEof,
    /// Every handoff is lost on the way.
    DropHandoffs,
    /// The driver panics at its first write, as a product bug that panics
    /// would: a sweep must report the seed and go on.
    Panic,
}

/// Settings of a host's driver that faults may change during a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knobs {
    /// Longest delay of a handoff; each draws uniformly from `0..=max` ms.
    pub handoff_delay_ms_max: u64,
    /// Tasks one (source, target) queue holds; past it handoffs are refused.
    pub handoff_queue_max: u32,
    /// The buggify points.
    pub buggify: Buggify,
    /// A broken driver, for the checker's tests.
    pub sabotage: Sabotage,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            handoff_delay_ms_max: 1,
            handoff_queue_max: 4096,
            buggify: Buggify::OFF,
            sabotage: Sabotage::None,
        }
    }
}

/// Commands the harness sends a running host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Drop every connection to `peer` without a word, as a TCP stack does
    /// when its retransmissions time out during a partition.
    AbortPeer(IpAddr),
    /// Start the drain ([`Worker::handle_shutdown`]) on every worker.
    Shutdown,
}
