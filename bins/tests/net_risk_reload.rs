//! `fep_gateway --risk FILE` reloaded by a real SIGHUP: a good new file
//! applies to the very next order on a connection that stays open; a bad
//! one keeps the limits in force and says why on one stderr line.

mod net_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use fep_core::{ErrorCode, Nanos};
use fep_trading::order::{Header, NewOrder, OrderMsg, OP_ORDER_ACCEPTED, SIDE_SELL, TIF_DAY};
use net_support::{gateway_bin, Frame, RawClient, Server, READY_TIMEOUT};
use rustix::process::Signal;

const GRACE: Duration = Duration::from_secs(10);
const EXCHANGE_ARGS: &[&str] = &["--orders-max", "65536"];

fn limits(max_qty: u64) -> String {
    format!("max_qty = {max_qty}\n[clients.alice]\ntoken = \"alice\"\naccounts = [1]\n")
}

/// The gateway with `--risk path`, its stderr lines on a channel.
fn gateway_with_stderr(upstream: SocketAddr, risk: &Path) -> (Server, Receiver<String>) {
    let mut child = Command::new(gateway_bin())
        .args(["--listen", "127.0.0.1:0", "--upstream"])
        .arg(upstream.to_string())
        .arg("--risk")
        .arg(risk)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fep_gateway");
    let lines = |stream: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        rx
    };
    let stdout = lines(Box::new(child.stdout.take().expect("piped")));
    let stderr = lines(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut before_ready = Vec::new();
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = stdout.recv_timeout(left).expect("a ready line");
        match line.strip_prefix("ready ") {
            Some(addr) => break addr.trim().parse().expect("ready <addr>"),
            None => before_ready.push(line),
        }
    };
    let server = Server {
        name: "fep_gateway",
        child,
        addr,
        before_ready,
    };
    (server, stderr)
}

/// The next stderr line that contains `what`; the lines before it too.
fn wait_line(stderr: &Receiver<String>, what: &str) -> (String, Vec<String>) {
    let mut skipped = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stderr.recv_timeout(left) {
            Ok(line) if line.contains(what) => return (line, skipped),
            Ok(line) => skipped.push(line),
            Err(_) => panic!("no stderr line with {what:?}; saw {skipped:?}"),
        }
    }
}

/// Sends a sell order of `qty` as `cl_ord_id`; `Ok` if accepted, else the
/// reject's code.
fn order(c: &mut RawClient, cl_ord_id: u64, qty: u64) -> Result<(), ErrorCode> {
    let mut out = Vec::new();
    OrderMsg::NewOrder(NewOrder {
        h: Header {
            cl_ord_id,
            t1: Nanos(1),
            ..Header::default()
        },
        account: 1,
        instrument: 1,
        side: SIDE_SELL,
        tif: TIF_DAY,
        price: 5_000,
        qty,
    })
    .encode(&mut out);
    c.send(&out);
    match c.next() {
        Some(Frame::Other { opcode, .. }) if opcode == OP_ORDER_ACCEPTED => Ok(()),
        Some(Frame::Reject { code, seq }) => {
            assert_eq!(seq, cl_ord_id);
            Err(code)
        }
        other => panic!("order {cl_ord_id}: expected OrderAccepted or Reject, got {other:?}"),
    }
}

#[test]
fn sighup_applies_a_good_file_to_the_next_order_and_keeps_the_limits_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let risk = dir.path().join("risk.toml");
    std::fs::write(&risk, limits(10)).unwrap();
    let exchange = Server::exchange(EXCHANGE_ARGS);
    let (gateway, stderr) = gateway_with_stderr(exchange.addr, &risk);
    wait_line(&stderr, "fep_gateway: risk: 1 client(s) (alice)");
    let mut alice = RawClient::connect(gateway.addr);
    alice.handshake("alice");
    assert_eq!(order(&mut alice, 1, 10), Ok(()));
    assert_eq!(order(&mut alice, 2, 11), Err(ErrorCode::RiskLimit));

    // A good file: the next order on the same connection meets the new limit.
    std::fs::write(&risk, limits(20)).unwrap();
    gateway.signal(Signal::HUP);
    let (line, skipped) = wait_line(&stderr, "reloaded");
    assert!(line.contains("alice"), "{line}");
    assert!(skipped.is_empty(), "one line per reload: {skipped:?}");
    assert_eq!(order(&mut alice, 3, 20), Ok(()));
    assert_eq!(order(&mut alice, 4, 21), Err(ErrorCode::RiskLimit));

    // A bad file (two mistakes): one line names both; 20 still passes.
    std::fs::write(&risk, "max_qyt = 5\nmax_notional = 0\n[clients.alice]\n").unwrap();
    gateway.signal(Signal::HUP);
    let (line, skipped) = wait_line(&stderr, "kept the old limits");
    assert!(
        line.contains("max_qyt") && line.contains("max_notional"),
        "{line}"
    );
    assert!(skipped.is_empty(), "one line per bad reload: {skipped:?}");
    assert_eq!(order(&mut alice, 5, 20), Ok(()));
    assert_eq!(order(&mut alice, 6, 21), Err(ErrorCode::RiskLimit));
    // A missing file is a bad file too.
    std::fs::remove_file(&risk).unwrap();
    gateway.signal(Signal::HUP);
    let (line, skipped) = wait_line(&stderr, "kept the old limits");
    assert!(line.contains("cannot read"), "{line}");
    assert!(skipped.is_empty(), "one line per bad reload: {skipped:?}");
    assert_eq!(order(&mut alice, 7, 20), Ok(()));
    assert_eq!(order(&mut alice, 8, 21), Err(ErrorCode::RiskLimit));

    drop(alice);
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}
