//! What a load is: its model, its size, its bounds.

use super::*;

/// Connections a client dials at once; the rest wait their turn.
pub const DIALS_IN_FLIGHT_MAX: usize = 64;

/// Longest latency a histogram records: one hour, in ns.
pub const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// How pings are offered.
#[derive(Clone, Debug)]
pub enum Load {
    /// One ping in flight in total, round-robin over the connections.
    Closed,
    /// `inflight` pings in flight per connection.
    Pipelined {
        /// The window per connection.
        inflight: u32,
    },
    /// Open loop: arrivals on a schedule.
    Open {
        /// The arrival schedule (built, so already validated; boxed, it
        /// is large).
        schedule: Box<Schedule>,
        /// Pings one connection may have in flight; a due ping waits for room.
        window: u32,
    },
}

/// What the load sends.
#[derive(Clone, Debug, Default)]
pub enum Workload {
    /// `PerfPing`s (PROTOCOL.md "Ping / pong").
    #[default]
    Ping,
    /// A seeded order flow ([`crate::flow`]); its `connections` is set to
    /// the run's.
    Orders(crate::flow::FlowConfig),
}

/// Settings of a load run.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Connections to open to peer 0.
    pub connections: u32,
    /// Answers not recorded before measuring.
    pub warmup: u64,
    /// Answers recorded.
    pub count: u64,
    /// The load model.
    pub load: Load,
    /// Whole `PerfPing` frame size in bytes (≥ 54; the rest is pad).
    pub size: usize,
    /// The token presented in the hand-shake.
    pub token: String,
    /// How long to wait for the last answers once all pings are sent.
    pub drain_timeout: Nanos,
    /// Round trips kept in [`Report::trace`] (the first ones).
    pub trace_max: usize,
    /// Length of the live intervals of [`Report::intervals`]; `None` for none.
    pub interval: Option<Nanos>,
    /// How long dials and hand-shakes may take in all; connections not
    /// hand-shaked by then are given up (counted in `connections_lost`
    /// and `errors`) and the run goes on with the others.
    pub handshake_timeout: Nanos,
    /// Pings or orders.
    pub workload: Workload,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connections: 10,
            warmup: 1000,
            count: 10_000,
            load: Load::Closed,
            size: 64,
            token: String::new(),
            drain_timeout: Nanos::from_secs(5),
            trace_max: 0,
            interval: None,
            handshake_timeout: Nanos::from_secs(10),
            workload: Workload::Ping,
        }
    }
}
