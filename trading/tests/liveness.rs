//! Liveness on the accepting side (PROTOCOL.md "Liveness"), the exchange's
//! worker driven in memory: the hand-shake deadline, and heartbeats
//! answered one for one, never sent unasked, refused when malformed or
//! early. The gateway's watch of its upstream is in
//! `misbehaving_exchange.rs`.

mod support;

use std::collections::BTreeSet;

use fep_core::frame::encode_frame;
use fep_core::wire::{ErrorMsg, HEARTBEAT_FRAME, OP_ERROR, OP_HEARTBEAT};
use fep_core::{ConnId, Effect, ErrorCode, Nanos, Worker, WorkerConfig, WorkerId};
use fep_trading::exchange::{Exchange, ExchangeConfig};
use fep_trading::msg::OP_ROLE_HELLO_ACK;
use support::{frames, hello};

/// An exchange worker and what it wrote and closed.
struct Server {
    now: Nanos,
    worker: Worker<Exchange>,
    written: std::collections::BTreeMap<ConnId, Vec<u8>>,
    closed: BTreeSet<ConnId>,
}

impl Server {
    fn new(config: WorkerConfig) -> Server {
        let mut worker = Worker::new(
            WorkerId(0),
            config,
            Exchange::new(WorkerId(0), ExchangeConfig::default()),
        );
        worker.start(Nanos::ZERO);
        let mut server = Server {
            now: Nanos::ZERO,
            worker,
            written: Default::default(),
            closed: BTreeSet::new(),
        };
        server.drain();
        server
    }

    fn drain(&mut self) {
        while let Some(effect) = self.worker.poll_effect() {
            match effect {
                Effect::Transmit { conn } => self.flush(conn),
                Effect::Close { conn } => {
                    self.flush(conn);
                    self.closed.insert(conn);
                    self.worker.handle_closed(self.now, conn);
                }
                _ => {}
            }
        }
    }

    fn flush(&mut self, conn: ConnId) {
        let bytes = self.worker.transmit_buf(conn).to_vec();
        self.worker.handle_written(self.now, conn, bytes.len());
        self.written.entry(conn).or_default().extend(bytes);
    }

    fn accept(&mut self) -> ConnId {
        let conn = self.worker.handle_accepted(self.now).expect("room");
        self.drain();
        conn
    }

    fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        self.worker.handle_read(self.now, conn, bytes);
        self.drain();
    }

    fn hello(&mut self, conn: ConnId) {
        self.send(conn, &hello(2));
        let got = self.take(conn);
        assert_eq!(got.first().map(|f| f.0), Some(OP_ROLE_HELLO_ACK));
    }

    /// Moves time to `at`, firing every deadline on the way, as a driver
    /// that sleeps until `poll_timeout` does.
    fn advance_to(&mut self, at: Nanos) {
        while let Some(next) = self.worker.poll_timeout().filter(|&t| t <= at) {
            self.now = self.now.max(next);
            self.worker.handle_timeout(self.now);
            self.drain();
        }
        self.now = at;
    }

    /// The frames written on `conn` since the last call.
    fn take(&mut self, conn: ConnId) -> Vec<(u16, Vec<u8>)> {
        let bytes = self.written.remove(&conn).unwrap_or_default();
        frames(&bytes)
    }

    fn error_of(&mut self, conn: ConnId) -> Option<ErrorCode> {
        let got = self.take(conn);
        let (opcode, payload) = got.last()?;
        (*opcode == OP_ERROR).then(|| ErrorMsg::decode(payload).unwrap().code)
    }
}

#[test]
fn two_hundred_silent_connections_are_cut_at_the_hello_deadline_and_no_sooner() {
    let mut s = Server::new(WorkerConfig::default());
    let silent: Vec<ConnId> = (0..200).map(|_| s.accept()).collect();
    let greeted = s.accept();
    s.hello(greeted);
    s.advance_to(Nanos::from_secs(5) - Nanos(1));
    assert!(s.closed.is_empty(), "cut before the deadline");
    s.advance_to(Nanos::from_secs(5));
    for &conn in &silent {
        assert!(s.closed.contains(&conn), "{conn:?} still open");
        assert_eq!(s.error_of(conn), Some(ErrorCode::Timeout));
    }
    assert!(!s.closed.contains(&greeted), "a hand-shaked link was cut");
    assert_eq!(s.worker.sessions_len(), 1);
}

#[test]
fn the_hello_deadline_follows_the_configured_timeout_per_connection() {
    let config = WorkerConfig {
        hello_timeout: Nanos::from_millis(250),
        ..WorkerConfig::default()
    };
    let mut s = Server::new(config);
    let first = s.accept();
    s.advance_to(Nanos::from_millis(100));
    let second = s.accept();
    s.advance_to(Nanos::from_millis(250));
    assert!(s.closed.contains(&first));
    assert!(!s.closed.contains(&second), "cut 150 ms after it opened");
    s.advance_to(Nanos::from_millis(350));
    assert!(s.closed.contains(&second));
    assert_eq!(s.worker.poll_timeout(), None, "no deadline is left over");
}

#[test]
fn a_connection_that_closed_or_greeted_before_its_deadline_is_not_failed_later() {
    let mut s = Server::new(WorkerConfig::default());
    let gone = s.accept();
    s.worker.handle_closed(s.now, gone);
    s.drain();
    // Its slot is reused by a newer connection with a later deadline.
    s.advance_to(Nanos::from_secs(1));
    let successor = s.accept();
    s.hello(successor);
    s.advance_to(Nanos::from_secs(10));
    assert!(!s.closed.contains(&successor));
    assert!(s.take(successor).is_empty(), "nothing sent unasked");
}

#[test]
fn the_hello_deadlines_stay_bounded_under_connection_churn() {
    let config = WorkerConfig {
        sessions_max: 8,
        ..WorkerConfig::default()
    };
    let mut s = Server::new(config);
    // Far more connections than the FIFO's bound open and close before
    // any deadline passes.
    for _ in 0..1_000 {
        let conn = s.accept();
        s.worker.handle_closed(s.now, conn);
        s.drain();
    }
    let silent = s.accept();
    s.advance_to(Nanos::from_secs(6));
    assert!(s.closed.contains(&silent));
    assert_eq!(s.error_of(silent), Some(ErrorCode::Timeout));
}

#[test]
fn each_heartbeat_is_answered_with_exactly_one_heartbeat() {
    let mut s = Server::new(WorkerConfig::default());
    let conn = s.accept();
    s.hello(conn);
    let mut three = Vec::new();
    for _ in 0..3 {
        three.extend_from_slice(&HEARTBEAT_FRAME);
    }
    s.send(conn, &three);
    let got = s.take(conn);
    assert_eq!(got, vec![(OP_HEARTBEAT, Vec::new()); 3]);
    assert!(!s.closed.contains(&conn));
}

#[test]
fn the_accepting_side_never_sends_a_heartbeat_unasked_nor_cuts_a_silent_client() {
    let mut s = Server::new(WorkerConfig::default());
    let conn = s.accept();
    s.hello(conn);
    s.advance_to(Nanos::from_secs(3600));
    assert!(s.take(conn).is_empty());
    assert!(!s.closed.contains(&conn));
}

#[test]
fn a_heartbeat_with_a_payload_is_malformed() {
    let mut s = Server::new(WorkerConfig::default());
    let conn = s.accept();
    s.hello(conn);
    let mut frame = Vec::new();
    encode_frame(&mut frame, OP_HEARTBEAT, b"x");
    s.send(conn, &frame);
    assert!(s.closed.contains(&conn));
    assert_eq!(s.error_of(conn), Some(ErrorCode::Malformed));
}

#[test]
fn a_heartbeat_before_the_hand_shake_is_unexpected() {
    let mut s = Server::new(WorkerConfig::default());
    let conn = s.accept();
    s.send(conn, &HEARTBEAT_FRAME);
    assert!(s.closed.contains(&conn));
    assert_eq!(s.error_of(conn), Some(ErrorCode::Unexpected));
}
