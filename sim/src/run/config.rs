//! What a run is a function of ([`RunConfig`]), the bounds a run keeps to,
//! and the settings it derives from them.

use rand::Rng;

use fep_load::scenario::Scenario;
use fep_trading::gateway::{GatewayConfig, Routing};

use crate::driver::Sabotage;
use crate::faults::{FaultItem, FaultKind, FaultPlan};

/// The exchange's port.
pub const EXCHANGE_PORT: u16 = 10_000;

/// The gateway's client port.
pub const GATEWAY_PORT: u16 = 9_000;

/// The simulation's fixed epoch: 2026-01-01T00:00:00Z (turmoil's default is
/// the wall clock, which would leak into the run).
pub const EPOCH_SECS: u64 = 1_767_225_600;

/// Steps allowed for the gateway to become ready.
pub const STARTUP_MS_MAX: u64 = 1_000;

/// Simulated time without an answer, once every fault healed, that fails
/// liveness (longer than a client's drain deadline, so a client that gives
/// up on lost pings still finishes inside it), plus the longest fault that
/// can hold answers back, which the drain deadline also waits out.
pub const LIVENESS_GRACE_MS: u64 = 3_000;

/// A run longer than this many [`RunConfig::horizon_ms`] (after its last
/// fault healed) fails liveness even while answers trickle in.
pub const RUN_HORIZONS_MAX: u64 = 20;

/// Simulated time after the clients finish, for closes to propagate.
pub const QUIESCE_MS: u64 = 30;

/// The longest the run goes on after the clients finish while a connection
/// is open on one side only (its peer closed, its input not all taken).
pub const QUIESCE_MS_MAX: u64 = 1_000;

/// How long a client waits for the last answers, beyond the longest fault
/// of its run that can hold them back.
pub const CLIENT_DRAIN_MS: u64 = 1_000;

/// A dial that has not completed by then has failed.
pub const CONNECT_TIMEOUT_MS: u64 = 20;

const _: () = assert!(LIVENESS_GRACE_MS > CLIENT_DRAIN_MS);

/// The smallest ping frame: length, opcode and six `u64`s.
pub const FRAME_SIZE_MIN: usize = 4 + 2 + 48;

/// The largest ping frame the default `max_frame` (65,536) allows.
pub const FRAME_SIZE_MAX: usize = 4 + 65_536;

/// Frame sizes a swarmed run draws now and then: the bounds and the pads
/// around 256 bytes.
pub const FRAME_SIZES_AT_EDGES: [usize; 7] = [
    FRAME_SIZE_MIN,
    FRAME_SIZE_MIN + 1,
    FRAME_SIZE_MIN + 255,
    FRAME_SIZE_MIN + 256,
    FRAME_SIZE_MIN + 257,
    FRAME_SIZE_MAX - 1,
    FRAME_SIZE_MAX,
];

/// The smallest handoff bound a swarmed run draws: a worker may take a
/// whole read (up to 64 KiB, and what a paused connection held) past the
/// half-way pause, so a bound below twice that would shed pings a correct
/// gateway never sheds.
pub const HANDOFF_BYTES_MIN: usize = 4 * FRAME_SIZE_MAX;

/// Base latency of every link: 0 or 1 ms (turmoil draws within the range).
pub const LINK_LATENCY_MS_MAX: u64 = 2;

/// Most latency a `latency` fault gives one message (1–5 ms plus up to
/// 24 ms of jitter).
pub const LATENCY_FAULT_MS_MAX: u64 = 5 + 24;

/// The gateway's upstream heartbeat interval in simulation: a hold of the
/// gateway–exchange link longer than three of them ends in a dead upstream,
/// rejects and a reconnect, as `--heartbeat` does for real.
pub const GATEWAY_HEARTBEAT_MS: u64 = 40;

// A live but slow link is never declared dead: a heartbeat's round trip
// under the worst latency fault fits in the two intervals left after it is
// sent.
const _: () = assert!(2 * GATEWAY_HEARTBEAT_MS > 2 * (LATENCY_FAULT_MS_MAX + LINK_LATENCY_MS_MAX));

/// Everything a run is a function of.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// The scenario (gateway workers and routing).
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// Pings over all clients.
    pub pings: u64,
    /// The fault plan.
    pub faults: FaultPlan,
    /// Client hosts.
    pub clients: u16,
    /// Connections per client.
    pub connections: u32,
    /// Pings in flight per connection.
    pub inflight: u32,
    /// Whole ping frame size in bytes (54 to [`FRAME_SIZE_MAX`]).
    pub size: usize,
    /// Buggify's short reads on every host for the whole run (the
    /// `buggify` fault turns them on only while it lasts).
    pub short_reads: bool,
    /// The gateway's bound of requests in flight per client session
    /// (`inflight_per_session_max`; `None`: its default, 1,024). Below
    /// `inflight` the gateway sheds the excess with `Reject{OVERLOADED}`.
    pub session_inflight_max: Option<u32>,
    /// The gateway's bound of ping bytes one worker has out through
    /// another's upstream (`handoff_inflight_bytes_max`; `None`: its
    /// default, 2 MiB). At half of it the clients routed there pause.
    pub handoff_bytes_max: Option<usize>,
    /// The gateway's upstream connections per worker
    /// (`upstream_connections`; `None`: its default, 1).
    pub upstream_connections: Option<u16>,
    /// Round trips of client-0 kept in [`Outcome::round_trips`](super::Outcome::round_trips).
    pub round_trips: usize,
    /// Keep the trace text in [`Outcome::trace`](super::Outcome::trace).
    pub keep_trace: bool,
    /// A deliberately broken driver, for the checker's own tests.
    pub sabotage: Sabotage,
}

impl RunConfig {
    /// `scenario` with `seed`: 1000 pings from 2 clients of 2 connections,
    /// 4 in flight each, no faults.
    pub fn new(scenario: Scenario, seed: u64) -> RunConfig {
        RunConfig {
            scenario,
            seed,
            pings: 1000,
            faults: FaultPlan::none(),
            clients: 2,
            connections: 2,
            inflight: 4,
            size: 64,
            short_reads: false,
            session_inflight_max: None,
            handoff_bytes_max: None,
            upstream_connections: None,
            round_trips: 0,
            keep_trace: false,
            sabotage: Sabotage::None,
        }
    }

    /// `scenario` with `seed`, the workload swarmed from the seed (as
    /// TigerBeetle's VOPR swarms its options), so that a sweep explores the
    /// shapes of the load and not one of them:
    ///
    /// - 1–3 clients of 1–3 connections (an eighth of the seeds 4–6
    ///   clients: many sessions per worker) with 1–8 pings in flight each
    ///   (a tenth 16–64);
    /// - a run length from `pings / 8` to `pings × 1.25`, and one seed in
    ///   64 `pings × 10` to `pings × 20` (10–20k for the CI sweep's 1,000),
    ///   where a bug that fires once in thousands of events or leaks
    ///   slowly shows;
    /// - frames from the minimum to the frame bound (most small), and one
    ///   seed in 16 at an edge ([`FRAME_SIZES_AT_EDGES`]);
    /// - buggify's short reads on a quarter of the seeds;
    /// - on an eighth, a gateway bound of requests in flight per session
    ///   at or below the client's depth (past it pings are shed), and on an
    ///   eighth a handoff bound small enough, with windows deep enough and
    ///   frames large enough, that clients routed through another worker
    ///   pause and resume;
    /// - `rejoin` with `all`, and on an eighth of the seeds a `drain` of
    ///   the gateway mid-run;
    /// - on a quarter, 2–4 upstream connections per gateway worker.
    ///
    /// `pings` is the mean-ish length; the draws average about it, so a
    /// sweep's budget stays put.
    pub fn seeded(scenario: Scenario, seed: u64, pings: u64, faults: FaultPlan) -> RunConfig {
        let mut rng = crate::seed::rng(seed, "harness", "topology", 0);
        let clients = rng.random_range(1..=3);
        let connections = rng.random_range(1..=3);
        let inflight = rng.random_range(1..=8);
        // Drawn from a second stream so that the topology of a seed is the
        // one it always had.
        let mut swarm = crate::seed::rng(seed, "harness", "swarm", 0);
        let deep = swarm.random_bool(0.1);
        let length = match swarm.random_range(0..8) {
            0 => pings / 8,
            1 => pings / 4,
            2 | 3 => pings / 2,
            4 | 5 => pings,
            _ => pings + pings / 4,
        };
        let size = match swarm.random_range(0..10) {
            0..=4 => 64,
            5..=7 => swarm.random_range(FRAME_SIZE_MIN..=1024),
            8 => swarm.random_range(1024..=16 * 1024),
            _ => swarm.random_range(16 * 1024..=FRAME_SIZE_MAX),
        };
        let short_reads = swarm.random_bool(0.25);
        // Sizes at the edges, where off-by-one bugs live: the smallest
        // frame, pads around 256 bytes, and the frame bound itself.
        let mut edge = crate::seed::rng(seed, "harness", "swarm-edge", 0);
        let size = if edge.random_bool(1.0 / 16.0) {
            FRAME_SIZES_AT_EDGES[edge.random_range(0..FRAME_SIZES_AT_EDGES.len())]
        } else {
            size
        };
        // A third stream for the knobs added later, for the same reason.
        let mut more = crate::seed::rng(seed, "harness", "swarm-more", 0);
        let long = more.random_bool(1.0 / 64.0);
        let length = if long {
            more.random_range(pings * 10..=pings * 20)
        } else {
            length
        };
        let clients = if more.random_bool(0.125) {
            more.random_range(4..=6)
        } else {
            clients
        };
        let inflight = if deep {
            swarm.random_range(16..=64)
        } else {
            inflight
        };
        let session_inflight_max = more
            .random_bool(0.125)
            .then(|| more.random_range(1..=inflight));
        let handoff_bytes_max = more
            .random_bool(0.125)
            .then(|| more.random_range(HANDOFF_BYTES_MIN..=2 * 1024 * 1024));
        // A small handoff bound matters only with bytes enough in flight to
        // reach half of it: deep windows of large frames, so that the
        // gateway pauses the clients routed through a busy worker (and
        // resumes them), on those seeds.
        let (inflight, size) = if handoff_bytes_max.is_some() {
            (
                inflight.max(more.random_range(16..=64)),
                size.max(more.random_range(4 * 1024..=32 * 1024)),
            )
        } else {
            (inflight, size)
        };
        let mut faults = faults;
        // The gateway drains mid-run on an eighth of the seeds; in the
        // o-scenarios its clients' orders must then end canceled as well.
        if more.random_bool(0.125) {
            faults.items.push(FaultItem {
                kind: FaultKind::Drain,
                at_ms: None,
                for_ms: None,
                target: None,
            });
        }
        // A fourth stream: several upstream connections per gateway worker
        // on a quarter of the seeds, so that clients spread over them and a
        // cut or a crash loses some and not others.
        let mut upstreams = crate::seed::rng(seed, "harness", "swarm-upstreams", 0);
        let upstream_connections = upstreams
            .random_bool(0.25)
            .then(|| upstreams.random_range(2..=4));
        RunConfig {
            pings: length.max(1),
            faults,
            clients,
            connections,
            inflight,
            size,
            short_reads,
            session_inflight_max,
            handoff_bytes_max,
            upstream_connections,
            ..RunConfig::new(scenario, seed)
        }
    }

    /// About how long the run lasts without faults, in simulated ms (a
    /// round trip takes about 3 ms: four 1 ms hops, some of them 0 or 2
    /// ms): the window in which seeded faults strike.
    pub fn horizon_ms(&self) -> u64 {
        let window =
            u64::from(self.clients) * u64::from(self.connections) * u64::from(self.inflight);
        5 + self.pings.div_ceil(window.max(1)) * 3
    }

    /// How long the run may go on, in simulated ms past its start or its
    /// last heal, before it counts as a livelock: [`RUN_HORIZONS_MAX`]
    /// horizons, where the horizon counts only the pings the gateway can
    /// have in flight. A small handoff credit with large frames lets a
    /// worker pair carry a few pings at a time (its clients pause at half
    /// the credit), whatever the clients' windows are; the fault window
    /// ([`RunConfig::horizon_ms`]) stays what it was, so every seed keeps
    /// its faults.
    pub fn length_bound_ms(&self) -> u64 {
        let window =
            u64::from(self.clients) * u64::from(self.connections) * u64::from(self.inflight);
        let window = match self.handoff_bytes_max {
            Some(credit) if self.scenario.routing() == Routing::Handoff => {
                let per_pair = (credit / 2 / self.size.max(1)).max(1) as u64;
                let workers = u64::from(self.scenario.gateway_config().workers);
                window.min(per_pair * workers)
            }
            _ => window,
        };
        RUN_HORIZONS_MAX * (5 + self.pings.div_ceil(window.max(1)) * 3)
    }

    /// The gateway's settings in this run.
    pub fn gateway_config(&self) -> GatewayConfig {
        let default = self.scenario.gateway_config();
        GatewayConfig {
            inflight_per_session_max: self
                .session_inflight_max
                .unwrap_or(default.inflight_per_session_max),
            handoff_inflight_bytes_max: self
                .handoff_bytes_max
                .unwrap_or(default.handoff_inflight_bytes_max),
            upstream_connections: self
                .upstream_connections
                .unwrap_or(default.upstream_connections),
            ..default
        }
    }

    /// The command line that repeats this run.
    pub fn command(&self) -> String {
        let mut knobs = String::new();
        if let Some(n) = self.session_inflight_max {
            knobs.push_str(&format!(" --session-inflight-max {n}"));
        }
        if let Some(n) = self.handoff_bytes_max {
            knobs.push_str(&format!(" --handoff-bytes-max {n}"));
        }
        if let Some(n) = self.upstream_connections {
            knobs.push_str(&format!(" --upstream-connections {n}"));
        }
        format!(
            "fepsim run {} --seed {} --pings {} --faults {} --clients {} --connections {} --inflight {}{}{}{knobs}",
            self.scenario,
            self.seed,
            self.pings,
            self.faults,
            self.clients,
            self.connections,
            self.inflight,
            if self.size == 64 {
                String::new()
            } else {
                format!(" --size {}", self.size)
            },
            if self.short_reads { " --short-reads" } else { "" },
        )
    }
}

/// Pings client `k` sends: an even share, the remainder to the first ones.
pub fn pings_of(config: &RunConfig, k: u16) -> u64 {
    let n = u64::from(config.clients.max(1));
    config.pings / n + u64::from(u64::from(k) < config.pings % n)
}
