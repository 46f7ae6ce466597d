//! The real crash test of `mock_exchange --wal`: order flow through the
//! gateway, `kill -9` of the exchange at a random moment, a restart on the
//! same directory, and every answer the client received must be reflected
//! in the recovered books and balances (asked with `BookQuery` and
//! `BalanceQuery`), which must equal the reference model's replay of the
//! acknowledged orders plus, at most, some that were durable but never
//! acknowledged.

mod net_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fep_core::Nanos;
use fep_engine::NewOrder;
use fep_sim::durable::{day_orders, observe_model, ACCOUNTS, INSTRUMENTS};
use fep_trading::order::{self, Header, OrderMsg};
use net_support::{exchange_bin, Frame, RawClient, Server, READY_TIMEOUT};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Orders in flight at once from the client.
const WINDOW: usize = 16;

/// Starts the exchange on `dir`; returns it and the lines it printed
/// before `ready`.
fn start_exchange(dir: &Path) -> (Server, Vec<String>) {
    let dir = dir.to_str().expect("a UTF-8 temp path");
    let child = Process::new(exchange_bin())
        // Snapshots every 500 records: recovery starts from one and
        // replays the rest, and covered segments are deleted meanwhile.
        .args([
            "--listen",
            "127.0.0.1:0",
            "--wal",
            dir,
            "--wal-snapshot-every",
            "500",
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start mock_exchange");
    // Killed on drop, whatever happens below.
    let mut server = Server {
        name: "mock_exchange",
        child,
        addr: "0.0.0.0:0".parse().unwrap(),
        before_ready: Vec::new(),
    };
    let stdout = server.child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut before = Vec::new();
    loop {
        let line = rx
            .recv_timeout(READY_TIMEOUT)
            .expect("mock_exchange printed no ready line");
        if let Some(addr) = line.strip_prefix("ready ") {
            server.addr = addr.trim().parse().expect("ready <addr>");
            return (server, before);
        }
        before.push(line);
    }
}

fn header(cl_ord_id: u64) -> Header {
    Header {
        cl_ord_id,
        t1: Nanos(1),
        ..Header::default()
    }
}

fn frame_of(o: &NewOrder) -> Vec<u8> {
    let mut out = Vec::new();
    OrderMsg::NewOrder(order::NewOrder {
        h: header(o.cl_ord_id),
        account: o.account,
        instrument: o.instrument,
        side: o.side.wire(),
        tif: o.tif.wire(),
        price: o.price,
        qty: o.qty,
    })
    .encode(&mut out);
    out
}

/// Sends `orders` through `gateway`, `WINDOW` at a time, until they run
/// out or the path breaks (a reject, an error, the end of the stream, a
/// silence). Returns how many were sent and how many were accepted (the
/// accepted ones are a prefix: answers come in order).
fn flow(gateway: SocketAddr, orders: &[NewOrder]) -> (usize, usize) {
    let mut c = RawClient::connect(gateway);
    c.sock
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    c.handshake("");
    let (mut sent, mut acked) = (0, 0);
    while sent < orders.len() {
        let batch = &orders[sent..(sent + WINDOW).min(orders.len())];
        let mut bytes = Vec::new();
        for o in batch {
            bytes.extend_from_slice(&frame_of(o));
        }
        if std::io::Write::write_all(&mut c.sock, &bytes).is_err() {
            return (sent, acked);
        }
        sent += batch.len();
        while acked < sent {
            let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.next()));
            match next {
                Ok(Some(Frame::Other { opcode, .. })) if opcode == order::OP_ORDER_ACCEPTED => {
                    acked += 1
                }
                Ok(Some(Frame::Other { .. })) => {} // fills
                // A reject (the gateway's, the exchange gone), an error, the
                // end, or a read that timed out: the path broke.
                _ => return (sent, acked),
            }
        }
    }
    (sent, acked)
}

/// The state a client can see: each book's levels and each balance.
fn observe_exchange(addr: SocketAddr) -> Vec<String> {
    let mut c = RawClient::connect(addr);
    c.send(&net_support::hello(1, 1, ""));
    assert!(
        matches!(c.next(), Some(Frame::Other { opcode, .. }) if opcode == fep_trading::msg::OP_ROLE_HELLO_ACK)
    );
    let mut lines = Vec::new();
    for instrument in 1..=INSTRUMENTS {
        let mut q = Vec::new();
        OrderMsg::BookQuery(order::BookQuery {
            h: header(0),
            instrument,
            depth: 100,
        })
        .encode(&mut q);
        c.send(&q);
        let Some(Frame::Other { opcode, payload }) = c.next() else {
            panic!("no book snapshot");
        };
        let Ok(OrderMsg::BookSnapshot(b)) = OrderMsg::decode(opcode, &payload) else {
            panic!("not a book snapshot: {opcode}");
        };
        let bids: Vec<_> = b.bids().map(|l| (l.price, l.qty, l.orders)).collect();
        let asks: Vec<_> = b.asks().map(|l| (l.price, l.qty, l.orders)).collect();
        lines.push(format!("book {instrument} bids {bids:?} asks {asks:?}"));
    }
    for account in 1..=ACCOUNTS {
        for asset in 0..=INSTRUMENTS {
            let mut q = Vec::new();
            OrderMsg::BalanceQuery(order::BalanceQuery {
                h: header(0),
                account,
                asset,
            })
            .encode(&mut q);
            c.send(&q);
            let Some(Frame::Other { opcode, payload }) = c.next() else {
                panic!("no balance");
            };
            let Ok(OrderMsg::Balance(b)) = OrderMsg::decode(opcode, &payload) else {
                panic!("not a balance: {opcode}");
            };
            lines.push(format!(
                "balance {account} {asset} {} {}",
                b.total, b.locked
            ));
        }
    }
    lines
}

/// `mock_exchange`'s default engine settings.
fn exchange_settings() -> fep_engine::Config {
    fep_engine::Config {
        instruments: 16,
        accounts: 1024,
        cash: 1_000_000_000_000_000,
        units: 1_000_000_000,
        orders_max: 1 << 20,
        levels_max: 4096,
    }
}

#[test]
fn every_acknowledged_order_survives_a_kill_9_of_the_exchange() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let kill_after = Duration::from_millis(rng.random_range(100..700));
    eprintln!("seed {seed}: kill -9 after {kill_after:?}");
    let dir = tempfile::tempdir().unwrap();
    let stream = day_orders(seed, 200_000);

    let (exchange, before) = start_exchange(dir.path());
    assert!(
        before.iter().all(|l| !l.starts_with("recovered")),
        "{before:?}"
    );
    let gateway = Server::gateway(exchange.addr, &[]);
    let started = Instant::now();
    let client = {
        let stream = stream.clone();
        let addr = gateway.addr;
        std::thread::spawn(move || flow(addr, &stream))
    };
    std::thread::sleep(kill_after);
    exchange.signal(rustix::process::Signal::KILL);
    let (sent, acked) = client.join().expect("the client thread");
    eprintln!(
        "sent {sent}, acknowledged {acked} in {:?}",
        started.elapsed()
    );
    drop(exchange);
    drop(gateway);
    assert!(acked > 0, "the flow ran before the kill");

    let (again, before) = start_exchange(dir.path());
    let recovered: u64 = before
        .iter()
        .find_map(|l| l.strip_prefix("recovered ")?.strip_suffix(" requests"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `recovered <N> requests` line: {before:?}"));
    assert!(
        recovered as usize >= acked && recovered as usize <= sent,
        "recovered {recovered}, acknowledged {acked}, sent {sent}"
    );
    let seen = observe_exchange(again.addr);
    // Answers come in order and the journal is written in order: the
    // recovered state is exactly the first `recovered` orders.
    assert_eq!(
        seen,
        observe_model(exchange_settings(), &stream[..recovered as usize]),
        "seed {seed}"
    );
    again.terminate(Duration::from_secs(10));
}
