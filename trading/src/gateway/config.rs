//! A gateway worker's settings, its routing, and the tag a request's
//! `route` carries.

use std::fmt;
use std::str::FromStr;

use fep_core::limits::{IN_DOUBT_MAX_DEFAULT, WORKERS_MAX};
use fep_core::{ConnId, Nanos, WorkerId};

use crate::risk::RiskHandle;

use super::CONTROL_BYTES_MAX;

/// Which upstream a client's pings take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// The owner worker's upstream (`idx = worker_id % workers`, scenario s2).
    Local,
    /// Upstream `idx = session_id % workers`, possibly another worker's
    /// (scenario s3).
    Handoff,
}

impl Routing {
    /// Every routing, in the order of [`Routing::NAMES`].
    pub const ALL: [Routing; 2] = [Routing::Local, Routing::Handoff];

    /// The names flags and result files use, in the order of
    /// [`Routing::ALL`].
    pub const NAMES: [&'static str; 2] = {
        let mut names = [""; 2];
        let mut i = 0;
        while i < names.len() {
            names[i] = Routing::ALL[i].name();
            i += 1;
        }
        names
    };

    /// `local` or `handoff`.
    pub const fn name(self) -> &'static str {
        match self {
            Routing::Local => "local",
            Routing::Handoff => "handoff",
        }
    }
}

impl fmt::Display for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A routing name that is not `local` or `handoff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownRouting(pub String);

impl fmt::Display for UnknownRouting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown routing {:?} (expected local or handoff)",
            self.0
        )
    }
}

impl std::error::Error for UnknownRouting {}

impl FromStr for Routing {
    type Err = UnknownRouting;
    fn from_str(s: &str) -> Result<Routing, UnknownRouting> {
        Routing::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| UnknownRouting(s.to_owned()))
    }
}

/// Settings of a gateway worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Workers of the process.
    pub workers: u16,
    /// How pings pick their upstream.
    pub routing: Routing,
    /// The token clients must present, if any.
    pub token: Option<String>,
    /// The token this gateway presents upstream.
    pub upstream_token: String,
    /// Requests (pings and order entry) one client may have in flight;
    /// past it `Reject{OVERLOADED}`.
    pub inflight_per_session_max: u32,
    /// Cancel a client's open orders when its connection closes
    /// (PROTOCOL.md "Cancel on disconnect"; on by default).
    pub cancel_on_disconnect: bool,
    /// Open orders this worker tracks for its clients (for cancel on
    /// disconnect and exposure); past it a `NewOrder` is refused
    /// `Reject{OVERLOADED}`.
    pub open_orders_max: usize,
    /// Who may trade what, and the pre-trade limits (`--risk FILE`),
    /// shared by every worker. `None`: one client, every account, no
    /// limits, the hand-shake checked against `token` (as without a file).
    pub risk: Option<RiskHandle>,
    /// Pings one upstream session may have in flight; past it
    /// `Reject{OVERLOADED}`. The default holds 10,000 clients with 30 pings
    /// in flight each.
    pub upstream_inflight_max: usize,
    /// Upstream sessions per worker (1 to [`UPSTREAM_CONNECTIONS_MAX`]);
    /// each client's requests take one of them (see "Upstream sessions").
    pub upstream_connections: u16,
    /// First reconnect delay; doubled per failure up to the max.
    pub reconnect_backoff_min: Nanos,
    /// Longest reconnect delay.
    pub reconnect_backoff_max: Nanos,
    /// Bytes of this worker's client pings out through one other worker's
    /// upstream (ping frames, counted until their answer is back). At half
    /// of it the clients routed there are paused; past it a ping is shed
    /// with `Reject{OVERLOADED}`. It bounds what the handoff lanes hold.
    pub handoff_inflight_bytes_max: usize,
    /// Orders in doubt (and cancels not yet sent) this worker remembers
    /// until its upstream is back; past it an order's reservation is
    /// released at once, as if it never reached the exchange, and a
    /// cancel is dropped (both counted in
    /// [`GatewayStats::in_doubt_overflows`](super::GatewayStats::in_doubt_overflows)).
    pub in_doubt_max: usize,
}

impl GatewayConfig {
    /// Bytes each handoff lane must be able to hold
    /// ([`fep_core::WorkerConfig::handoff_backlog_max`]): one worker's
    /// credit of requests one way, the other's answers the other way, and
    /// control frames. Only multi-worker gateways use lanes.
    pub fn handoff_lane_need(&self) -> usize {
        2 * self.handoff_inflight_bytes_max + CONTROL_BYTES_MAX
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            workers: 1,
            routing: Routing::Local,
            token: None,
            upstream_token: String::new(),
            inflight_per_session_max: 1024,
            upstream_inflight_max: UPSTREAM_INFLIGHT_MAX_DEFAULT,
            upstream_connections: 1,
            reconnect_backoff_min: Nanos::from_millis(1),
            reconnect_backoff_max: Nanos::from_millis(500),
            handoff_inflight_bytes_max: HANDOFF_INFLIGHT_BYTES_MAX_DEFAULT,
            cancel_on_disconnect: true,
            open_orders_max: 1 << 16,
            risk: None,
            in_doubt_max: IN_DOUBT_MAX_DEFAULT,
        }
    }
}

/// The gateway's routing tag, carried in a ping's `route` field:
/// `origin:8 | target:8 | conn:48`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteTag {
    /// The worker that owns the client session.
    pub origin: WorkerId,
    /// The worker whose upstream carries the ping.
    pub target: WorkerId,
    /// The client connection on `origin`.
    pub conn: ConnId,
}

impl RouteTag {
    /// The tag as the `route` field.
    pub fn to_bits(self) -> u64 {
        const _: () = assert!(WORKERS_MAX <= 256);
        (u64::from(self.origin.0) << 56) | (u64::from(self.target.0) << 48) | self.conn.to_bits()
    }

    /// The tag from a `route` field.
    pub fn from_bits(bits: u64) -> RouteTag {
        RouteTag {
            origin: WorkerId((bits >> 56) as u16),
            target: WorkerId(((bits >> 48) & 0xff) as u16),
            conn: ConnId::from_bits(bits),
        }
    }
}

/// Default of [`GatewayConfig::upstream_inflight_max`]: 10,000 clients with
/// 30 requests in flight each, and room to spare (524,288).
pub const UPSTREAM_INFLIGHT_MAX_DEFAULT: usize = 1 << 19;
/// Default of [`GatewayConfig::handoff_inflight_bytes_max`] (2 MiB).
pub const HANDOFF_INFLIGHT_BYTES_MAX_DEFAULT: usize = 2 * 1024 * 1024;

/// Upstream sessions one gateway worker may keep
/// ([`GatewayConfig::upstream_connections`]).
pub const UPSTREAM_CONNECTIONS_MAX: u16 = 64;
