//! The journaling exchange's steady state does not allocate per message: a
//! counting global allocator (allocation-counter) watches a warmed-up
//! engine worker take orders that rest, fill and cancel, append their
//! records, hear "durable up to N" and release the answers it held.

use fep_core::{ConnId, Effect, Nanos, Worker, WorkerConfig, WorkerId};
use fep_trading::exchange::{Exchange, ExchangeConfig, ENGINE_WORKER};
use fep_trading::msg::RoleHelloReq;
use fep_trading::order::{self, OrderMsg, SIDE_BUY, SIDE_SELL, TIF_DAY};

fn allocations_in(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

/// What the driver would do with the effects, without copying: bytes
/// written, journal bytes taken, records appended.
#[derive(Debug, Default)]
struct Drained {
    written: usize,
    journaled: usize,
    records: u64,
    snapshots: u64,
}

fn drain(w: &mut Worker<Exchange>, now: Nanos, d: &mut Drained) {
    while let Some(e) = w.poll_effect() {
        match e {
            Effect::Transmit { conn } => {
                let n = w.transmit_buf(conn).len();
                d.written += n;
                w.handle_written(now, conn, n);
            }
            Effect::Journal => {
                let buf = w.journal_buf();
                let n = buf.len();
                let mut at = 0;
                while at < n {
                    let len = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                    at += 4 + len;
                    d.records += 1;
                }
                d.journaled += n;
                w.handle_journaled(n);
            }
            Effect::Snapshot => {
                // The driver writes it on another thread; dropping it here
                // frees, which the counter does not count.
                d.snapshots += u64::from(w.take_snapshot().is_some());
            }
            _ => {}
        }
    }
}

fn connect(w: &mut Worker<Exchange>, now: Nanos) -> ConnId {
    let conn = w.handle_accepted(now).expect("room");
    let mut hello = Vec::new();
    RoleHelloReq::new(fep_trading::Role::Client, "").encode(&mut hello);
    w.handle_read(now, conn, &hello);
    drain(w, now, &mut Drained::default());
    conn
}

/// One round of requests, encoded once: a sell that rests, a buy that
/// takes half of it, a cancel of the rest, on two connections.
struct Round {
    sell: Vec<u8>,
    buy: Vec<u8>,
    cancel: Vec<u8>,
}

impl Round {
    fn new() -> Round {
        let h = |cl_ord_id| order::Header {
            cl_ord_id,
            t1: Nanos(11),
            ..order::Header::default()
        };
        let new = |cl_ord_id, account, side, qty| {
            let mut out = Vec::new();
            OrderMsg::NewOrder(order::NewOrder {
                h: h(cl_ord_id),
                account,
                instrument: 1,
                side,
                tif: TIF_DAY,
                price: 100,
                qty,
            })
            .encode(&mut out);
            out
        };
        let mut cancel = Vec::new();
        OrderMsg::CancelOrder(order::CancelOrder {
            h: h(0),
            account: 1,
            orig_cl_ord_id: 0,
        })
        .encode(&mut cancel);
        Round {
            sell: new(0, 1, SIDE_SELL, 10),
            buy: new(0, 2, SIDE_BUY, 5),
            cancel,
        }
    }

    /// Sets round `i`'s client order ids in place (ids must rise).
    fn number(&mut self, i: u64) {
        let (sell, buy, cancel) = (3 * i + 1, 3 * i + 1, 3 * i + 2);
        set_u64(&mut self.sell, CL_ORD_ID_AT, sell);
        set_u64(&mut self.buy, CL_ORD_ID_AT, buy);
        set_u64(&mut self.cancel, CL_ORD_ID_AT, cancel);
        set_u64(&mut self.cancel, CANCEL_ORIG_AT, sell);
    }
}

/// Where a request's `cl_ord_id` sits in its frame: after the frame's
/// length and opcode.
const CL_ORD_ID_AT: usize = 6;
/// Where a cancel's `orig_cl_ord_id` sits: after the header and the account.
const CANCEL_ORIG_AT: usize = 6 + order::HEADER_LEN + 4;

fn set_u64(frame: &mut [u8], at: usize, value: u64) {
    frame[at..at + 8].copy_from_slice(&value.to_be_bytes());
}

/// Runs rounds `from..to`; answers become durable every `batch` rounds (a
/// group commit covering several requests).
fn rounds(
    w: &mut Worker<Exchange>,
    (maker, taker): (ConnId, ConnId),
    round: &mut Round,
    (from, to): (u64, u64),
    batch: u64,
    d: &mut Drained,
) {
    for i in from..to {
        let now = Nanos(1_000 + i * 1_000);
        round.number(i);
        w.handle_read(now, maker, &round.sell);
        w.handle_read(now, taker, &round.buy);
        w.handle_read(now, maker, &round.cancel);
        drain(w, now, d);
        if (i + 1) % batch == 0 {
            let (last, _) = w.service().journal_seqs().expect("journaling");
            w.handle_durable(now, last);
            drain(w, now, d);
        }
    }
}

#[test]
fn the_counter_sees_an_allocation() {
    let n = allocations_in(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert!(n >= 1);
}

fn journaling_exchange(snapshot_every: u64) -> Worker<Exchange> {
    let mut w = Worker::new(
        ENGINE_WORKER,
        WorkerConfig::default(),
        Exchange::new(
            ENGINE_WORKER,
            ExchangeConfig {
                journal: Some(0),
                snapshot_every,
                ..ExchangeConfig::default()
            },
        ),
    );
    w.start(Nanos(1));
    w
}

#[test]
fn journaling_holding_and_releasing_answers_do_not_allocate_per_message() {
    // Snapshots are the one planned allocation (every N records): off here.
    let mut w = journaling_exchange(0);
    let conns = (connect(&mut w, Nanos(2)), connect(&mut w, Nanos(3)));
    let mut round = Round::new();
    let mut warm = Drained::default();
    // Warm-up: every buffer, queue and table reaches its working size.
    rounds(&mut w, conns, &mut round, (0, 2_000), 7, &mut warm);
    assert_eq!(warm.records, 3 * 2_000, "every order and cancel journaled");

    let mut d = Drained::default();
    let n = allocations_in(|| rounds(&mut w, conns, &mut round, (2_000, 12_000), 7, &mut d));
    assert_eq!(n, 0, "allocations in 30,000 journaled requests");
    assert_eq!(d.records, 3 * 10_000);
    // Answers went out (accepted, fills, canceled): not all held forever.
    let (last, durable) = w.service().journal_seqs().unwrap();
    assert_eq!(last, 3 * 12_000);
    assert!(last - durable < 3 * 7, "{last} {durable}");
    assert!(d.written > 10_000 * 5 * 40, "{} bytes written", d.written);
    let s = w.service().stats();
    assert_eq!(s.journaled, 3 * 12_000);
    assert_eq!(s.fills, 12_000);
}

#[test]
fn a_snapshot_of_the_engine_costs_one_allocation() {
    let mut w = journaling_exchange(3_000);
    let conns = (connect(&mut w, Nanos(2)), connect(&mut w, Nanos(3)));
    let mut round = Round::new();
    let mut warm = Drained::default();
    rounds(&mut w, conns, &mut round, (0, 2_000), 7, &mut warm);
    assert_eq!(warm.snapshots, 2, "{warm:?}");

    let mut d = Drained::default();
    let n = allocations_in(|| rounds(&mut w, conns, &mut round, (2_000, 12_000), 7, &mut d));
    assert_eq!(d.snapshots, 10, "one every 3,000 of the 30,000 records");
    assert_eq!(n, d.snapshots, "allocations");
}

/// Two workers: clients on worker 1, the engine (and the journal) on
/// worker 0; the lanes between them are moved through `scratch`, reused.
struct Pair {
    workers: [Worker<Exchange>; 2],
    scratch: Vec<u8>,
}

impl Pair {
    fn new() -> Pair {
        let config = ExchangeConfig {
            journal: Some(0),
            snapshot_every: 0,
            ..ExchangeConfig::default()
        };
        let worker = |id: u16| {
            let mut w = Worker::new(
                WorkerId(id),
                WorkerConfig::default(),
                Exchange::new(WorkerId(id), config.clone()),
            );
            w.start(Nanos(1));
            w
        };
        Pair {
            workers: [worker(0), worker(1)],
            scratch: Vec::with_capacity(1 << 20),
        }
    }

    /// Drains both workers until neither has an effect left.
    fn settle(&mut self, now: Nanos, d: &mut Drained) {
        loop {
            let mut moved = false;
            for w in 0..2 {
                drain_lanes(self, w, now, d, &mut moved);
            }
            if !moved {
                return;
            }
        }
    }
}

fn drain_lanes(p: &mut Pair, w: usize, now: Nanos, d: &mut Drained, moved: &mut bool) {
    while let Some(e) = p.workers[w].poll_effect() {
        *moved = true;
        let worker = &mut p.workers[w];
        match e {
            Effect::Transmit { conn } => {
                let n = worker.transmit_buf(conn).len();
                d.written += n;
                worker.handle_written(now, conn, n);
            }
            Effect::Journal => {
                let n = worker.journal_buf().len();
                d.journaled += n;
                worker.handle_journaled(n);
            }
            Effect::Handoff { target } => {
                p.scratch.clear();
                p.scratch.extend_from_slice(worker.handoff_buf(target));
                worker.handle_handed_off(target);
                let source = WorkerId(w as u16);
                p.workers[target.index()].handle_handoff(now, source, &p.scratch);
            }
            _ => {}
        }
    }
}

fn pair_rounds(
    p: &mut Pair,
    conns: (ConnId, ConnId),
    round: &mut Round,
    span: (u64, u64),
    d: &mut Drained,
) {
    for i in span.0..span.1 {
        let now = Nanos(1_000 + i * 1_000);
        round.number(i);
        let client = &mut p.workers[1];
        client.handle_read(now, conns.0, &round.sell);
        client.handle_read(now, conns.1, &round.buy);
        client.handle_read(now, conns.0, &round.cancel);
        p.settle(now, d);
        if (i + 1) % 5 == 0 {
            let (last, _) = p.workers[0].service().journal_seqs().expect("journaling");
            p.workers[0].handle_durable(now, last);
            p.settle(now, d);
        }
    }
}

#[test]
fn requests_handed_to_the_engines_worker_are_journaled_and_answered_without_allocating() {
    let mut p = Pair::new();
    let mut conns = [ConnId::from_bits(0); 2];
    for (k, conn) in conns.iter_mut().enumerate() {
        let now = Nanos(2 + k as u64);
        *conn = p.workers[1].handle_accepted(now).expect("room");
        let mut hello = Vec::new();
        RoleHelloReq::new(fep_trading::Role::Client, "").encode(&mut hello);
        p.workers[1].handle_read(now, *conn, &hello);
        p.settle(now, &mut Drained::default());
    }
    let conns = (conns[0], conns[1]);
    let mut round = Round::new();
    let mut warm = Drained::default();
    pair_rounds(&mut p, conns, &mut round, (0, 2_000), &mut warm);
    assert_eq!(p.workers[0].service().journal_seqs(), Some((6_000, 6_000)));

    let mut d = Drained::default();
    let n = allocations_in(|| pair_rounds(&mut p, conns, &mut round, (2_000, 6_000), &mut d));
    assert_eq!(n, 0, "allocations in 12,000 handed-off journaled requests");
    assert_eq!(
        p.workers[0].service().journal_seqs(),
        Some((18_000, 18_000))
    );
    // The answers reached the clients' worker and were written there.
    assert!(d.written > 4_000 * 5 * 40, "{} bytes written", d.written);
    assert_eq!(
        p.workers[1].service().stats().fills,
        0,
        "matched on worker 0"
    );
    assert_eq!(p.workers[0].service().stats().fills, 6_000);
}
