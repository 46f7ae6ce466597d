//! A gateway worker with several upstream connections: each is dialed and
//! hand-shaked on its own, a client's requests all take one of them (so
//! its answers keep their order), the clients spread over all of them,
//! losing one touches only its clients, and an order left in doubt there
//! is canceled on that connection once it is back.
//!
//! One worker is driven directly, in memory; the test plays the exchange.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use fep_core::{ConnId, Effect, ErrorCode, Nanos, Worker, WorkerConfig, WorkerId};
use fep_trading::gateway::{Gateway, GatewayConfig, RouteTag};
use fep_trading::msg::{offset, read_u64, RoleHelloAck, OP_PERF_PING, OP_ROLE_HELLO_REQ};
use fep_trading::order::{self, OrderMsg};
use support::{answers_in, frames, hello, ping, pong_of_payload, Answer};

/// One gateway worker, its upstream connections played by the test.
struct Rig {
    now: Nanos,
    worker: Worker<Gateway>,
    /// Dials not completed yet, oldest first.
    dials: Vec<ConnId>,
    /// Upstream connections the test accepted, with the frames the gateway
    /// wrote on each (hand-shakes left out), not yet read by the exchange.
    upstreams: BTreeMap<ConnId, Vec<(u16, Vec<u8>)>>,
    /// Bytes each client received.
    to_client: BTreeMap<ConnId, Vec<u8>>,
    clients: Vec<ConnId>,
    closed: BTreeSet<ConnId>,
    next_seq: u64,
}

impl Rig {
    /// A worker with `upstreams` upstream connections, all hand-shaked.
    fn new(upstreams: u16) -> Rig {
        let config = GatewayConfig {
            upstream_connections: upstreams,
            ..GatewayConfig::default()
        };
        let now = Nanos::from_micros(1);
        let mut rig = Rig {
            now,
            worker: Worker::new(
                WorkerId(0),
                WorkerConfig::default(),
                Gateway::new(WorkerId(0), config),
            ),
            dials: Vec::new(),
            upstreams: BTreeMap::new(),
            to_client: BTreeMap::new(),
            clients: Vec::new(),
            closed: BTreeSet::new(),
            next_seq: 1,
        };
        rig.worker.start(now);
        rig.drain();
        assert_eq!(rig.dials.len(), usize::from(upstreams), "one dial each");
        while !rig.dials.is_empty() {
            rig.accept_dial();
        }
        assert!(rig.worker.service().upstream_up());
        assert_eq!(rig.worker.service().upstreams_up(), usize::from(upstreams));
        rig
    }

    fn drain(&mut self) {
        while let Some(effect) = self.worker.poll_effect() {
            match effect {
                Effect::Transmit { conn } => self.flush(conn),
                Effect::Close { conn } => {
                    self.flush(conn);
                    self.closed.insert(conn);
                    self.upstreams.remove(&conn);
                    self.worker.handle_closed(self.now, conn);
                }
                Effect::Connect { conn, .. } => self.dials.push(conn),
                Effect::PauseInput { .. }
                | Effect::ResumeInput { .. }
                | Effect::PauseGroup { .. }
                | Effect::ResumeGroup { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn flush(&mut self, conn: ConnId) {
        let bytes = self.worker.transmit_buf(conn).to_vec();
        self.worker.handle_written(self.now, conn, bytes.len());
        match self.upstreams.get_mut(&conn) {
            Some(frames_in) => frames_in.extend(
                frames(&bytes)
                    .into_iter()
                    .filter(|(op, _)| *op != OP_ROLE_HELLO_REQ),
            ),
            None => self
                .to_client
                .entry(conn)
                .or_default()
                .extend_from_slice(&bytes),
        }
    }

    /// The oldest pending dial reaches the exchange, which acks its hello.
    fn accept_dial(&mut self) -> ConnId {
        let conn = self.dials.remove(0);
        self.upstreams.insert(conn, Vec::new());
        self.worker.handle_connected(self.now, conn);
        self.drain();
        let mut ack = Vec::new();
        RoleHelloAck {
            role: 3,
            version: 1,
        }
        .encode(&mut ack);
        self.exchange_sends(conn, &ack);
        conn
    }

    fn tick(&mut self) {
        self.now = self.now + Nanos::from_micros(1);
    }

    /// A client connects and hand-shakes; returns its index.
    fn client(&mut self) -> usize {
        let conn = self.worker.handle_accepted(self.now).expect("room");
        self.worker.handle_read(self.now, conn, &hello(1));
        self.drain();
        self.to_client.remove(&conn);
        self.clients.push(conn);
        self.clients.len() - 1
    }

    /// Client `c` sends a ping; returns its seq.
    fn ping(&mut self, c: usize) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.client_sends(c, &ping(seq, self.now));
        seq
    }

    /// Client `c` sends a day `NewOrder` named `cl_ord_id`.
    fn new_order(&mut self, c: usize, cl_ord_id: u64) {
        let msg = OrderMsg::NewOrder(order::NewOrder {
            h: order::Header {
                cl_ord_id,
                route: 0,
                t1: self.now,
                t2: Nanos::ZERO,
                t3: Nanos::ZERO,
                t4: Nanos::ZERO,
            },
            account: 1,
            instrument: 1,
            side: 1,
            tif: order::TIF_DAY,
            price: 100,
            qty: 10,
        });
        let mut frame = Vec::new();
        msg.encode(&mut frame);
        self.client_sends(c, &frame);
    }

    fn client_sends(&mut self, c: usize, frame: &[u8]) {
        let conn = self.clients[c];
        self.tick();
        self.worker.handle_read(self.now, conn, frame);
        self.drain();
    }

    fn exchange_sends(&mut self, conn: ConnId, bytes: &[u8]) {
        self.tick();
        self.worker.handle_read(self.now, conn, bytes);
        self.drain();
    }

    /// The exchange answers every ping upstream `conn` carried, in order.
    fn exchange_answers(&mut self, conn: ConnId) {
        let pings = std::mem::take(self.upstreams.get_mut(&conn).expect("open"));
        let mut bytes = Vec::new();
        for (opcode, payload) in pings {
            assert_eq!(opcode, OP_PERF_PING);
            bytes.extend_from_slice(&pong_of_payload(&payload));
        }
        self.exchange_sends(conn, &bytes);
    }

    /// The exchange's side of upstream `conn` is lost.
    fn exchange_closes(&mut self, conn: ConnId) {
        self.upstreams.remove(&conn).expect("open");
        self.tick();
        self.worker.handle_closed(self.now, conn);
        self.drain();
    }

    /// Time passes by `dt`, firing every deadline on the way.
    fn advance(&mut self, dt: Nanos) {
        let end = self.now + dt;
        while let Some(at) = self.worker.poll_timeout().filter(|&at| at <= end) {
            self.now = self.now.max(at);
            self.worker.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    /// Which upstream carried each client's requests, by the route tag the
    /// gateway stamped (frames still unread by the exchange).
    fn carriers(&self) -> BTreeMap<ConnId, BTreeSet<ConnId>> {
        let mut carriers: BTreeMap<ConnId, BTreeSet<ConnId>> = BTreeMap::new();
        for (&up, frames) in &self.upstreams {
            for (_, payload) in frames {
                let route = read_u64(payload, offset::ROUTE - offset::SEQ);
                carriers
                    .entry(RouteTag::from_bits(route).conn)
                    .or_default()
                    .insert(up);
            }
        }
        carriers
    }

    /// Everything client `c` received since the last call.
    fn answers(&mut self, c: usize) -> Vec<Answer> {
        let bytes = self.to_client.remove(&self.clients[c]).unwrap_or_default();
        answers_in(&bytes)
    }
}

#[test]
fn each_client_keeps_to_one_upstream_connection_and_the_clients_use_them_all() {
    let mut rig = Rig::new(3);
    let clients: Vec<usize> = (0..9).map(|_| rig.client()).collect();
    let mut sent: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for round in 0..4 {
        for &c in &clients {
            // Clients interleave, and some send more than others.
            if round < 2 || c % 2 == 0 {
                sent.entry(c).or_default().push(rig.ping(c));
            }
        }
    }
    let carriers = rig.carriers();
    assert_eq!(
        carriers.len(),
        clients.len(),
        "every client's pings went up"
    );
    for (client, ups) in &carriers {
        assert_eq!(ups.len(), 1, "client {client:?} used {ups:?}");
    }
    let used: BTreeSet<ConnId> = carriers.values().flatten().copied().collect();
    assert_eq!(used.len(), 3, "the clients spread over every upstream");
    let ups: Vec<ConnId> = rig.upstreams.keys().copied().collect();
    for up in ups {
        rig.exchange_answers(up);
    }
    for &c in &clients {
        let want: Vec<Answer> = sent[&c].iter().map(|&s| Answer::Pong(s)).collect();
        assert_eq!(rig.answers(c), want, "client {c}");
    }
    assert_eq!(rig.worker.service().inflight(), 0);
}

#[test]
fn losing_one_upstream_connection_rejects_only_its_clients_and_it_is_dialed_again() {
    let mut rig = Rig::new(2);
    let clients: Vec<usize> = (0..6).map(|_| rig.client()).collect();
    let seqs: Vec<u64> = clients.iter().map(|&c| rig.ping(c)).collect();
    let carriers = rig.carriers();
    let lost = *carriers[&rig.clients[0]].first().unwrap();
    let kept = *rig.upstreams.keys().find(|&&u| u != lost).unwrap();
    let client_conns = rig.clients.clone();
    let on_lost = |c: usize| carriers[&client_conns[c]].contains(&lost);

    rig.exchange_closes(lost);
    assert!(!rig.worker.service().upstream_up());
    assert_eq!(rig.worker.service().upstreams_up(), 1);
    for &c in &clients {
        if on_lost(c) {
            let want = vec![Answer::Reject(seqs[c], ErrorCode::UpstreamUnavailable)];
            assert_eq!(rig.answers(c), want, "client {c}");
        } else {
            assert_eq!(rig.answers(c), vec![], "client {c} still waits");
        }
    }
    // The other connection goes on as if nothing happened.
    rig.exchange_answers(kept);
    for &c in &clients {
        if !on_lost(c) {
            assert_eq!(rig.answers(c), vec![Answer::Pong(seqs[c])], "client {c}");
        }
    }
    // While the lost one is down its clients are refused at once.
    let refused = rig.ping(clients[0]);
    assert_eq!(
        rig.answers(clients[0]),
        vec![Answer::Reject(refused, ErrorCode::UpstreamUnavailable)]
    );
    // It is dialed again after its backoff, and carries its clients again.
    assert!(rig.dials.is_empty());
    rig.advance(Nanos::from_millis(5));
    assert_eq!(rig.dials.len(), 1, "only the lost connection is redialed");
    let back = rig.accept_dial();
    assert!(rig.worker.service().upstream_up());
    let again = rig.ping(clients[0]);
    assert!(rig.carriers()[&rig.clients[0]].contains(&back));
    rig.exchange_answers(back);
    assert_eq!(rig.answers(clients[0]), vec![Answer::Pong(again)]);
}

#[test]
fn an_order_left_in_doubt_is_canceled_on_its_own_upstream_connection_once_back() {
    let mut rig = Rig::new(3);
    let c = rig.client();
    rig.new_order(c, 42);
    let lost = *rig.carriers()[&rig.clients[c]].first().unwrap();
    rig.exchange_closes(lost);
    assert_eq!(
        rig.answers(c),
        vec![Answer::Reject(42, ErrorCode::UpstreamUnavailable)]
    );
    assert_eq!(rig.worker.service().in_doubt_held(), 1);
    // The other connections carry no cancel: the order may still be in
    // the lost stream's path, and only its own connection follows it.
    for frames in rig.upstreams.values() {
        assert!(frames.is_empty(), "{frames:?}");
    }
    rig.advance(Nanos::from_millis(5));
    let back = rig.accept_dial();
    let sent = std::mem::take(rig.upstreams.get_mut(&back).unwrap());
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (opcode, payload) = &sent[0];
    match OrderMsg::decode(*opcode, payload).unwrap() {
        OrderMsg::CancelOrder(m) => {
            assert_eq!((m.account, m.orig_cl_ord_id), (1, 42));
        }
        other => panic!("the gateway sent {other:?}"),
    }
    assert_eq!(rig.worker.service().in_doubt_held(), 0);
    for frames in rig.upstreams.values() {
        assert!(frames.is_empty(), "{frames:?}");
    }
}
