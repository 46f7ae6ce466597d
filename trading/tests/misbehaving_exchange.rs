//! An exchange that breaks the protocol must not break the gateway: whatever
//! the upstream sends (or does not send), the gateway stays up for its
//! clients and every client ping gets exactly one answer, its pong or a
//! `Reject`, in the order the pings were sent.
//!
//! The gateway workers are driven directly, in memory; the test plays the
//! exchange byte by byte.

mod support;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use fep_core::frame::encode_frame;
use fep_core::wire::{ErrorMsg, RejectMsg, OP_ERROR, OP_HEARTBEAT};
use fep_core::{ConnId, Effect, ErrorCode, Nanos, Worker, WorkerConfig, WorkerId};
use fep_trading::gateway::{Gateway, GatewayConfig, Routing};
use fep_trading::msg::{offset, patch_u64, RoleHelloAck, OP_PERF_PING};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use support::{answers_in, frames, hello, ping, pong_of, Answer};

/// Gateway workers, their upstream connections played by the test, and
/// their clients.
struct Rig {
    now: Nanos,
    workers: Vec<Worker<Gateway>>,
    /// Each worker's upstream connection, once dialled.
    upstreams: Vec<Option<ConnId>>,
    /// Each worker's dials the test has not completed yet.
    dials: Vec<VecDeque<ConnId>>,
    /// Bytes each worker's upstream wrote to the exchange, not yet read.
    to_exchange: Vec<Vec<u8>>,
    /// Bytes each client received, by (worker, conn).
    to_client: BTreeMap<(usize, ConnId), Vec<u8>>,
    /// Connections the gateway closed.
    closed: BTreeSet<(usize, ConnId)>,
    /// The clients, as (worker, conn).
    clients: Vec<(usize, ConnId)>,
    next_seq: u64,
}

impl Rig {
    fn new(workers: u16) -> Rig {
        Rig::with_worker_config(workers, WorkerConfig::default())
    }

    /// A rig whose gateway watches its upstreams with heartbeats.
    fn heartbeating(workers: u16, interval: Nanos) -> Rig {
        let config = WorkerConfig {
            heartbeat_interval: Some(interval),
            ..WorkerConfig::default()
        };
        Rig::with_worker_config(workers, config)
    }

    fn with_worker_config(workers: u16, worker_config: WorkerConfig) -> Rig {
        let config = GatewayConfig {
            workers,
            routing: if workers > 1 {
                Routing::Handoff
            } else {
                Routing::Local
            },
            ..Default::default()
        };
        let now = Nanos::from_micros(1);
        let mut rig = Rig {
            now,
            workers: (0..workers)
                .map(|i| {
                    Worker::new(
                        WorkerId(i),
                        worker_config,
                        Gateway::new(WorkerId(i), config.clone()),
                    )
                })
                .collect(),
            upstreams: vec![None; usize::from(workers)],
            dials: vec![VecDeque::new(); usize::from(workers)],
            to_exchange: vec![Vec::new(); usize::from(workers)],
            to_client: BTreeMap::new(),
            closed: BTreeSet::new(),
            clients: Vec::new(),
            next_seq: 1,
        };
        for w in &mut rig.workers {
            w.start(now);
        }
        rig.drain();
        for w in 0..rig.workers.len() {
            rig.exchange_accepts(w);
        }
        rig
    }

    /// Carries out every effect of every worker until none is left,
    /// delivering handoffs at once (in order per worker pair).
    fn drain(&mut self) {
        loop {
            let mut progress = false;
            for w in 0..self.workers.len() {
                while let Some(effect) = self.workers[w].poll_effect() {
                    progress = true;
                    self.apply(w, effect);
                }
            }
            if !progress {
                return;
            }
        }
    }

    fn apply(&mut self, w: usize, effect: Effect) {
        let now = self.now;
        match effect {
            Effect::Transmit { conn } => self.flush(w, conn),
            Effect::Close { conn } => {
                self.flush(w, conn);
                self.closed.insert((w, conn));
                self.workers[w].handle_closed(now, conn);
                if self.upstreams[w] == Some(conn) {
                    self.upstreams[w] = None;
                }
            }
            Effect::Connect { conn, .. } => self.dials[w].push_back(conn),
            Effect::Handoff { target } => {
                let mut batch = Vec::new();
                batch.extend_from_slice(self.workers[w].handoff_buf(target));
                self.workers[w].handle_handed_off(target);
                let source = WorkerId(u16::try_from(w).expect("few workers"));
                self.workers[target.index()].handle_handoff(now, source, &batch);
            }
            Effect::PauseInput { .. }
            | Effect::ResumeInput { .. }
            | Effect::PauseGroup { .. }
            | Effect::ResumeGroup { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    fn flush(&mut self, w: usize, conn: ConnId) {
        let bytes = self.workers[w].transmit_buf(conn).to_vec();
        self.workers[w].handle_written(self.now, conn, bytes.len());
        if self.upstreams[w] == Some(conn) {
            self.to_exchange[w].extend_from_slice(&bytes);
        } else {
            self.to_client
                .entry((w, conn))
                .or_default()
                .extend_from_slice(&bytes);
        }
    }

    /// Worker `w`'s pending dial reaches the exchange, which acks its hello.
    fn exchange_accepts(&mut self, w: usize) {
        let conn = self.dials[w].pop_front().expect("the worker dials");
        self.upstreams[w] = Some(conn);
        self.workers[w].handle_connected(self.now, conn);
        self.drain();
        self.to_exchange[w].clear();
        let mut ack = Vec::new();
        RoleHelloAck {
            role: 3,
            version: 1,
        }
        .encode(&mut ack);
        self.exchange_sends(w, &ack);
        assert!(self.workers[w].service().upstream_up());
    }

    /// A client connects to worker 0 and hand-shakes; returns its index.
    fn client(&mut self) -> usize {
        let conn = self.workers[0].handle_accepted(self.now).expect("room");
        self.workers[0].handle_read(self.now, conn, &hello(1));
        self.drain();
        self.to_client.remove(&(0, conn));
        self.clients.push((0, conn));
        self.clients.len() - 1
    }

    /// Client `c` sends a ping; returns its seq.
    fn ping(&mut self, c: usize) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = ping(seq, self.now);
        let (w, conn) = self.clients[c];
        self.tick();
        self.workers[w].handle_read(self.now, conn, &frame);
        self.drain();
        seq
    }

    fn tick(&mut self) {
        self.now = self.now + Nanos::from_micros(1);
    }

    /// The pings worker `w`'s exchange received since the last call, as
    /// whole frames (the hand-shake is not among them).
    fn exchange_receives(&mut self, w: usize) -> Vec<Vec<u8>> {
        let bytes = std::mem::take(&mut self.to_exchange[w]);
        frames(&bytes)
            .into_iter()
            .filter(|(opcode, _)| *opcode == OP_PERF_PING)
            .map(|(opcode, payload)| {
                let mut frame = Vec::new();
                encode_frame(&mut frame, opcode, &payload);
                frame
            })
            .collect()
    }

    fn exchange_sends(&mut self, w: usize, bytes: &[u8]) {
        let conn = self.upstreams[w].expect("the upstream is open");
        self.tick();
        self.workers[w].handle_read(self.now, conn, bytes);
        self.drain();
    }

    /// The exchange closes worker `w`'s upstream (or the kernel declares it
    /// lost).
    fn exchange_closes(&mut self, w: usize) {
        let conn = self.upstreams[w].take().expect("the upstream is open");
        self.tick();
        self.workers[w].handle_closed(self.now, conn);
        self.drain();
    }

    /// Time passes by `dt`, firing every deadline on the way.
    fn advance(&mut self, dt: Nanos) {
        let end = self.now + dt;
        loop {
            let next = self
                .workers
                .iter()
                .filter_map(Worker::poll_timeout)
                .filter(|&at| at <= end)
                .min();
            let Some(at) = next else { break };
            self.now = self.now.max(at);
            for w in &mut self.workers {
                w.handle_timeout(self.now);
            }
            self.drain();
        }
        self.now = end;
    }

    /// Everything client `c` received since the last call.
    fn answers(&mut self, c: usize) -> Vec<Answer> {
        let bytes = self.to_client.remove(&self.clients[c]).unwrap_or_default();
        answers_in(&bytes)
    }

    fn client_open(&self, c: usize) -> bool {
        !self.closed.contains(&self.clients[c])
    }

    fn inflight(&self) -> u64 {
        self.workers.iter().map(|w| w.service().inflight()).sum()
    }
}

/// Every seq got exactly one answer, in seq order.
fn assert_answered_once_in_order(answers: &[Answer], seqs: &[u64]) {
    let got: Vec<u64> = answers.iter().filter_map(|a| a.seq()).collect();
    assert_eq!(got, seqs, "answers {answers:?}");
}

fn rejected_unavailable(answers: &[Answer], seqs: &[u64]) -> bool {
    seqs.iter()
        .all(|s| answers.contains(&Answer::Reject(*s, ErrorCode::UpstreamUnavailable)))
}

/// After the upstream was lost the gateway dials again, and a ping goes
/// through the new connection: the gateway stayed up for its clients.
fn assert_recovers(rig: &mut Rig, w: usize, c: usize) {
    assert!(rig.client_open(c), "the client was not cut");
    rig.advance(Nanos::from_secs(1));
    rig.exchange_accepts(w);
    let seq = rig.ping(c);
    let pings = rig.exchange_receives(w);
    assert_eq!(pings.len(), 1);
    rig.exchange_sends(w, &pong_of(&pings[0]));
    assert_eq!(rig.answers(c), vec![Answer::Pong(seq)]);
    assert_eq!(rig.inflight(), 0);
}

fn alter_route_of_first_answer(workers: u16) {
    let mut rig = Rig::new(workers);
    let c = rig.client();
    // With two workers the client (session 1) pings through worker 1.
    let up = usize::from(workers > 1);
    let seqs: Vec<u64> = (0..3).map(|_| rig.ping(c)).collect();
    let pings = rig.exchange_receives(up);
    assert_eq!(pings.len(), 3);
    let mut pong = pong_of(&pings[0]);
    patch_u64(&mut pong, offset::ROUTE, 0xdead_beef);
    rig.exchange_sends(up, &pong);
    assert!(rig.upstreams[up].is_none(), "the lying upstream is cut");
    let answers = rig.answers(c);
    assert_answered_once_in_order(&answers, &seqs);
    assert!(rejected_unavailable(&answers, &seqs), "{answers:?}");
    assert_eq!(rig.inflight(), 0, "nothing is left in flight");
    assert_recovers(&mut rig, up, c);
}

#[test]
fn a_pong_with_an_altered_route_costs_no_ping_its_answer() {
    alter_route_of_first_answer(1);
}

#[test]
fn a_pong_with_an_altered_route_costs_no_handed_off_ping_its_answer() {
    alter_route_of_first_answer(2);
}

#[test]
fn a_pong_out_of_order_fails_the_upstream_and_every_ping_is_answered_once() {
    let mut rig = Rig::new(1);
    let c = rig.client();
    let seqs: Vec<u64> = (0..3).map(|_| rig.ping(c)).collect();
    let pings = rig.exchange_receives(0);
    rig.exchange_sends(0, &pong_of(&pings[0]));
    // The second answer skips ahead to the third ping.
    rig.exchange_sends(0, &pong_of(&pings[2]));
    let answers = rig.answers(c);
    assert_answered_once_in_order(&answers, &seqs);
    assert_eq!(answers[0], Answer::Pong(seqs[0]));
    assert!(rejected_unavailable(&answers, &seqs[1..]), "{answers:?}");
    assert_recovers(&mut rig, 0, c);
}

#[test]
fn an_unsolicited_pong_fails_the_upstream_and_the_clients_stay() {
    let mut rig = Rig::new(1);
    let c = rig.client();
    let seq = rig.ping(c);
    let pings = rig.exchange_receives(0);
    rig.exchange_sends(0, &pong_of(&pings[0]));
    assert_eq!(rig.answers(c), vec![Answer::Pong(seq)]);
    // The same pong again: nothing is in flight.
    rig.exchange_sends(0, &pong_of(&pings[0]));
    assert!(rig.upstreams[0].is_none(), "the upstream is cut");
    assert_eq!(rig.answers(c), vec![], "the client hears nothing of it");
    assert_recovers(&mut rig, 0, c);
}

#[test]
fn a_pong_whose_pad_changed_length_fails_the_upstream_without_losing_pings() {
    let mut rig = Rig::new(2);
    let c = rig.client();
    let seqs: Vec<u64> = (0..2).map(|_| rig.ping(c)).collect();
    let pings = rig.exchange_receives(1);
    let mut pong = pong_of(&pings[0]);
    pong.extend_from_slice(b"longer");
    let len = u32::try_from(pong.len() - 4).unwrap();
    pong[..4].copy_from_slice(&len.to_be_bytes());
    rig.exchange_sends(1, &pong);
    assert!(rig.upstreams[1].is_none(), "the upstream is cut");
    let answers = rig.answers(c);
    assert_answered_once_in_order(&answers, &seqs);
    assert!(rejected_unavailable(&answers, &seqs), "{answers:?}");
    assert_eq!(rig.inflight(), 0, "the credit came back whole");
    assert_recovers(&mut rig, 1, c);
}

#[test]
fn a_book_snapshot_past_its_request_s_bound_fails_the_upstream_and_the_query_is_answered() {
    use fep_trading::order::{BookQuery, BookSnapshot, Header, Level, OrderMsg};
    let mut rig = Rig::new(2);
    let c = rig.client();
    // A book query for 1 level a side, carried by worker 1's upstream.
    let mut query = Vec::new();
    OrderMsg::BookQuery(BookQuery {
        h: Header {
            cl_ord_id: 7,
            t1: rig.now,
            ..Header::default()
        },
        instrument: 1,
        depth: 1,
    })
    .encode(&mut query);
    let (w, conn) = rig.clients[c];
    rig.tick();
    rig.workers[w].handle_read(rig.now, conn, &query);
    rig.drain();
    let sent = upstream_frames(&mut rig, 1);
    let (_, payload) = sent
        .iter()
        .find(|(opcode, _)| *opcode == fep_trading::order::OP_BOOK_QUERY)
        .expect("the query went upstream");
    // The route follows cl_ord_id in the payload.
    let route = fep_trading::msg::read_u64(payload, 8);
    // The exchange answers with 5,000 levels: far past what depth 1 allows.
    let level = Level {
        price: 1,
        qty: 1,
        orders: 1,
    };
    let bids = vec![level; 5000];
    let mut snapshot = Vec::new();
    let h = Header {
        cl_ord_id: 7,
        route,
        ..Header::default()
    };
    BookSnapshot::encode_with(&mut snapshot, &h, 1, &bids, &[]);
    rig.exchange_sends(1, &snapshot);
    assert!(rig.upstreams[1].is_none(), "the upstream is cut");
    assert_eq!(
        rig.answers(c),
        [Answer::Reject(7, ErrorCode::UpstreamUnavailable)],
        "the query still gets its one answer"
    );
    assert_eq!(rig.inflight(), 0, "the credit came back whole");
}

#[test]
fn an_upstream_reject_for_another_seq_fails_the_upstream_without_losing_pings() {
    let mut rig = Rig::new(1);
    let c = rig.client();
    let seqs: Vec<u64> = (0..2).map(|_| rig.ping(c)).collect();
    let mut reject = Vec::new();
    RejectMsg {
        code: ErrorCode::Overloaded,
        seq: 999,
        reason: "not yours",
    }
    .encode(&mut reject);
    rig.exchange_sends(0, &reject);
    let answers = rig.answers(c);
    assert_answered_once_in_order(&answers, &seqs);
    assert!(rejected_unavailable(&answers, &seqs), "{answers:?}");
    assert_recovers(&mut rig, 0, c);
}

#[test]
fn garbage_from_the_exchange_never_loses_a_ping() {
    for seed in 0..64u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rig = Rig::new(1);
        let c = rig.client();
        let seqs: Vec<u64> = (0..4).map(|_| rig.ping(c)).collect();
        // A valid answer, then noise.
        let pings = rig.exchange_receives(0);
        rig.exchange_sends(0, &pong_of(&pings[0]));
        let len = rng.random_range(1..200);
        let garbage: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        rig.exchange_sends(0, &garbage);
        // Whether the noise was refused at once or waits for the rest of a
        // frame, the link ends some time: then nothing may be missing.
        if rig.upstreams[0].is_some() {
            rig.exchange_closes(0);
        }
        let answers = rig.answers(c);
        assert_answered_once_in_order(&answers, &seqs);
        assert_eq!(answers[0], Answer::Pong(seqs[0]), "seed {seed}");
        assert!(rejected_unavailable(&answers, &seqs[1..]), "seed {seed}");
        assert_recovers(&mut rig, 0, c);
    }
}

#[test]
fn a_frame_length_below_the_opcode_fails_the_upstream_with_malformed() {
    let mut rig = Rig::new(1);
    let c = rig.client();
    let seq = rig.ping(c);
    rig.exchange_sends(0, &[0, 0, 0, 1, 0xff]);
    let bytes = std::mem::take(&mut rig.to_exchange[0]);
    let sent = frames(&bytes);
    let (opcode, payload) = sent.last().expect("an Error goes upstream");
    assert_eq!(*opcode, OP_ERROR);
    assert_eq!(
        ErrorMsg::decode(payload).unwrap().code,
        ErrorCode::Malformed
    );
    assert_eq!(
        rig.answers(c),
        vec![Answer::Reject(seq, ErrorCode::UpstreamUnavailable)]
    );
}

/// Without a heartbeat interval (the worker's default; the gateway binary
/// sets one) a silent exchange holds its pings until the link is declared
/// lost by the kernel. No answer is invented meanwhile, and every ping is
/// answered once when the link goes.
#[test]
fn without_heartbeats_a_silent_exchange_holds_pings_until_the_link_is_declared_lost() {
    let mut rig = Rig::new(1);
    let c = rig.client();
    let seqs: Vec<u64> = (0..3).map(|_| rig.ping(c)).collect();
    assert_eq!(rig.exchange_receives(0).len(), 3);
    rig.advance(Nanos::from_secs(30));
    assert_eq!(rig.answers(c), vec![], "no answer is invented");
    assert_eq!(rig.inflight(), 3);
    assert!(rig.client_open(c));
    rig.exchange_closes(0);
    let answers = rig.answers(c);
    assert_answered_once_in_order(&answers, &seqs);
    assert!(rejected_unavailable(&answers, &seqs), "{answers:?}");
    assert_recovers(&mut rig, 0, c);
}

fn close_mid_frame(workers: u16) {
    let mut rig = Rig::new(workers);
    let c = rig.client();
    let up = usize::from(workers > 1);
    let seqs: Vec<u64> = (0..3).map(|_| rig.ping(c)).collect();
    let pings = rig.exchange_receives(up);
    let mut bytes = pong_of(&pings[0]);
    let second = pong_of(&pings[1]);
    bytes.extend_from_slice(&second[..second.len() / 2]);
    rig.exchange_sends(up, &bytes);
    rig.exchange_closes(up);
    let answers = rig.answers(c);
    assert_answered_once_in_order(&answers, &seqs);
    assert_eq!(answers[0], Answer::Pong(seqs[0]));
    assert!(rejected_unavailable(&answers, &seqs[1..]), "{answers:?}");
    assert_eq!(rig.inflight(), 0);
    assert_recovers(&mut rig, up, c);
}

#[test]
fn an_exchange_closing_mid_frame_leaves_no_ping_unanswered() {
    close_mid_frame(1);
}

#[test]
fn an_exchange_closing_mid_frame_leaves_no_handed_off_ping_unanswered() {
    close_mid_frame(2);
}

#[test]
fn an_exchange_closing_mid_frame_never_answers_a_ping_twice_across_clients() {
    let mut rig = Rig::new(1);
    let clients: Vec<usize> = (0..3).map(|_| rig.client()).collect();
    let mut sent: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for _ in 0..4 {
        for &c in &clients {
            let seq = rig.ping(c);
            sent.entry(c).or_default().push(seq);
        }
    }
    let pings = rig.exchange_receives(0);
    let mut bytes = Vec::new();
    for p in &pings[..5] {
        bytes.extend_from_slice(&pong_of(p));
    }
    rig.exchange_sends(0, &bytes[..bytes.len() - 3]);
    rig.exchange_closes(0);
    for &c in &clients {
        let answers = rig.answers(c);
        assert_answered_once_in_order(&answers, &sent[&c]);
        assert!(rig.client_open(c));
    }
    assert_eq!(rig.inflight(), 0);
}

/// The frames worker `w` wrote upstream since the last call.
fn upstream_frames(rig: &mut Rig, w: usize) -> Vec<(u16, Vec<u8>)> {
    frames(&std::mem::take(&mut rig.to_exchange[w]))
}

fn heartbeat_frame() -> Vec<u8> {
    let mut frame = Vec::new();
    encode_frame(&mut frame, OP_HEARTBEAT, &[]);
    frame
}

#[test]
fn a_silent_exchange_is_declared_dead_after_three_intervals_and_its_pings_rejected_in_order() {
    let interval = Nanos::from_secs(1);
    let mut rig = Rig::heartbeating(1, interval);
    let c = rig.client();
    let start = rig.now;
    let seqs: Vec<u64> = (0..3).map(|_| rig.ping(c)).collect();
    assert_eq!(rig.exchange_receives(0).len(), 3);
    // One heartbeat per interval with nothing else sent, no verdict yet.
    rig.advance(Nanos::from_millis(2_900));
    let sent = upstream_frames(&mut rig, 0);
    assert_eq!(
        sent.iter().filter(|(op, _)| *op == OP_HEARTBEAT).count(),
        2,
        "{sent:?}"
    );
    assert_eq!(rig.answers(c), vec![]);
    assert!(rig.workers[0].service().upstream_up());
    // Three intervals after the last byte from the exchange: dead.
    rig.advance(Nanos::from_millis(200));
    assert!(rig.now >= start + Nanos::from_secs(3));
    let sent = upstream_frames(&mut rig, 0);
    let (opcode, payload) = sent.last().expect("an Error goes upstream");
    assert_eq!(*opcode, OP_ERROR);
    assert_eq!(ErrorMsg::decode(payload).unwrap().code, ErrorCode::Timeout);
    assert!(!rig.workers[0].service().upstream_up());
    let answers = rig.answers(c);
    assert_answered_once_in_order(&answers, &seqs);
    assert!(rejected_unavailable(&answers, &seqs), "{answers:?}");
    assert_eq!(rig.inflight(), 0);
    assert_recovers(&mut rig, 0, c);
}

#[test]
fn a_silent_exchange_behind_a_handoff_is_detected_and_every_ping_answered_once() {
    let mut rig = Rig::heartbeating(2, Nanos::from_millis(100));
    let clients: Vec<usize> = (0..4).map(|_| rig.client()).collect();
    let seqs: Vec<(usize, u64)> = clients.iter().map(|&c| (c, rig.ping(c))).collect();
    rig.advance(Nanos::from_millis(400));
    for (c, seq) in seqs {
        assert_eq!(
            rig.answers(c),
            vec![Answer::Reject(seq, ErrorCode::UpstreamUnavailable)]
        );
        assert!(rig.client_open(c));
    }
    assert_eq!(rig.inflight(), 0);
}

#[test]
fn an_idle_exchange_that_answers_heartbeats_is_never_cut() {
    let interval = Nanos::from_secs(1);
    let mut rig = Rig::heartbeating(1, interval);
    let c = rig.client();
    let mut heartbeats = 0;
    for _ in 0..60 {
        rig.advance(Nanos::from_millis(500));
        let sent = upstream_frames(&mut rig, 0);
        for (opcode, _) in &sent {
            assert_eq!(*opcode, OP_HEARTBEAT, "only heartbeats go up: {sent:?}");
            heartbeats += 1;
            rig.exchange_sends(0, &heartbeat_frame());
        }
    }
    assert!(
        rig.workers[0].service().upstream_up(),
        "a live link was cut"
    );
    // 30 s idle at one heartbeat per interval (give or take the edges).
    assert!((28..=31).contains(&heartbeats), "{heartbeats} heartbeats");
    let seq = rig.ping(c);
    let ping = rig.exchange_receives(0);
    rig.exchange_sends(0, &pong_of(&ping[0]));
    assert_eq!(rig.answers(c), vec![Answer::Pong(seq)]);
}

#[test]
fn a_busy_upstream_gets_no_heartbeat() {
    let mut rig = Rig::heartbeating(1, Nanos::from_secs(1));
    let c = rig.client();
    for _ in 0..20 {
        let seq = rig.ping(c);
        let ping = rig.exchange_receives(0);
        rig.exchange_sends(0, &pong_of(&ping[0]));
        assert_eq!(rig.answers(c), vec![Answer::Pong(seq)]);
        rig.advance(Nanos::from_millis(900));
    }
    let sent = upstream_frames(&mut rig, 0);
    assert!(sent.iter().all(|(op, _)| *op != OP_HEARTBEAT), "{sent:?}");
    assert!(rig.workers[0].service().upstream_up());
}

#[test]
fn a_heartbeat_with_a_payload_from_the_exchange_fails_the_upstream_malformed() {
    let mut rig = Rig::heartbeating(1, Nanos::from_secs(1));
    let c = rig.client();
    let seq = rig.ping(c);
    let mut frame = Vec::new();
    encode_frame(&mut frame, OP_HEARTBEAT, b"xy");
    rig.exchange_sends(0, &frame);
    let sent = upstream_frames(&mut rig, 0);
    let (opcode, payload) = sent.last().expect("an Error goes upstream");
    assert_eq!(*opcode, OP_ERROR);
    assert_eq!(
        ErrorMsg::decode(payload).unwrap().code,
        ErrorCode::Malformed
    );
    assert_eq!(
        rig.answers(c),
        vec![Answer::Reject(seq, ErrorCode::UpstreamUnavailable)]
    );
}

#[test]
fn an_exchange_that_never_acks_the_hello_is_declared_dead_and_redialled() {
    let mut rig = Rig::heartbeating(1, Nanos::from_secs(1));
    rig.exchange_closes(0);
    rig.advance(Nanos::from_secs(1));
    // The new dial connects but the exchange never answers the hello.
    let conn = rig.dials[0].pop_front().expect("the worker redials");
    rig.upstreams[0] = Some(conn);
    rig.workers[0].handle_connected(rig.now, conn);
    rig.drain();
    rig.advance(Nanos::from_secs(3));
    assert!(
        rig.closed.contains(&(0, conn)),
        "a mute exchange holds the link"
    );
    rig.advance(Nanos::from_secs(1));
    assert!(!rig.dials[0].is_empty(), "the gateway dials again");
}

#[test]
fn an_upstream_declared_dead_leaves_no_deadline_behind_while_it_closes() {
    let mut rig = Rig::heartbeating(1, Nanos::from_secs(1));
    let conn = rig.upstreams[0].expect("up");
    // The driver is slow to close it: the Close effect is not carried out.
    rig.now = rig.now + Nanos::from_secs(3);
    rig.workers[0].handle_timeout(rig.now);
    let effects: Vec<Effect> = std::iter::from_fn(|| rig.workers[0].poll_effect()).collect();
    assert!(effects.contains(&Effect::Close { conn }), "{effects:?}");
    // Meanwhile the worker does not ask to be woken again and again.
    let next = rig.workers[0].poll_timeout();
    assert!(
        next.is_none_or(|at| at > rig.now),
        "{next:?} at {:?}",
        rig.now
    );
}
