//! A gateway worker's counters.

use fep_core::ErrorCode;

use crate::latency::LatencyHistogram;
use crate::risk::Check;

/// Counters of one gateway worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Pings accepted from this worker's clients.
    pub pings: u64,
    /// Pings written to this worker's upstream.
    pub forwarded: u64,
    /// Pongs delivered to this worker's clients.
    pub pongs: u64,
    /// Rejects delivered to this worker's clients.
    pub rejects: u64,
    /// Frames handed to other workers (pings, pongs, routed rejects).
    pub handoffs: u64,
    /// Answers whose client had gone.
    pub orphans: u64,
    /// Upstream connections hand-shaked.
    pub upstream_connects: u64,
    /// Upstream connections lost.
    pub upstream_losses: u64,
    /// Order-entry requests accepted from this worker's clients.
    pub orders: u64,
    /// Order-entry messages delivered to this worker's clients (first
    /// answers and later ones).
    pub order_answers: u64,
    /// Cancels sent for the open orders of clients that left.
    pub disconnect_cancels: u64,
    /// Orders put in doubt by an upstream loss (in flight there, so
    /// perhaps resting at the exchange), their exposure kept.
    pub in_doubt: u64,
    /// The gateway's cancels sent from the in-doubt FIFO once an upstream
    /// was back (for orders in doubt, and cancels deferred by an outage).
    pub in_doubt_cancels: u64,
    /// In-doubt entries refused by a full FIFO: an order's reservation
    /// released at once, or a cancel dropped.
    pub in_doubt_overflows: u64,
    /// Later messages (fills, IOC rests) not delivered: their client had
    /// gone, or the lane to its worker was full.
    pub later_dropped: u64,
    /// Requests refused `RISK_LIMIT`, by check (indexed as [`Check::ALL`]).
    pub risk_refusals: [u64; Check::ALL.len()],
    /// Client connections accepted.
    pub clients_opened: u64,
    /// Client connections closed.
    pub clients_closed: u64,
    /// Rejects delivered to this worker's clients, by error code (index
    /// = the code on the wire; codes past the table count in the last).
    pub rejects_by_code: [u64; REJECT_CODES],
    /// From a client request's read (on its client's worker) to its
    /// forwarding upstream with `t2` (on the upstream's worker): a handoff's
    /// crossing; 0 when both happen in one read. Recorded where forwarded.
    pub request_leg: LatencyHistogram,
    /// From a client request's forwarding (`t2`) to its first answer's read
    /// from the exchange (a pong, an order-entry answer or a `Reject`): the
    /// exchange as this gateway sees it. Recorded on the upstream's worker.
    pub upstream_leg: LatencyHistogram,
    /// From a first answer's read from the exchange to its queueing for the
    /// client with `t4` (pongs, and order-entry answers to stamped
    /// requests). Recorded on the client's worker.
    pub answer_leg: LatencyHistogram,
}

/// Slots of [`GatewayStats::rejects_by_code`]: every code PROTOCOL.md
/// defines (1–14) has its own.
pub const REJECT_CODES: usize = 16;

impl GatewayStats {
    /// Counts one `Reject` delivered to a client.
    pub(super) fn rejected(&mut self, code: ErrorCode) {
        self.rejects += 1;
        let i = usize::from(code.to_u16()).min(REJECT_CODES - 1);
        self.rejects_by_code[i] += 1;
    }
}
