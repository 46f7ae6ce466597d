//! Each pre-trade check through the real processes (`fep_gateway --risk`
//! in front of `mock_exchange`): an order just below and at its limit is
//! accepted, one just above is refused `RISK_LIMIT`; a client reaches no
//! other client's account by any request; the gateway's metrics count each
//! refusal under its check.

mod net_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fep_core::{ErrorCode, Nanos};
use fep_trading::order::{
    BalanceQuery, BookQuery, CancelOrder, Header, NewOrder, OrderMsg, ReplaceOrder,
    OP_BOOK_SNAPSHOT, OP_ORDER_ACCEPTED, SIDE_BUY, SIDE_SELL, TIF_DAY,
};
use net_support::metrics::get;
use net_support::{Frame, RawClient, Server};

const GRACE: Duration = Duration::from_secs(10);
const EXCHANGE_ARGS: &[&str] = &["--orders-max", "65536"];

/// One client per check, each with its own account and one limit.
const CONFIG: &str = r#"
[reference_prices]
1 = 1000
[clients.q]
token = "q"
accounts = [1]
max_qty = 100
[clients.n]
token = "n"
accounts = [2]
max_notional = 1000
[clients.c]
token = "c"
accounts = [3]
price_collar_bps = 500
[clients.i]
token = "i"
accounts = [4]
instruments = ["2-3"]
[clients.o]
token = "o"
accounts = [5]
max_open_orders = 2
[clients.x]
token = "x"
accounts = [6]
max_open_notional = 1000
[clients.t]
token = "t"
accounts = [7]
rate_per_s = 1
burst = 2
[clients.k]
token = "k"
accounts = [8]
kill_switch = true
"#;

fn header(cl_ord_id: u64) -> Header {
    Header {
        cl_ord_id,
        t1: Nanos(1),
        ..Header::default()
    }
}

fn encode(msg: OrderMsg<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode(&mut out);
    out
}

/// A day order.
fn day(id: u64, account: u32, instrument: u32, side: u8, price: i64, qty: u64) -> Vec<u8> {
    encode(OrderMsg::NewOrder(NewOrder {
        h: header(id),
        account,
        instrument,
        side,
        tif: TIF_DAY,
        price,
        qty,
    }))
}

/// An order's (instrument, side, price, qty).
type Terms = (u32, u8, i64, u64);

/// Sends `frame`; the opcode of its answer, or the reject's code.
fn ask(c: &mut RawClient, frame: &[u8], id: u64) -> Result<u16, ErrorCode> {
    c.send(frame);
    match c.next() {
        Some(Frame::Reject { code, seq }) => {
            assert_eq!(seq, id);
            Err(code)
        }
        Some(Frame::Other { opcode, .. }) => Ok(opcode),
        other => panic!("request {id}: got {other:?}"),
    }
}

/// `risk_refusals_total{check=…}` per check, once every refusal is counted.
fn refusals_until(addr: SocketAddr, total: u64) -> Vec<(String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts: Vec<(String, u64)> = get(addr, "/metrics")
            .2
            .lines()
            .filter_map(|l| l.strip_prefix("fep_gateway_risk_refusals_total{check=\""))
            .map(|l| {
                let (check, rest) = l.split_once("\"} ").expect("a labelled sample");
                (check.to_string(), rest.parse().expect("a count"))
            })
            .collect();
        if counts.iter().map(|c| c.1).sum::<u64>() == total {
            return counts;
        }
        assert!(Instant::now() < deadline, "never {total}: {counts:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn each_check_passes_below_and_at_its_limit_and_refuses_just_above_through_the_processes() {
    let dir = tempfile::tempdir().unwrap();
    let risk = dir.path().join("risk.toml");
    std::fs::write(&risk, CONFIG).unwrap();
    let exchange = Server::exchange(EXCHANGE_ARGS);
    let gateway = Server::gateway(
        exchange.addr,
        &["--risk", risk.to_str().unwrap(), "--metrics", "127.0.0.1:0"],
    );
    let metrics: SocketAddr = gateway
        .before_ready
        .iter()
        .find_map(|l| l.strip_prefix("metrics "))
        .expect("a metrics line")
        .parse()
        .unwrap();
    let accepted = Ok(OP_ORDER_ACCEPTED);
    // (token, account, orders just below, at and just above the limit).
    let refused = Err(ErrorCode::RiskLimit);
    let cases: [(&str, u32, [Terms; 3]); 7] = [
        (
            "q",
            1,
            [
                (1, SIDE_SELL, 10, 99),
                (1, SIDE_SELL, 10, 100),
                (1, SIDE_SELL, 10, 101),
            ],
        ),
        (
            "n",
            2,
            [
                (1, SIDE_SELL, 10, 99),
                (1, SIDE_SELL, 10, 100),
                (1, SIDE_SELL, 10, 101),
            ],
        ),
        (
            "c",
            3,
            [
                (1, SIDE_BUY, 951, 1),
                (1, SIDE_BUY, 950, 1),
                (1, SIDE_BUY, 949, 1),
            ],
        ),
        (
            "i",
            4,
            [
                (2, SIDE_SELL, 10, 1),
                (3, SIDE_SELL, 10, 1),
                (4, SIDE_SELL, 10, 1),
            ],
        ),
        (
            "o",
            5,
            [
                (1, SIDE_SELL, 10, 1),
                (1, SIDE_SELL, 10, 1),
                (1, SIDE_SELL, 10, 1),
            ],
        ),
        (
            "x",
            6,
            [
                (1, SIDE_SELL, 10, 40),
                (1, SIDE_SELL, 10, 60),
                (1, SIDE_SELL, 1, 1),
            ],
        ),
        (
            "t",
            7,
            [
                (1, SIDE_SELL, 10, 1),
                (1, SIDE_SELL, 10, 1),
                (1, SIDE_SELL, 10, 1),
            ],
        ),
    ];
    for (token, account, orders) in cases {
        let mut c = RawClient::connect(gateway.addr);
        c.handshake(token);
        for (n, (instrument, side, price, qty)) in orders.into_iter().enumerate() {
            let id = n as u64 + 1;
            let got = ask(&mut c, &day(id, account, instrument, side, price, qty), id);
            let want = if n < 2 { accepted } else { refused };
            assert_eq!(got, want, "client {token}, order {id}");
        }
    }
    // A kill-switched client cannot trade; its cancel still passes (and
    // the exchange says it knows no such order).
    let mut k = RawClient::connect(gateway.addr);
    k.handshake("k");
    assert_eq!(ask(&mut k, &day(1, 8, 1, SIDE_SELL, 10, 1), 1), refused);
    let cancel = encode(OrderMsg::CancelOrder(CancelOrder {
        h: header(2),
        account: 8,
        orig_cl_ord_id: 1,
    }));
    assert_eq!(ask(&mut k, &cancel, 2), Err(ErrorCode::UnknownOrder));

    // q reaches n's account by no request; a book query names no account.
    let mut q = RawClient::connect(gateway.addr);
    q.handshake("q");
    let theirs = [
        day(11, 2, 1, SIDE_SELL, 10, 1),
        encode(OrderMsg::CancelOrder(CancelOrder {
            h: header(12),
            account: 2,
            orig_cl_ord_id: 1,
        })),
        encode(OrderMsg::ReplaceOrder(ReplaceOrder {
            h: header(13),
            account: 2,
            orig_cl_ord_id: 1,
            price: 11,
            qty: 1,
        })),
        encode(OrderMsg::BalanceQuery(BalanceQuery {
            h: header(14),
            account: 2,
            asset: 0,
        })),
    ];
    for (n, frame) in theirs.iter().enumerate() {
        assert_eq!(ask(&mut q, frame, 11 + n as u64), refused, "request {n}");
    }
    let book = encode(OrderMsg::BookQuery(BookQuery {
        h: header(15),
        instrument: 1,
        depth: 1,
    }));
    assert_eq!(ask(&mut q, &book, 15), Ok(OP_BOOK_SNAPSHOT));

    let counts = refusals_until(metrics, 7 + 1 + 4);
    for (check, want) in [
        ("max_qty", 1),
        ("max_notional", 1),
        ("price_collar", 1),
        ("instrument", 1),
        ("max_open_orders", 1),
        ("max_open_notional", 1),
        ("throttle", 1),
        ("kill_switch", 1),
        ("account", 4),
    ] {
        assert!(
            counts.contains(&(check.to_string(), want)),
            "{check}: {counts:?}"
        );
    }
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}
