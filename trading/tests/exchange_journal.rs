//! The exchange with a journal, driven as a bare worker: what it asks the
//! log to append, and that nothing a journaled request caused leaves before
//! the log says it is durable.

use fep_core::frame::Decoder;
use fep_core::{ConnId, Effect, Nanos, Worker, WorkerConfig, WorkerId};
use fep_engine::Command;
use fep_trading::exchange::{
    Exchange, ExchangeConfig, AT_ENGINE_PAUSE, ENGINE_WORKER, HELD_BYTES_MAX,
};
use fep_trading::msg::{PerfPing, RoleHelloReq};
use fep_trading::order::{self, OrderMsg, SIDE_BUY, SIDE_SELL, TIF_DAY};

/// A client's header: `t1` set, nothing else.
fn header(cl_ord_id: u64, route: u64) -> order::Header {
    order::Header {
        cl_ord_id,
        route,
        t1: Nanos(11),
        ..order::Header::default()
    }
}

/// A `NewOrder` frame on instrument 1.
fn new_order(
    id: u64,
    route: u64,
    account: u32,
    side: u8,
    tif: u8,
    price: i64,
    qty: u64,
) -> Vec<u8> {
    let mut out = Vec::new();
    OrderMsg::NewOrder(order::NewOrder {
        h: header(id, route),
        account,
        instrument: 1,
        side,
        tif,
        price,
        qty,
    })
    .encode(&mut out);
    out
}

fn exchange(journal: Option<u64>) -> Worker<Exchange> {
    exchange_with(ExchangeConfig {
        journal,
        ..ExchangeConfig::default()
    })
}

fn exchange_with(config: ExchangeConfig) -> Worker<Exchange> {
    let mut w = Worker::new(
        ENGINE_WORKER,
        WorkerConfig::default(),
        Exchange::new(ENGINE_WORKER, config),
    );
    w.start(Nanos(1));
    w
}

/// A hand-shaked connection whose ack was written.
fn connect(w: &mut Worker<Exchange>) -> ConnId {
    let conn = w.handle_accepted(Nanos(2)).expect("room");
    let mut hello = Vec::new();
    RoleHelloReq::new(fep_trading::Role::Client, "").encode(&mut hello);
    w.handle_read(Nanos(3), conn, &hello);
    flush(w);
    conn
}

/// Takes every effect: what was written (by connection) and the journal
/// records appended, in order.
#[derive(Default, Debug)]
struct Out {
    written: Vec<(ConnId, u16)>,
    records: Vec<Command>,
    snapshots: Vec<(u64, Vec<u8>)>,
}

fn flush(w: &mut Worker<Exchange>) -> Out {
    let mut out = Out::default();
    while let Some(e) = w.poll_effect() {
        match e {
            Effect::Transmit { conn } => {
                let bytes = w.transmit_buf(conn).to_vec();
                let mut d = Decoder::new(1 << 20);
                let mut frames = d.frames(&bytes);
                while let Some(f) = frames.next() {
                    out.written.push((conn, f.expect("whole frames").opcode));
                }
                w.handle_written(Nanos(5), conn, bytes.len());
            }
            Effect::Journal => {
                let bytes = w.journal_buf().to_vec();
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    out.records
                        .push(Command::decode(&rest[4..4 + len]).expect("a command"));
                    rest = &rest[4 + len..];
                }
                w.handle_journaled(bytes.len());
            }
            Effect::Snapshot => out.snapshots.extend(w.take_snapshot()),
            _ => {}
        }
    }
    out
}

fn ping(seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    PerfPing::from_client(seq, Nanos(1), &[]).encode(fep_trading::msg::OP_PERF_PING, &mut out);
    out
}

fn book_query() -> Vec<u8> {
    let mut out = Vec::new();
    OrderMsg::BookQuery(order::BookQuery {
        h: header(77, 0),
        instrument: 1,
        depth: 5,
    })
    .encode(&mut out);
    out
}

#[test]
fn an_order_is_journaled_and_its_answer_waits_until_it_is_durable() {
    let mut w = exchange(Some(0));
    let a = connect(&mut w);
    w.handle_read(
        Nanos(10),
        a,
        &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 100, 5),
    );
    let out = flush(&mut w);
    assert!(out.written.is_empty(), "nothing before durable: {out:?}");
    assert_eq!(out.records.len(), 1);
    assert!(matches!(out.records[0], Command::NewOrder(o) if o.cl_ord_id == 1 && o.qty == 5));
    assert_eq!(w.service().journal_seqs(), Some((1, 0)));

    w.handle_durable(Nanos(20), 1);
    let out = flush(&mut w);
    assert_eq!(out.written, [(a, order::OP_ORDER_ACCEPTED)]);
    assert_eq!(w.service().held_len(), 0);
}

#[test]
fn a_ping_and_a_query_behind_a_pending_order_wait_and_keep_their_order() {
    let mut w = exchange(Some(0));
    let a = connect(&mut w);
    w.handle_read(
        Nanos(10),
        a,
        &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 100, 5),
    );
    w.handle_read(Nanos(11), a, &ping(9));
    w.handle_read(Nanos(12), a, &book_query());
    let out = flush(&mut w);
    assert!(out.written.is_empty(), "{out:?}");
    assert_eq!(out.records.len(), 1, "queries and pings are not journaled");
    w.handle_durable(Nanos(20), 1);
    let out = flush(&mut w);
    let kinds: Vec<u16> = out.written.iter().map(|&(_, op)| op).collect();
    assert_eq!(
        kinds,
        [
            order::OP_ORDER_ACCEPTED,
            fep_trading::msg::OP_PERF_PONG,
            order::OP_BOOK_SNAPSHOT
        ]
    );
}

#[test]
fn a_makers_fill_waits_for_the_taker_request_to_be_durable() {
    let mut w = exchange(Some(0));
    let (a, b) = (connect(&mut w), connect(&mut w));
    w.handle_read(
        Nanos(10),
        a,
        &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 100, 5),
    );
    flush(&mut w);
    w.handle_durable(Nanos(11), 1);
    assert_eq!(flush(&mut w).written.len(), 1);

    w.handle_read(Nanos(12), b, &new_order(1, 0, 2, SIDE_BUY, TIF_DAY, 100, 2));
    let out = flush(&mut w);
    assert!(
        out.written.is_empty(),
        "the maker's fill is held too: {out:?}"
    );
    w.handle_durable(Nanos(13), 2);
    let out = flush(&mut w);
    assert!(out.written.contains(&(a, order::OP_ORDER_EXECUTED)));
    assert!(out.written.contains(&(b, order::OP_ORDER_ACCEPTED)));
    assert!(out.written.contains(&(b, order::OP_ORDER_EXECUTED)));
}

#[test]
fn durable_up_to_one_record_releases_only_what_that_record_caused() {
    let mut w = exchange(Some(0));
    let a = connect(&mut w);
    w.handle_read(
        Nanos(10),
        a,
        &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 100, 5),
    );
    w.handle_read(
        Nanos(11),
        a,
        &new_order(2, 0, 1, SIDE_SELL, TIF_DAY, 101, 5),
    );
    assert_eq!(flush(&mut w).records.len(), 2);
    w.handle_durable(Nanos(12), 1);
    assert_eq!(flush(&mut w).written.len(), 1);
    w.handle_durable(Nanos(13), 2);
    assert_eq!(flush(&mut w).written.len(), 1);
}

#[test]
fn a_failed_journal_sends_nothing_held_and_refuses_what_follows() {
    let mut w = exchange(Some(0));
    let a = connect(&mut w);
    w.handle_read(
        Nanos(10),
        a,
        &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 100, 5),
    );
    flush(&mut w);
    w.handle_journal_failed(Nanos(11));
    w.handle_durable(Nanos(12), 1);
    assert!(flush(&mut w).written.is_empty(), "never acknowledged");
    assert!(w.service().journal_failed());
    w.handle_read(
        Nanos(13),
        a,
        &new_order(2, 0, 1, SIDE_SELL, TIF_DAY, 100, 5),
    );
    let out = flush(&mut w);
    assert!(out.records.is_empty(), "a refused request is not journaled");
    assert_eq!(out.written, [(a, fep_core::wire::OP_REJECT)]);
}

#[test]
fn numbering_continues_after_the_recovered_journal() {
    let mut w = exchange(Some(41));
    let a = connect(&mut w);
    w.handle_read(
        Nanos(10),
        a,
        &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 100, 5),
    );
    flush(&mut w);
    assert_eq!(w.service().journal_seqs(), Some((42, 41)));
    w.handle_durable(Nanos(11), 42);
    assert_eq!(flush(&mut w).written.len(), 1);
}

#[test]
fn without_a_journal_answers_go_out_at_once() {
    let mut w = exchange(None);
    let a = connect(&mut w);
    w.handle_read(
        Nanos(10),
        a,
        &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 100, 5),
    );
    let out = flush(&mut w);
    assert!(out.records.is_empty());
    assert_eq!(out.written, [(a, order::OP_ORDER_ACCEPTED)]);
    let _ = WorkerId(0);
}

#[test]
fn a_snapshot_is_offered_every_n_journaled_requests_and_restores_the_engine() {
    let mut w = exchange_with(ExchangeConfig {
        journal: Some(0),
        snapshot_every: 2,
        ..ExchangeConfig::default()
    });
    let a = connect(&mut w);
    w.handle_read(
        Nanos(10),
        a,
        &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 100, 5),
    );
    assert!(flush(&mut w).snapshots.is_empty());
    w.handle_read(Nanos(11), a, &book_query());
    assert!(
        flush(&mut w).snapshots.is_empty(),
        "queries are not counted"
    );
    w.handle_read(Nanos(12), a, &new_order(2, 0, 2, SIDE_BUY, TIF_DAY, 100, 2));
    let out = flush(&mut w);
    assert_eq!(out.snapshots.len(), 1);
    let (seq, state) = &out.snapshots[0];
    assert_eq!(*seq, 2, "the state right after the second record");
    let config = ExchangeConfig::default().engine;
    let restored = fep_engine::Engine::restore(config, state).expect("a valid snapshot");
    let live = w.service().engine().expect("the engine's worker");
    assert_eq!(restored.next_order_id(), live.next_order_id());
    assert_eq!(restored.balance(1, 0), live.balance(1, 0));
    assert_eq!(restored.balance(2, 1), live.balance(2, 1));
}

/// One read's worth of pings (64 of them, 1 KiB each).
fn pings(first: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for seq in first..first + 64 {
        PerfPing::from_client(seq, Nanos(1), &[0; 970])
            .encode(fep_trading::msg::OP_PERF_PING, &mut out);
    }
    out
}

fn paused(w: &Worker<Exchange>, conn: ConnId) -> bool {
    w.session(conn).is_some_and(|s| s.input_paused())
}

#[test]
fn pings_behind_a_stalled_journal_pause_their_connection_like_orders() {
    // A journal that never becomes durable holds every answer: a client
    // that pings on must be held back by TCP, not grow the held answers
    // without end.
    let mut w = exchange(Some(0));
    let a = connect(&mut w);
    w.handle_read(
        Nanos(10),
        a,
        &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 100, 5),
    );
    flush(&mut w);
    let mut reads = 0;
    while !paused(&w, a) {
        assert!(
            reads < 1_000,
            "never paused; held {}",
            w.service().held_len()
        );
        w.handle_read(Nanos(20), a, &pings(reads * 64));
        flush(&mut w);
        reads += 1;
    }
    let held = w.service().held_len();
    assert!(held > HELD_BYTES_MAX / 2, "{held}");
    assert!(held <= HELD_BYTES_MAX / 2 + 64 * 1024, "{held}");
    assert_eq!(w.service().stats().held_pauses, 1);
    // Durable at last: everything goes out and the connection is read again.
    w.handle_durable(Nanos(30), 1);
    flush(&mut w);
    assert_eq!(w.service().held_len(), 0);
    assert!(!paused(&w, a));
}

#[test]
fn a_connection_with_many_requests_at_a_stalled_engine_worker_is_paused_then_resumed() {
    // The connection lives on worker 1; the engine on worker 0 answers
    // only once its journal is durable. Worker 1 stops reading the
    // connection at AT_ENGINE_PAUSE requests in the engine's hands.
    let config = ExchangeConfig {
        journal: Some(0),
        ..ExchangeConfig::default()
    };
    let mut engine = exchange_with(config.clone());
    let other = WorkerId(1);
    let mut w = Worker::new(other, WorkerConfig::default(), Exchange::new(other, config));
    w.start(Nanos(1));
    let a = connect(&mut w);
    w.handle_read(
        Nanos(10),
        a,
        &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 100, 5),
    );
    let shuttle = |from: &mut Worker<Exchange>, to: &mut Worker<Exchange>| {
        let target = to.id();
        let bytes = from.handoff_buf(target).to_vec();
        from.handle_handed_off(target);
        if !bytes.is_empty() {
            to.handle_handoff(Nanos(20), from.id(), &bytes);
        }
        flush(from);
        flush(to);
    };
    shuttle(&mut w, &mut engine);
    let mut reads = 0;
    while !paused(&w, a) {
        assert!(reads < 1_000, "never paused");
        w.handle_read(Nanos(20), a, &pings(reads * 64));
        shuttle(&mut w, &mut engine);
        reads += 1;
    }
    let sent = reads * 64;
    assert!(sent >= u64::from(AT_ENGINE_PAUSE), "{sent}");
    assert!(sent < u64::from(AT_ENGINE_PAUSE) + 64, "{sent}");
    assert_eq!(w.service().stats().engine_pauses, 1);
    // The journal catches up: the answers come back and the connection is
    // read again.
    engine.handle_durable(Nanos(30), 1);
    flush(&mut engine);
    shuttle(&mut engine, &mut w);
    assert!(!paused(&w, a));
}
