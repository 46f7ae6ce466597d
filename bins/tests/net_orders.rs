//! Order entry through the real processes: loadgen's order flow straight
//! to the exchange and through the gateway (one worker, two local, two
//! handoff, two handoff with three upstream connections each), cancel on
//! disconnect, risk refusals, and the start-up checks
//! that refuse bad settings with one line.

mod net_support;

use std::process::Command;
use std::time::{Duration, Instant};

use fep_core::Nanos;
use fep_trading::order::{
    BalanceQuery, BookQuery, CancelOrder, Header, NewOrder, OrderMsg, OP_BOOK_SNAPSHOT,
    OP_ORDER_ACCEPTED, SIDE_SELL, TIF_DAY,
};
use net_support::*;

const GRACE: Duration = Duration::from_secs(10);
/// Small engine tables start fast in a debug build.
const EXCHANGE_ARGS: &[&str] = &["--orders-max", "65536"];

fn flow(target: std::net::SocketAddr) -> fep_bins::bench::summary::LoadgenSummary {
    loadgen(
        target,
        &[
            "--workload",
            "orders",
            "--connections",
            "4",
            "--inflight",
            "4",
            "--warmup",
            "1000",
            "--count",
            "6000",
        ],
    )
}

fn assert_orders_clean(s: &fep_bins::bench::summary::LoadgenSummary) {
    assert_eq!(s.errors, 0);
    assert_eq!(s.lost, 0);
    assert_eq!(s.window_violations, 0);
    assert_eq!(s.extra["workload"], "orders");
    assert_eq!(s.extra["order_violations"], 0, "{:?}", s.extra);
    let answers = &s.extra["answers"];
    assert!(answers["accepted"].as_u64().unwrap() > 1000, "{answers}");
    assert!(answers["replaced"].as_u64().unwrap() > 1000, "{answers}");
    // Every maker and every taker is one of this loadgen's orders, so the
    // two sides' fills agree, but for the few still on their way when the
    // run ended at its last first answer (at most one window's worth).
    let maker = answers["executed_maker"].as_u64().unwrap();
    let taker = answers["executed_taker"].as_u64().unwrap();
    assert!(taker > 0, "{answers}");
    assert!(maker.abs_diff(taker) <= 16, "{answers}");
    // The rtt of each kind of request the flow sent, each within the
    // whole run's range (to its two significant figures).
    let by_request = &s.extra["rtt_by_request"];
    let max = s.rtt.max_us * 1.01;
    for kind in ["new_day", "new_ioc", "cancel", "replace", "query"] {
        let p50 = by_request[kind]["p50_us"].as_f64();
        let p50 = p50.unwrap_or_else(|| panic!("no {kind} in {by_request}"));
        assert!(p50 > 0.0 && p50 <= max, "{kind}: {by_request}");
        let kind_max = by_request[kind]["max_us"].as_f64().unwrap();
        assert!(
            kind_max <= max,
            "{kind}: {by_request}, rtt max {}",
            s.rtt.max_us
        );
    }
}

#[test]
fn an_order_flow_straight_to_the_exchange_is_answered_in_order() {
    let exchange = Server::exchange(EXCHANGE_ARGS);
    let s = flow(exchange.addr);
    assert_orders_clean(&s);
    assert!(s.hop1.is_none(), "no gateway, no hops");
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn a_second_order_flow_against_the_same_exchange_is_not_refused_as_duplicates() {
    // The exchange keeps each account's highest cl_ord_id: a rerun that
    // numbered its requests from 1 again would be refused DUPLICATE_ID.
    let exchange = Server::exchange(EXCHANGE_ARGS);
    for run in 0..2 {
        let s = flow(exchange.addr);
        let rejects = &s.extra["rejects_by_code"];
        assert!(
            rejects.get("DUPLICATE_ID").is_none(),
            "run {run}: {rejects}"
        );
        assert_eq!(s.extra["order_violations"], 0, "run {run}");
        let accepted = s.extra["answers"]["accepted"].as_u64().unwrap();
        assert!(accepted > 1000, "run {run}: {}", s.extra["answers"]);
    }
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn an_order_flow_through_every_gateway_routing_is_answered_in_order() {
    for args in [
        &["--workers", "1"][..],
        &["--workers", "2", "--routing", "local"],
        &["--workers", "2", "--routing", "handoff"],
        &[
            "--workers",
            "2",
            "--routing",
            "handoff",
            "--upstream-connections",
            "3",
        ],
    ] {
        let exchange = Server::exchange(EXCHANGE_ARGS);
        let gateway = Server::gateway(exchange.addr, args);
        let s = flow(gateway.addr);
        assert_orders_clean(&s);
        assert_hops_sum_to_rtt(&s);
        assert!(gateway.terminate(GRACE).success(), "{args:?}");
        assert!(exchange.terminate(GRACE).success(), "{args:?}");
    }
}

fn order_frame(msg: OrderMsg<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode(&mut out);
    out
}

fn header(cl_ord_id: u64) -> Header {
    Header {
        cl_ord_id,
        t1: Nanos(1),
        ..Header::default()
    }
}

/// The asks of instrument 1 as a fresh client of `server` (the gateway or
/// the exchange) sees them.
fn asks(server: std::net::SocketAddr) -> Vec<(i64, u64)> {
    let mut c = RawClient::connect(server);
    c.send(&hello(1, 1, ""));
    match c.next() {
        Some(Frame::Other { opcode, .. }) => {
            assert_eq!(opcode, fep_trading::msg::OP_ROLE_HELLO_ACK);
        }
        other => panic!("expected RoleHelloAck, got {other:?}"),
    }
    c.send(&order_frame(OrderMsg::BookQuery(BookQuery {
        h: header(1),
        instrument: 1,
        depth: 10,
    })));
    let Some(Frame::Other { opcode, payload }) = c.next() else {
        panic!("a book snapshot");
    };
    assert_eq!(opcode, OP_BOOK_SNAPSHOT);
    let Ok(OrderMsg::BookSnapshot(snap)) = OrderMsg::decode(opcode, &payload) else {
        panic!("a book snapshot decodes");
    };
    snap.asks().map(|l| (l.price, l.qty)).collect()
}

/// A client through `gateway` whose day sell of `qty` at `price` (account
/// 5, instrument 1) rests at the exchange.
fn client_resting_a_sell(gateway: std::net::SocketAddr, price: i64, qty: u64) -> RawClient {
    let mut c = RawClient::connect(gateway);
    c.handshake("");
    c.send(&order_frame(OrderMsg::NewOrder(NewOrder {
        h: header(7),
        account: 5,
        instrument: 1,
        side: SIDE_SELL,
        tif: TIF_DAY,
        price,
        qty,
    })));
    match c.next() {
        Some(Frame::Other { opcode, .. }) => assert_eq!(opcode, OP_ORDER_ACCEPTED),
        other => panic!("expected OrderAccepted, got {other:?}"),
    }
    c
}

#[test]
fn a_client_that_disconnects_has_its_resting_orders_canceled_by_the_gateway() {
    let exchange = Server::exchange(EXCHANGE_ARGS);
    let gateway = Server::gateway(exchange.addr, &[]);
    let c = client_resting_a_sell(gateway.addr, 4242, 3);
    assert_eq!(asks(gateway.addr), [(4242, 3)]);
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !asks(gateway.addr).is_empty() {
        assert!(Instant::now() < deadline, "the order was not canceled");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn a_draining_gateway_cancels_its_clients_resting_orders_before_it_exits() {
    let exchange = Server::exchange(EXCHANGE_ARGS);
    let gateway = Server::gateway(exchange.addr, &[]);
    let c = client_resting_a_sell(gateway.addr, 4343, 2);
    assert_eq!(asks(exchange.addr), [(4343, 2)]);
    // SIGTERM with the client still connected: the gateway exits only once
    // its cancel is answered, so the book is empty the moment it is gone.
    assert!(gateway.terminate(GRACE).success());
    assert_eq!(asks(exchange.addr), [], "canceled by the drain");
    drop(c);
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn without_a_risk_file_the_gateway_leaves_an_unknown_account_to_the_exchange() {
    // Account 0 is nobody's: the exchange answers INVALID_ORDER (a cancel:
    // UNKNOWN_ORDER), through the gateway as straight to the exchange.
    let exchange = Server::exchange(EXCHANGE_ARGS);
    let gateway = Server::gateway(exchange.addr, &[]);
    for server in [exchange.addr, gateway.addr] {
        let mut c = RawClient::connect(server);
        c.send(&hello(1, 1, ""));
        assert!(matches!(
            c.next(),
            Some(Frame::Other { opcode, .. }) if opcode == fep_trading::msg::OP_ROLE_HELLO_ACK
        ));
        let requests = [
            OrderMsg::NewOrder(NewOrder {
                h: header(1),
                account: 0,
                instrument: 1,
                side: SIDE_SELL,
                tif: TIF_DAY,
                price: 100,
                qty: 1,
            }),
            OrderMsg::CancelOrder(CancelOrder {
                h: header(2),
                account: 0,
                orig_cl_ord_id: 1,
            }),
            OrderMsg::BalanceQuery(BalanceQuery {
                h: header(3),
                account: 0,
                asset: 0,
            }),
        ];
        let want = [
            fep_core::ErrorCode::InvalidOrder,
            fep_core::ErrorCode::UnknownOrder,
            fep_core::ErrorCode::InvalidOrder,
        ];
        for (seq, (msg, code)) in (1..).zip(requests.into_iter().zip(want)) {
            c.send(&order_frame(msg));
            match c.next() {
                Some(Frame::Reject { code: got, seq: s }) => {
                    assert_eq!((got, s), (code, seq), "via {server}");
                }
                other => panic!("expected Reject{{{code:?}}} via {server}, got {other:?}"),
            }
        }
    }
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn a_gateway_with_risk_refuses_an_unknown_token_and_an_order_past_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let risk = dir.path().join("risk.toml");
    std::fs::write(
        &risk,
        "max_qty = 10\n[clients.alice]\ntoken = \"alice\"\naccounts = [1]\n",
    )
    .unwrap();
    let exchange = Server::exchange(EXCHANGE_ARGS);
    let risk_arg = risk.to_str().unwrap();
    let gateway = Server::gateway(exchange.addr, &["--risk", risk_arg]);
    let mut mallory = RawClient::connect(gateway.addr);
    mallory.send(&hello(1, 1, "mallory"));
    match mallory.next() {
        Some(Frame::Error { code, .. }) => assert_eq!(code, fep_core::ErrorCode::RoleRefused),
        other => panic!("expected Error{{ROLE_REFUSED}}, got {other:?}"),
    }
    let mut alice = RawClient::connect(gateway.addr);
    alice.handshake("alice");
    alice.send(&order_frame(OrderMsg::NewOrder(NewOrder {
        h: header(1),
        account: 1,
        instrument: 1,
        side: SIDE_SELL,
        tif: TIF_DAY,
        price: 100,
        qty: 11,
    })));
    match alice.next() {
        Some(Frame::Reject { code, seq }) => {
            assert_eq!((code, seq), (fep_core::ErrorCode::RiskLimit, 1));
        }
        other => panic!("expected Reject{{RISK_LIMIT}}, got {other:?}"),
    }
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

fn refused(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .output()
        .expect("runs");
    assert!(!out.status.success(), "{bin} {args:?} started");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn settings_that_could_overflow_a_balance_or_a_bad_risk_file_stop_the_start() {
    let err = refused(
        exchange_bin(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--accounts",
            "1024",
            "--cash",
            "9000000000000000000",
        ],
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("does not fit in an i64"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let risk = dir.path().join("risk.toml");
    std::fs::write(&risk, "max_qyt = 10\nmax_notional = 0\n").unwrap();
    let err = refused(
        gateway_bin(),
        &["--listen", "127.0.0.1:0", "--risk", risk.to_str().unwrap()],
    );
    // A misspelt key, a zero limit, and no client at all: one line that
    // names each.
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert_eq!(err.matches("; ").count(), 2, "three mistakes: {err}");
    assert!(err.contains("max_qyt"), "{err}");
    assert!(err.contains("max_notional"), "{err}");
}
