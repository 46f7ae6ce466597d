//! A deterministic in-memory driver: a client, an optional gateway of W
//! workers and an exchange, wired by in-memory pipes. No sockets, no
//! threads, no clock: every delivery advances a virtual clock by one step.
//!
//! It exists for tests and benchmarks of the state machines themselves; the
//! simulator (`fep-sim`) is the driver for faults and interleavings. Buffers
//! are reused, so past warm-up the harness does not allocate per message.

use std::collections::{BTreeMap, VecDeque};

use fep_core::limits::FRAME_HEADER_LEN;
use fep_core::{ConnId, Effect, Nanos, Worker, WorkerConfig, WorkerId};

use fep_trading::exchange::{Exchange, ExchangeConfig};
use fep_trading::gateway::{Gateway, GatewayConfig};

use crate::client::{Client, ClientConfig};

/// Steps one run may take before the harness calls it a livelock.
const STEPS_MAX: u64 = 50_000_000;

/// One endpoint of the wiring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeRef {
    /// The load generator.
    Client,
    /// Gateway worker `i`.
    Gateway(u16),
    /// The exchange.
    Exchange,
    /// A raw test peer `i` (bytes in, bytes collected).
    Raw(u16),
}

/// Settings of a harness run.
#[derive(Clone, Debug)]
pub struct HarnessConfig {
    /// The gateway between client and exchange; `None` connects the client
    /// straight to the exchange.
    pub gateway: Option<GatewayConfig>,
    /// The load.
    pub client: ClientConfig,
    /// The exchange.
    pub exchange: ExchangeConfig,
    /// Bounds of every worker.
    pub worker: WorkerConfig,
    /// Deliver at most this many bytes per read (exercises split frames).
    pub read_chunk: usize,
    /// Virtual time per delivery.
    pub step: Nanos,
    /// Lend every read and handoff to its worker, as the real driver does
    /// (`Worker::handle_read_lent`): forwarded frames are stamped in the
    /// delivered bytes, then settled before anything is written, so the
    /// output must be what copying gives.
    pub lend: bool,
}

impl Default for HarnessConfig {
    fn default() -> Self {
        HarnessConfig {
            gateway: Some(GatewayConfig::default()),
            client: ClientConfig::default(),
            exchange: ExchangeConfig::default(),
            worker: WorkerConfig::default(),
            read_chunk: usize::MAX,
            step: Nanos::from_micros(1),
            lend: false,
        }
    }
}

#[derive(Debug)]
struct Pipe {
    ends: [(NodeRef, Option<ConnId>); 2],
    /// Bytes travelling towards `ends[i]`.
    inbox: [Vec<u8>; 2],
    open: bool,
}

#[derive(Clone, Copy, Debug)]
enum Event {
    /// Deliver pipe `.0`'s bytes to its end `.1`.
    Deliver(usize, usize),
    /// Deliver the bytes gateway worker `.0` handed worker `.1`.
    Handoff(u16, u16),
}

/// A raw test peer's view: what it received and whether it was closed.
#[derive(Debug, Default)]
pub struct RawPeer {
    /// Every byte received, in order.
    pub received: Vec<u8>,
    /// The other side closed the connection.
    pub closed: bool,
    /// The peer does not read: bytes stay in the worker's output.
    pub stalled: bool,
    pipe: usize,
}

/// The in-memory wiring of client, gateway workers and exchange.
#[derive(Debug)]
pub struct Harness {
    now: Nanos,
    config: HarnessConfig,
    client: Worker<Client>,
    gateways: Vec<Worker<Gateway>>,
    exchange: Worker<Exchange>,
    raws: Vec<RawPeer>,
    pipes: Vec<Pipe>,
    index: BTreeMap<(NodeRef, ConnId), (usize, usize)>,
    events: VecDeque<Event>,
    /// Bytes handed from one gateway worker to another, not delivered yet.
    lanes: BTreeMap<(u16, u16), Vec<u8>>,
    next_accept: usize,
    exchange_down: bool,
    /// Handoffs delivered, per (source, target) worker.
    pub handoff_count: BTreeMap<(u16, u16), u64>,
}

macro_rules! on_node {
    ($h:expr, $node:expr, |$w:ident| $body:expr) => {
        match $node {
            NodeRef::Client => {
                let $w = &mut $h.client;
                $body
            }
            NodeRef::Gateway(i) => {
                let $w = &mut $h.gateways[usize::from(i)];
                $body
            }
            NodeRef::Exchange => {
                let $w = &mut $h.exchange;
                $body
            }
            NodeRef::Raw(_) => unreachable!("raw peers are not workers"),
        }
    };
}

impl Harness {
    /// Builds the wiring and brings every gateway upstream up. The client is
    /// not started: call [`Harness::run`].
    pub fn new(config: HarnessConfig) -> Harness {
        let wc = config.worker;
        let gateways = match &config.gateway {
            Some(g) => (0..g.workers)
                .map(|i| Worker::new(WorkerId(i), wc, Gateway::new(WorkerId(i), g.clone())))
                .collect(),
            None => Vec::new(),
        };
        let mut h = Harness {
            now: Nanos::from_micros(1),
            client: Worker::new(WorkerId(0), wc, Client::new(config.client.clone())),
            gateways,
            exchange: Worker::new(
                WorkerId(0),
                wc,
                Exchange::new(WorkerId(0), config.exchange.clone()),
            ),
            raws: Vec::new(),
            pipes: Vec::new(),
            index: BTreeMap::new(),
            events: VecDeque::new(),
            lanes: BTreeMap::new(),
            next_accept: 0,
            exchange_down: false,
            handoff_count: BTreeMap::new(),
            config,
        };
        h.exchange.start(h.now);
        for i in 0..h.gateways.len() {
            h.gateways[i].start(h.now);
        }
        h.settle();
        assert!(
            h.gateways.iter().all(|g| g.is_ready()),
            "gateway upstreams hand-shake in memory"
        );
        h
    }

    /// The current virtual time.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// The client worker.
    pub fn client(&self) -> &Worker<Client> {
        &self.client
    }

    /// Gateway worker `i`.
    pub fn gateway(&self, i: usize) -> &Worker<Gateway> {
        &self.gateways[i]
    }

    /// The exchange worker.
    pub fn exchange(&self) -> &Worker<Exchange> {
        &self.exchange
    }

    /// Raw peer `i`.
    pub fn raw(&self, i: u16) -> &RawPeer {
        &self.raws[usize::from(i)]
    }

    /// Starts the client and runs until it is done or nothing can happen.
    pub fn run(&mut self) {
        self.client_start();
        self.run_until(|h| h.client.is_done());
    }

    /// Starts the client (it dials); drive it with [`Harness::run_until`].
    pub fn client_start(&mut self) {
        self.client.start(self.now);
    }

    /// Runs until `done` holds or nothing is left to happen, firing timers
    /// when no event is pending. Panics past a step bound: a livelock.
    pub fn run_until(&mut self, done: impl Fn(&Harness) -> bool) {
        for _ in 0..STEPS_MAX {
            self.drain();
            if done(self) {
                return;
            }
            if !self.step() && !self.fire_timers() {
                return;
            }
        }
        panic!("harness: no end after {STEPS_MAX} steps");
    }

    /// Moves virtual time on by `by` with nothing delivered: a quiet spell
    /// (a throttle refills; a deadline passed is fired by the next run).
    pub fn advance(&mut self, by: Nanos) {
        self.now = self.now + by;
    }

    /// Delivers every pending event, without firing timers.
    pub fn settle(&mut self) {
        for _ in 0..STEPS_MAX {
            self.drain();
            if !self.step() {
                return;
            }
        }
        panic!("harness: no end after {STEPS_MAX} steps");
    }

    /// Opens a raw connection to `target` (a gateway worker or the
    /// exchange) and returns the raw peer's index.
    pub fn open_raw(&mut self, target: NodeRef) -> u16 {
        let id = u16::try_from(self.raws.len()).expect("few raw peers");
        let me = NodeRef::Raw(id);
        let conn =
            on_node!(self, target, |w| w.handle_accepted(self.now)).expect("room for a raw peer");
        let pipe = self.pipes.len();
        self.pipes.push(Pipe {
            ends: [(me, None), (target, Some(conn))],
            inbox: [Vec::new(), Vec::new()],
            open: true,
        });
        self.index.insert((target, conn), (pipe, 1));
        self.raws.push(RawPeer {
            received: Vec::new(),
            closed: false,
            stalled: false,
            pipe,
        });
        self.drain();
        id
    }

    /// Raw peer `i` sends `bytes`.
    pub fn send_raw(&mut self, i: u16, bytes: &[u8]) {
        let pipe = self.raws[usize::from(i)].pipe;
        if !self.pipes[pipe].open {
            return;
        }
        self.push_bytes(pipe, 1, bytes);
    }

    /// Raw peer `i` closes its connection (a client leaving: the gateway's
    /// cancel on disconnect runs).
    pub fn close_raw(&mut self, i: u16) {
        let pipe = self.raws[usize::from(i)].pipe;
        self.close_pipe(pipe);
    }

    /// Raw peer `i` stops (or resumes) reading.
    pub fn stall_raw(&mut self, i: u16, stalled: bool) {
        self.raws[usize::from(i)].stalled = stalled;
    }

    /// The exchange goes away (every connection to it is cut and dials are
    /// refused) or comes back.
    pub fn set_exchange_down(&mut self, down: bool) {
        self.exchange_down = down;
        if down {
            let cut: Vec<usize> = (0..self.pipes.len())
                .filter(|&p| self.pipes[p].open && self.pipes[p].ends[1].0 == NodeRef::Exchange)
                .collect();
            for pipe in cut {
                self.close_pipe(pipe);
            }
        }
    }

    /// `node` is asked to drain (SIGTERM).
    pub fn shutdown(&mut self, node: NodeRef) {
        let now = self.now;
        on_node!(self, node, |w| w.handle_shutdown(now));
        self.drain();
    }

    fn push_bytes(&mut self, pipe: usize, to: usize, bytes: &[u8]) {
        let inbox = &mut self.pipes[pipe].inbox[to];
        let was_empty = inbox.is_empty();
        inbox.extend_from_slice(bytes);
        if was_empty && !bytes.is_empty() {
            self.events.push_back(Event::Deliver(pipe, to));
        }
    }

    fn close_pipe(&mut self, pipe: usize) {
        if !self.pipes[pipe].open {
            return;
        }
        self.pipes[pipe].open = false;
        // Each end sees the close after the bytes already on their way.
        self.events.push_back(Event::Deliver(pipe, 0));
        self.events.push_back(Event::Deliver(pipe, 1));
    }

    /// Drains every worker's effects until none produce more.
    fn drain(&mut self) {
        loop {
            let mut progress = false;
            while let Some(e) = self.client.poll_effect() {
                progress = true;
                self.apply(NodeRef::Client, e);
            }
            for i in 0..self.gateways.len() {
                while let Some(e) = self.gateways[i].poll_effect() {
                    progress = true;
                    self.apply(NodeRef::Gateway(i as u16), e);
                }
            }
            while let Some(e) = self.exchange.poll_effect() {
                progress = true;
                self.apply(NodeRef::Exchange, e);
            }
            if !progress {
                return;
            }
        }
    }

    fn apply(&mut self, node: NodeRef, effect: Effect) {
        let now = self.now;
        match effect {
            Effect::Transmit { conn } => {
                let Some(&(pipe, side)) = self.index.get(&(node, conn)) else {
                    return;
                };
                if let NodeRef::Raw(i) = self.pipes[pipe].ends[1 - side].0 {
                    if self.raws[usize::from(i)].stalled {
                        return;
                    }
                }
                let n = on_node!(self, node, |w| {
                    let bytes = w.transmit_buf(conn);
                    let inbox = &mut self.pipes[pipe].inbox[1 - side];
                    let was_empty = inbox.is_empty();
                    inbox.extend_from_slice(bytes);
                    if was_empty && !bytes.is_empty() {
                        self.events.push_back(Event::Deliver(pipe, 1 - side));
                    }
                    bytes.len()
                });
                on_node!(self, node, |w| w.handle_written(now, conn, n));
            }
            Effect::Close { conn } => {
                if let Some(&(pipe, side)) = self.index.get(&(node, conn)) {
                    // The driver flushes what is pending before it closes.
                    let n = on_node!(self, node, |w| {
                        let bytes = w.transmit_buf(conn);
                        self.pipes[pipe].inbox[1 - side].extend_from_slice(bytes);
                        bytes.len()
                    });
                    on_node!(self, node, |w| w.handle_written(now, conn, n));
                    self.close_pipe(pipe);
                } else {
                    // A dial the harness has not completed, or one it
                    // refused: nothing to flush.
                    on_node!(self, node, |w| w.handle_closed(now, conn));
                }
            }
            Effect::Connect { conn, .. } => self.connect(node, conn),
            Effect::Handoff { target } => {
                let NodeRef::Gateway(source) = node else {
                    unreachable!("only gateways hand off")
                };
                let worker = &mut self.gateways[usize::from(source)];
                let lane = self.lanes.entry((source, target.0)).or_default();
                if lane.is_empty() {
                    self.events.push_back(Event::Handoff(source, target.0));
                }
                lane.extend_from_slice(worker.handoff_buf(target));
                worker.handle_handed_off(target);
            }
            // The harness reads everything: pauses are hints, and every
            // bound holds without them.
            Effect::PauseInput { .. }
            | Effect::ResumeInput { .. }
            | Effect::PauseGroup { .. }
            | Effect::ResumeGroup { .. } => {}
            other => unreachable!("the harness knows no {other:?}"),
        }
    }

    fn connect(&mut self, dialer: NodeRef, dialed: ConnId) {
        let target = match dialer {
            NodeRef::Client if !self.gateways.is_empty() => {
                let i = self.next_accept % self.gateways.len();
                self.next_accept += 1;
                NodeRef::Gateway(i as u16)
            }
            _ => NodeRef::Exchange,
        };
        let now = self.now;
        if target == NodeRef::Exchange && self.exchange_down {
            on_node!(self, dialer, |w| w.handle_connect_failed(now, dialed));
            return;
        }
        let Some(accepted) = on_node!(self, target, |w| w.handle_accepted(now)) else {
            on_node!(self, dialer, |w| w.handle_connect_failed(now, dialed));
            return;
        };
        let pipe = self.pipes.len();
        self.pipes.push(Pipe {
            ends: [(dialer, None), (target, Some(accepted))],
            inbox: [Vec::new(), Vec::new()],
            open: true,
        });
        self.index.insert((target, accepted), (pipe, 1));
        self.pipes[pipe].ends[0].1 = Some(dialed);
        self.index.insert((dialer, dialed), (pipe, 0));
        on_node!(self, dialer, |w| w.handle_connected(now, dialed));
    }

    /// Delivers one event; `false` when there was none.
    fn step(&mut self) -> bool {
        let Some(event) = self.events.pop_front() else {
            return false;
        };
        self.now = self.now + self.config.step;
        let now = self.now;
        match event {
            Event::Handoff(source, target) => {
                let lane = self.lanes.get_mut(&(source, target)).expect("lane");
                let mut bytes = std::mem::take(lane);
                *self.handoff_count.entry((source, target)).or_default() += frame_count(&bytes);
                let worker = &mut self.gateways[usize::from(target)];
                if self.config.lend {
                    worker.handle_handoff_lent(now, WorkerId(source), &mut bytes);
                    worker.settle_input(&bytes);
                } else {
                    worker.handle_handoff(now, WorkerId(source), &bytes);
                }
                let lane = self.lanes.get_mut(&(source, target)).expect("lane");
                // Bytes handed on while delivering went to a fresh lane (and
                // have their event): keep the allocation only otherwise.
                if lane.is_empty() {
                    let mut bytes = bytes;
                    bytes.clear();
                    *lane = bytes;
                }
            }
            Event::Deliver(pipe, to) => self.deliver(pipe, to),
        }
        true
    }

    fn deliver(&mut self, pipe: usize, to: usize) {
        let now = self.now;
        let (node, conn) = self.pipes[pipe].ends[to];
        let mut bytes = std::mem::take(&mut self.pipes[pipe].inbox[to]);
        match node {
            NodeRef::Raw(i) => self.raws[usize::from(i)].received.extend_from_slice(&bytes),
            _ => {
                if let Some(conn) = conn {
                    let lend = self.config.lend;
                    for chunk in bytes.chunks_mut(self.config.read_chunk.max(1)) {
                        if lend {
                            on_node!(self, node, |w| {
                                w.handle_read_lent(now, conn, chunk);
                                w.settle_input(chunk);
                            });
                        } else {
                            on_node!(self, node, |w| w.handle_read(now, conn, chunk));
                        }
                    }
                }
            }
        }
        bytes.clear();
        // Bytes pushed while delivering went to a fresh inbox: keep them.
        let inbox = &mut self.pipes[pipe].inbox[to];
        if inbox.is_empty() {
            *inbox = bytes;
        } else {
            self.events.push_back(Event::Deliver(pipe, to));
        }
        if !self.pipes[pipe].open && self.pipes[pipe].inbox[to].is_empty() {
            self.end_closed(pipe, to);
        }
    }

    fn end_closed(&mut self, pipe: usize, to: usize) {
        let now = self.now;
        let (node, conn) = self.pipes[pipe].ends[to];
        match node {
            NodeRef::Raw(i) => self.raws[usize::from(i)].closed = true,
            _ => {
                if let Some(conn) = conn {
                    if self.index.remove(&(node, conn)).is_some() {
                        on_node!(self, node, |w| w.handle_closed(now, conn));
                    }
                }
            }
        }
    }

    /// Advances the clock to the earliest deadline and fires it.
    fn fire_timers(&mut self) -> bool {
        let deadlines = self
            .gateways
            .iter()
            .map(|g| g.poll_timeout())
            .chain([self.client.poll_timeout(), self.exchange.poll_timeout()]);
        let Some(at) = deadlines.flatten().min() else {
            return false;
        };
        self.now = self.now.max(at);
        let now = self.now;
        self.client.handle_timeout(now);
        for g in &mut self.gateways {
            g.handle_timeout(now);
        }
        self.exchange.handle_timeout(now);
        true
    }
}

/// Frames in a run of whole frames.
fn frame_count(mut bytes: &[u8]) -> u64 {
    let mut n = 0;
    while let Some((head, rest)) = bytes.split_first_chunk::<FRAME_HEADER_LEN>() {
        bytes = &rest[u32::from_be_bytes(*head) as usize..];
        n += 1;
    }
    n
}
