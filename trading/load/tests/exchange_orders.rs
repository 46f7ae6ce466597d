//! Order entry at the exchange, frame by frame, through raw connections: who
//! hears what, in which order, with which header.

use fep_core::frame::Decoder;
use fep_core::wire::{ErrorMsg, RejectMsg, OP_ERROR, OP_REJECT};
use fep_core::{ErrorCode, Nanos};
use fep_load::client::ClientConfig;
use fep_load::harness::{Harness, HarnessConfig, NodeRef};
use fep_trading::msg::RoleHelloReq;
use fep_trading::order::{
    self, BalanceQuery, BookQuery, CancelOrder, OrderMsg, ReplaceOrder, SIDE_BUY, SIDE_SELL,
    TIF_DAY, TIF_IOC,
};

mod support;

use support::{header, msg, new_order, Raw};

const EXCHANGE: NodeRef = NodeRef::Exchange;

fn harness() -> Harness {
    let client = ClientConfig {
        connections: 1,
        warmup: 0,
        count: 1,
        ..Default::default()
    };
    Harness::new(HarnessConfig {
        gateway: None,
        client,
        ..Default::default()
    })
}

fn connect(h: &mut Harness) -> Raw {
    support::connect(h, EXCHANGE)
}

#[test]
fn a_crossing_order_answers_accepted_then_maker_then_taker_each_to_its_connection() {
    let mut h = harness();
    let (mut a, mut b) = (connect(&mut h), connect(&mut h));
    a.take(&h);
    b.take(&h);

    a.send(
        &mut h,
        &new_order(5, 0xAAAA, 1, SIDE_SELL, TIF_DAY, 100, 10),
    );
    let frames = a.take(&h);
    assert_eq!(frames.len(), 1);
    let OrderMsg::OrderAccepted(acc) = msg(&frames[0]) else {
        panic!("{frames:?}");
    };
    assert_eq!((acc.order_id, acc.qty, acc.price), (1, 10, 100));
    assert_eq!(acc.h.cl_ord_id, 5);
    assert_eq!(acc.h.route, 0xAAAA);
    assert_eq!(acc.h.t1, Nanos(11), "the header is echoed");
    assert_ne!(acc.h.t3, Nanos::ZERO, "t3 is set on arrival");

    b.send(&mut h, &new_order(9, 0xBBBB, 2, SIDE_BUY, TIF_DAY, 101, 4));
    let to_b = b.take(&h);
    let to_a = a.take(&h);
    assert_eq!(to_b.len(), 2, "accepted, then the taker's fill: {to_b:?}");
    assert!(
        matches!(msg(&to_b[0]), OrderMsg::OrderAccepted(m) if m.order_id == 2 && m.h.cl_ord_id == 9)
    );
    let OrderMsg::OrderExecuted(taker) = msg(&to_b[1]) else {
        panic!("{to_b:?}");
    };
    assert_eq!(
        (taker.price, taker.qty, taker.leaves),
        (100, 4, 0),
        "at the maker's price"
    );
    assert_eq!(taker.liquidity, order::LIQUIDITY_TAKER);
    assert_eq!(
        (taker.h.cl_ord_id, taker.h.route, taker.h.t1),
        (9, 0xBBBB, Nanos(11))
    );
    assert_eq!(to_a.len(), 1);
    let OrderMsg::OrderExecuted(maker) = msg(&to_a[0]) else {
        panic!("{to_a:?}");
    };
    assert_eq!(maker.exec_id, taker.exec_id, "both sides carry one exec_id");
    assert_eq!((maker.order_id, maker.qty, maker.leaves), (1, 4, 6));
    assert_eq!(maker.liquidity, order::LIQUIDITY_MAKER);
    assert_eq!(
        (maker.h.cl_ord_id, maker.h.route),
        (5, 0xAAAA),
        "a maker's fill names its order's request and route"
    );
    assert_eq!(
        (maker.h.t1, maker.h.t2, maker.h.t4),
        (Nanos::ZERO, Nanos::ZERO, Nanos::ZERO)
    );
    assert_ne!(maker.h.t3, Nanos::ZERO);
}

#[test]
fn an_ioc_rest_is_canceled_after_its_fills_and_a_cancel_reports_what_was_open() {
    let mut h = harness();
    let mut a = connect(&mut h);
    a.take(&h);
    a.send(&mut h, &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 50, 3));
    a.send(&mut h, &new_order(2, 0, 1, SIDE_BUY, TIF_IOC, 60, 5));
    let frames = a.take(&h);
    let kinds: Vec<u16> = frames.iter().map(|f| f.0).collect();
    assert_eq!(
        kinds,
        [
            order::OP_ORDER_ACCEPTED,
            order::OP_ORDER_ACCEPTED,
            order::OP_ORDER_EXECUTED,
            order::OP_ORDER_EXECUTED,
            order::OP_ORDER_CANCELED,
        ],
        "self-trade is allowed; the IOC's rest is canceled last"
    );
    let OrderMsg::OrderCanceled(rest) = msg(&frames[4]) else {
        unreachable!()
    };
    assert_eq!(
        (rest.canceled_qty, rest.reason),
        (2, order::CANCEL_REASON_IOC)
    );

    a.send(&mut h, &new_order(3, 0, 1, SIDE_BUY, TIF_DAY, 40, 7));
    let mut cancel = Vec::new();
    OrderMsg::CancelOrder(CancelOrder {
        h: header(4, 0),
        account: 1,
        orig_cl_ord_id: 3,
    })
    .encode(&mut cancel);
    a.send(&mut h, &cancel);
    let frames = a.take(&h);
    let OrderMsg::OrderCanceled(c) = msg(&frames[1]) else {
        panic!("{frames:?}");
    };
    assert_eq!(
        (c.h.cl_ord_id, c.canceled_qty, c.reason),
        (4, 7, order::CANCEL_REASON_REQUESTED)
    );
    // Canceling it again: no open order of that name.
    a.send(&mut h, &cancel);
    let frames = a.take(&h);
    assert_eq!(frames[0].0, OP_REJECT);
    let reject = RejectMsg::decode(&frames[0].1).unwrap();
    assert_eq!((reject.code, reject.seq), (ErrorCode::UnknownOrder, 4));
}

#[test]
fn a_bad_side_is_invalid_and_does_not_raise_the_mark() {
    let mut h = harness();
    let mut a = connect(&mut h);
    a.take(&h);
    a.send(&mut h, &new_order(7, 0, 1, 3, TIF_DAY, 10, 1));
    a.send(&mut h, &new_order(7, 0, 1, SIDE_BUY, TIF_DAY, 10, 1));
    a.send(&mut h, &new_order(7, 0, 1, SIDE_BUY, TIF_DAY, 10, 1));
    let frames = a.take(&h);
    assert_eq!(frames.len(), 3);
    let r = RejectMsg::decode(&frames[0].1).unwrap();
    assert_eq!((r.code, r.seq), (ErrorCode::InvalidOrder, 7));
    assert_eq!(
        frames[1].0,
        order::OP_ORDER_ACCEPTED,
        "the mark was not raised"
    );
    let r = RejectMsg::decode(&frames[2].1).unwrap();
    assert_eq!(r.code, ErrorCode::DuplicateId);
    assert!(!h.raw(a.id).closed, "a Reject keeps the connection");
}

#[test]
fn a_payload_of_the_wrong_length_is_malformed_and_fatal() {
    let mut h = harness();
    let mut a = connect(&mut h);
    a.take(&h);
    let mut bad = new_order(1, 0, 1, SIDE_BUY, TIF_DAY, 10, 1);
    bad.pop();
    let len = (bad.len() - 4) as u32;
    bad[..4].copy_from_slice(&len.to_be_bytes());
    a.send(&mut h, &bad);
    let frames = a.take(&h);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, OP_ERROR);
    assert_eq!(
        ErrorMsg::decode(&frames[0].1).unwrap().code,
        ErrorCode::Malformed
    );
    assert!(h.raw(a.id).closed);
}

#[test]
fn a_closed_makers_fill_is_not_sent_but_its_balances_move() {
    let mut h = harness();
    let (a, mut b) = (connect(&mut h), connect(&mut h));
    a.send(&mut h, &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 100, 10));
    h.close_raw(a.id);
    h.settle();
    b.take(&h);
    b.send(&mut h, &new_order(1, 0, 2, SIDE_BUY, TIF_DAY, 100, 10));
    let frames = b.take(&h);
    assert_eq!(frames.len(), 2, "{frames:?}");
    let mut q = Vec::new();
    OrderMsg::BalanceQuery(BalanceQuery {
        h: header(2, 0),
        account: 1,
        asset: 0,
    })
    .encode(&mut q);
    b.send(&mut h, &q);
    let frames = b.take(&h);
    let OrderMsg::Balance(bal) = msg(&frames[0]) else {
        panic!("{frames:?}");
    };
    let start = fep_trading::exchange::CASH_DEFAULT;
    assert_eq!(
        (bal.total, bal.locked),
        (start + 1000, 0),
        "the seller was paid"
    );
}

#[test]
fn a_book_query_shows_levels_best_first_and_a_replace_moves_an_order() {
    let mut h = harness();
    let mut a = connect(&mut h);
    a.take(&h);
    a.send(&mut h, &new_order(1, 0, 1, SIDE_BUY, TIF_DAY, 98, 1));
    a.send(&mut h, &new_order(2, 0, 1, SIDE_BUY, TIF_DAY, 99, 2));
    a.send(&mut h, &new_order(3, 0, 1, SIDE_SELL, TIF_DAY, 105, 3));
    let mut rep = Vec::new();
    OrderMsg::ReplaceOrder(ReplaceOrder {
        h: header(4, 0),
        account: 1,
        orig_cl_ord_id: 1,
        price: 97,
        qty: 1,
    })
    .encode(&mut rep);
    a.send(&mut h, &rep);
    let mut q = Vec::new();
    OrderMsg::BookQuery(BookQuery {
        h: header(5, 0),
        instrument: 1,
        depth: 500,
    })
    .encode(&mut q);
    a.send(&mut h, &q);
    let frames = a.take(&h);
    assert_eq!(frames.len(), 5);
    assert!(
        matches!(msg(&frames[3]), OrderMsg::OrderReplaced(r) if r.price == 97 && r.h.cl_ord_id == 4)
    );
    let OrderMsg::BookSnapshot(snap) = msg(&frames[4]) else {
        panic!("{frames:?}");
    };
    let bids: Vec<(i64, u64)> = snap.bids().map(|l| (l.price, l.qty)).collect();
    let asks: Vec<(i64, u64)> = snap.asks().map(|l| (l.price, l.qty)).collect();
    assert_eq!(bids, [(99, 2), (97, 1)]);
    assert_eq!(asks, [(105, 3)]);
}

/// Two exchange workers wired by hand: effects drained, handoff lanes moved,
/// output collected per connection.
mod two_workers {
    use super::*;
    use fep_core::{ConnId, Effect, Worker, WorkerConfig, WorkerId};
    use fep_trading::exchange::{Exchange, ExchangeConfig};
    use fep_trading::msg::{PerfPing, OP_PERF_PING, OP_PERF_PONG};

    struct Pair {
        workers: [Worker<Exchange>; 2],
        out: Vec<(usize, ConnId, Vec<u8>)>,
        now: Nanos,
    }

    impl Pair {
        fn new() -> Pair {
            let w = |i| {
                let mut w = Worker::new(
                    WorkerId(i),
                    WorkerConfig::default(),
                    Exchange::new(WorkerId(i), ExchangeConfig::default()),
                );
                w.start(Nanos(1));
                w
            };
            Pair {
                workers: [w(0), w(1)],
                out: Vec::new(),
                now: Nanos(1),
            }
        }

        fn accept(&mut self, i: usize) -> ConnId {
            let conn = self.workers[i].handle_accepted(self.now).expect("room");
            let mut hello = Vec::new();
            RoleHelloReq::new(fep_trading::Role::Client, "").encode(&mut hello);
            self.read(i, conn, &hello);
            self.take(i, conn);
            conn
        }

        fn read(&mut self, i: usize, conn: ConnId, bytes: &[u8]) {
            self.now = Nanos(self.now.0 + 1000);
            self.workers[i].handle_read(self.now, conn, bytes);
            self.pump();
        }

        fn pump(&mut self) {
            loop {
                let mut progress = false;
                for i in 0..2 {
                    while let Some(e) = self.workers[i].poll_effect() {
                        progress = true;
                        match e {
                            Effect::Transmit { conn } => {
                                let bytes = self.workers[i].transmit_buf(conn).to_vec();
                                self.workers[i].handle_written(self.now, conn, bytes.len());
                                self.out.push((i, conn, bytes));
                            }
                            Effect::Handoff { target } => {
                                let bytes = self.workers[i].handoff_buf(target).to_vec();
                                let t = target.index();
                                self.workers[t].handle_handoff(
                                    self.now,
                                    WorkerId(i as u16),
                                    &bytes,
                                );
                                self.workers[i].handle_handed_off(target);
                            }
                            _ => {}
                        }
                    }
                }
                if !progress {
                    return;
                }
            }
        }

        fn take(&mut self, i: usize, conn: ConnId) -> Vec<(u16, Vec<u8>)> {
            let mut bytes = Vec::new();
            self.out.retain(|(w, c, b)| {
                let mine = *w == i && *c == conn;
                if mine {
                    bytes.extend_from_slice(b);
                }
                !mine
            });
            let mut h = Vec::new();
            let mut d = Decoder::new(1 << 20);
            let mut frames = d.frames(&bytes);
            while let Some(f) = frames.next() {
                let f = f.expect("whole frames");
                h.push((f.opcode, f.payload.to_vec()));
            }
            h
        }
    }

    fn ping(seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        PerfPing {
            seq,
            route: 77,
            t1: Nanos(1),
            t2: Nanos::ZERO,
            t3: Nanos::ZERO,
            t4: Nanos::ZERO,
            pad: &[1, 2, 3],
        }
        .encode(OP_PERF_PING, &mut out);
        out
    }

    #[test]
    fn another_workers_connection_trades_with_the_one_engine_in_order() {
        let mut p = Pair::new();
        let far = p.accept(1);
        let near = p.accept(0);
        // A resting sell from worker 1, then a ping right behind it: the
        // pong must not overtake the order's answer.
        let mut bytes = new_order(1, 0xF1, 1, SIDE_SELL, TIF_DAY, 100, 10);
        bytes.extend_from_slice(&ping(2));
        p.read(1, far, &bytes);
        let frames = p.take(1, far);
        let opcodes: Vec<u16> = frames.iter().map(|f| f.0).collect();
        assert_eq!(opcodes, [order::OP_ORDER_ACCEPTED, OP_PERF_PONG]);
        assert!(
            p.workers[1].service().engine().is_none(),
            "one engine, on worker 0"
        );
        // A buy on worker 0 crosses it: the maker's fill crosses back to
        // worker 1's connection, named by its request.
        p.read(0, near, &new_order(1, 0xE0, 2, SIDE_BUY, TIF_DAY, 100, 4));
        let near_frames = p.take(0, near);
        assert_eq!(near_frames.len(), 2, "accepted and the taker's fill");
        let far_frames = p.take(1, far);
        assert_eq!(far_frames.len(), 1);
        let OrderMsg::OrderExecuted(maker) = msg(&far_frames[0]) else {
            panic!("{far_frames:?}");
        };
        assert_eq!(
            (maker.h.cl_ord_id, maker.h.route, maker.leaves),
            (1, 0xF1, 6)
        );
        // And a ping on worker 1 with nothing at the engine is answered there.
        p.read(1, far, &ping(3));
        assert_eq!(p.take(1, far)[0].0, OP_PERF_PONG);
    }
}
