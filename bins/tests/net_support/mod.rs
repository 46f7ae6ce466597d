//! Real processes for the end-to-end tests: start a binary on an ephemeral
//! loopback port, wait for its `ready <addr>` line, signal it, and talk to
//! it with a raw protocol client.

#![allow(dead_code)] // each test file uses its own subset

pub mod metrics;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fep_bins::bench::summary::LoadgenSummary;
use fep_core::wire::{ErrorMsg, RejectMsg, OP_ERROR, OP_REJECT};
use fep_core::{Decoder, ErrorCode, Nanos};
use fep_trading::msg::{PerfPing, RoleHelloReq, OP_PERF_PING, OP_PERF_PONG};
use rustix::process::{kill_process, Pid, Signal};

/// How long a process may take to print `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub fn exchange_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mock_exchange")
}

pub fn gateway_bin() -> &'static str {
    env!("CARGO_BIN_EXE_fep_gateway")
}

pub fn loadgen_bin() -> &'static str {
    env!("CARGO_BIN_EXE_loadgen")
}

/// A server process, killed if the test drops it still running.
pub struct Server {
    pub name: &'static str,
    pub child: Child,
    pub addr: SocketAddr,
    /// What it printed on stdout before `ready`.
    pub before_ready: Vec<String>,
}

impl Server {
    /// Starts `bin args…` and waits for its `ready <addr>` line.
    pub fn start(name: &'static str, bin: &str, args: &[&str]) -> Server {
        let mut child = Command::new(bin)
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut before_ready = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("ready ") {
                        let addr = addr.trim().parse().expect("ready <addr>");
                        return Server {
                            name,
                            child,
                            addr,
                            before_ready,
                        };
                    }
                    before_ready.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{name} printed no ready line");
                }
            }
        }
    }

    pub fn exchange(args: &[&str]) -> Server {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Server::start("mock_exchange", exchange_bin(), &all)
    }

    pub fn gateway(upstream: SocketAddr, args: &[&str]) -> Server {
        let upstream = upstream.to_string();
        let mut all = vec!["--listen", "127.0.0.1:0", "--upstream", &upstream];
        all.extend_from_slice(args);
        Server::start("fep_gateway", gateway_bin(), &all)
    }

    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).expect("a child pid is positive");
        kill_process(pid, signal).expect("signal the child");
    }

    /// SIGTERM, then the exit status (SIGKILL after `grace`).
    pub fn terminate(mut self, grace: Duration) -> ExitStatus {
        self.signal(Signal::TERM);
        self.wait(grace)
    }

    pub fn wait(&mut self, grace: Duration) -> ExitStatus {
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("{} did not exit within {grace:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs loadgen to completion and parses its `--json` line.
pub fn loadgen(target: SocketAddr, args: &[&str]) -> LoadgenSummary {
    let child = spawn_loadgen(target, args);
    finish_loadgen(child)
}

pub fn spawn_loadgen(target: SocketAddr, args: &[&str]) -> Child {
    Command::new(loadgen_bin())
        .arg("--connect")
        .arg(target.to_string())
        .arg("--json")
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start loadgen")
}

pub fn finish_loadgen(child: Child) -> LoadgenSummary {
    let stdout = finish_output(child);
    LoadgenSummary::from_stdout(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Waits for a successful loadgen and returns all it printed on stdout.
pub fn finish_output(child: Child) -> String {
    let out = child.wait_with_output().expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "loadgen failed: {stdout}");
    stdout
}

/// Loadgen's own accounting, and nothing lost, refused or reordered.
pub fn assert_clean(s: &LoadgenSummary) {
    let extra = |k: &str| s.extra[k].as_u64().unwrap_or_else(|| panic!("{k}"));
    assert_eq!(extra("sent"), extra("pongs") + s.rejects + s.lost, "{s:?}");
    assert_eq!(
        (
            s.errors,
            s.rejects,
            s.lost,
            s.drain_timeouts,
            s.window_violations
        ),
        (0, 0, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!((extra("corrupt"), extra("clock_skews")), (0, 0), "{s:?}");
}

/// The hop means add up to the rtt mean (3 significant digits each).
pub fn assert_hops_sum_to_rtt(s: &LoadgenSummary) {
    let hops: f64 = s
        .hops()
        .iter()
        .map(|h| h.expect("a gateway stamps every hop").mean_us)
        .sum();
    let rtt = s.rtt.mean_us;
    assert!(
        (hops - rtt).abs() <= rtt * 0.02 + 0.05,
        "hops {hops} vs rtt {rtt}"
    );
}

/// A raw protocol client over a blocking socket.
pub struct RawClient {
    pub sock: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
    /// Decoded frames not yet taken: (opcode, payload).
    frames: std::collections::VecDeque<(u16, Vec<u8>)>,
    eof: bool,
}

/// One decoded answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Pong { seq: u64, pad: Vec<u8>, t: [u64; 4] },
    Reject { code: ErrorCode, seq: u64 },
    Error { code: ErrorCode, reason: String },
    Other { opcode: u16, payload: Vec<u8> },
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let sock = TcpStream::connect(addr).expect("connect");
        sock.set_nodelay(true).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawClient {
            sock,
            decoder: Decoder::new(16 << 20),
            buf: vec![0; 64 * 1024],
            frames: Default::default(),
            eof: false,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("write");
    }

    /// Sends `RoleHelloReq` as a client and expects the ack.
    pub fn handshake(&mut self, token: &str) {
        self.send(&hello(1, 1, token));
        match self.next() {
            Some(Frame::Other { opcode, payload }) => {
                assert_eq!(opcode, fep_trading::msg::OP_ROLE_HELLO_ACK);
                assert_eq!(
                    payload,
                    [2, 0, 1],
                    "RoleHelloAck{{role: gateway, version: 1}}"
                );
            }
            other => panic!("expected RoleHelloAck, got {other:?}"),
        }
    }

    /// The next frame, or `None` at the end of the stream.
    pub fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some((opcode, payload)) = self.frames.pop_front() {
                return Some(decode(opcode, payload));
            }
            if self.eof {
                return None;
            }
            let n = match self.sock.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => panic!("read: {e}"),
            };
            if n == 0 {
                self.eof = true;
                continue;
            }
            let mut frames = self.decoder.frames(&self.buf[..n]);
            while let Some(frame) = frames.next() {
                let frame = frame.expect("the server frames correctly");
                self.frames
                    .push_back((frame.opcode, frame.payload.to_vec()));
            }
        }
    }

    /// Reads to the end; the frames in order.
    pub fn drain(&mut self) -> Vec<Frame> {
        std::iter::from_fn(|| self.next()).collect()
    }
}

fn decode(opcode: u16, payload: Vec<u8>) -> Frame {
    match opcode {
        OP_PERF_PONG => {
            let p = PerfPing::decode(OP_PERF_PONG, &payload).expect("a well-formed pong");
            Frame::Pong {
                seq: p.seq,
                pad: p.pad.to_vec(),
                t: [p.t1.0, p.t2.0, p.t3.0, p.t4.0],
            }
        }
        OP_REJECT => {
            let r = RejectMsg::decode(&payload).expect("a well-formed reject");
            Frame::Reject {
                code: r.code,
                seq: r.seq,
            }
        }
        OP_ERROR => {
            let e = ErrorMsg::decode(&payload).expect("a well-formed error");
            Frame::Error {
                code: e.code,
                reason: e.reason.to_owned(),
            }
        }
        opcode => Frame::Other { opcode, payload },
    }
}

/// A `RoleHelloReq` frame.
pub fn hello(role: u8, version: u16, token: &str) -> Vec<u8> {
    let mut out = Vec::new();
    RoleHelloReq {
        role,
        version,
        token,
    }
    .encode(&mut out);
    out
}

/// A `PerfPing` frame with `seq` and `pad`.
pub fn ping(seq: u64, pad: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_ping(&mut out, seq, pad);
    out
}

pub fn push_ping(out: &mut Vec<u8>, seq: u64, pad: &[u8]) {
    PerfPing::from_client(seq, Nanos(1), pad).encode(OP_PERF_PING, out);
}

/// A frame with any opcode and payload.
pub fn raw_frame(opcode: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    fep_core::frame::encode_frame(&mut out, opcode, payload);
    out
}
