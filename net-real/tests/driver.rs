//! The real driver running the real services in one process: exchange,
//! gateway and client each on their own `fep_net::start`, on loopback.
//! The checks are `fep_load::scenario::check`, the body every driver
//! shares.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use fep_core::Nanos;
use fep_load::client::{Client, ClientConfig, Load, Report};
use fep_load::scenario::{check, Expect};
use fep_net::{Config, NetError, Readiness, Running, WriteMode};
use fep_trading::exchange::{Exchange, ExchangeConfig};
use fep_trading::gateway::{Gateway, GatewayConfig, Routing};

const READY_TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn exchange(config: Config) -> Running<Exchange> {
    let running = fep_net::start(config.listen(loopback()), |w| {
        Exchange::new(w, ExchangeConfig::default())
    })
    .expect("exchange starts");
    assert_eq!(running.wait_ready(READY_TIMEOUT), Readiness::Ready);
    running
}

fn gateway(
    upstream: SocketAddr,
    workers: u16,
    routing: Routing,
    mode: WriteMode,
) -> Running<Gateway> {
    let config = Config::new()
        .listen(loopback())
        .peers(vec![upstream])
        .workers(usize::from(workers))
        .write_mode(mode);
    let gw = GatewayConfig {
        workers,
        routing,
        ..GatewayConfig::default()
    };
    let running =
        fep_net::start(config, move |id| Gateway::new(id, gw.clone())).expect("gateway starts");
    assert_eq!(running.wait_ready(READY_TIMEOUT), Readiness::Ready);
    running
}

fn load(target: SocketAddr, client: ClientConfig) -> Report {
    let config = Config::new().peers(vec![target]);
    let workers = fep_net::run(config, move |_| Client::new(client.clone())).expect("client runs");
    let mut report = workers[0].service().report().clone();
    for w in &workers[1..] {
        report.merge(w.service().report());
    }
    report
}

fn pings(connections: u32, count: u64) -> ClientConfig {
    ClientConfig {
        connections,
        warmup: 100,
        count,
        trace_max: 1000,
        ..ClientConfig::default()
    }
}

fn assert_healthy(report: &Report, pings: u64, through_gateway: bool) {
    let expect = Expect {
        pings,
        rejects_allowed: false,
        losses_allowed: false,
        through_gateway,
        dials_may_fail: false,
    };
    let violations = check(report, &expect);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(report.pongs, pings);
}

fn stop<S: fep_core::Service + Send>(running: Running<S>) -> Vec<fep_net::Stopped<S>>
where
    S::Data: Send,
{
    running.shutdown();
    running.join().expect("workers stop cleanly")
}

/// Appends a client's `PerfPing` (stamped `t1 = 1`) to `out`, for the
/// raw-socket clients below.
fn push_ping(out: &mut Vec<u8>, seq: u64, pad: &[u8]) {
    fep_trading::msg::PerfPing::from_client(seq, Nanos(1), pad)
        .encode(fep_trading::msg::OP_PERF_PING, out);
}

/// Writes a client's hand-shake on a raw socket.
fn send_client_hello(sock: &mut std::net::TcpStream) {
    use std::io::Write;
    let mut bytes = Vec::new();
    fep_trading::msg::RoleHelloReq::new(fep_trading::Role::Client, "").encode(&mut bytes);
    sock.write_all(&bytes).unwrap();
}

#[test]
fn a_client_pings_the_exchange_directly() {
    let ex = exchange(Config::new());
    let report = load(ex.local_addr().unwrap(), pings(3, 2000));
    assert_healthy(&report, 2100, false);
    assert_eq!(report.direct, 2000);
    let workers = stop(ex);
    assert_eq!(workers[0].service().stats().pongs, 2100);
}

#[test]
fn every_scenario_keeps_order_and_loses_nothing_through_the_gateway() {
    let ex = exchange(Config::new().workers(2));
    for (workers, routing) in [
        (1, Routing::Local),
        (2, Routing::Local),
        (2, Routing::Handoff),
    ] {
        for mode in [
            WriteMode::Speculative,
            WriteMode::Deferred,
            WriteMode::Batched,
        ] {
            let gw = gateway(ex.local_addr().unwrap(), workers, routing, mode);
            let report = load(gw.local_addr().unwrap(), pings(10, 1000));
            assert_healthy(&report, 1100, true);
            let stopped = stop(gw);
            let stats: Vec<_> = stopped.iter().map(|w| w.service().stats()).collect();
            let handoffs: u64 = stats.iter().map(|s| s.handoffs).sum();
            assert_eq!(handoffs > 0, routing == Routing::Handoff, "{stats:?}");
            let io: Vec<_> = stopped.iter().map(|w| w.io).collect();
            let sent: u64 = io.iter().map(|io| io.handoffs_sent).sum();
            let received: u64 = io.iter().map(|io| io.handoffs_received).sum();
            assert_eq!((sent, received), (handoffs, handoffs), "{io:?}");
            let waits: u64 = io.iter().map(|io| io.deferred_waits).sum();
            assert_eq!(waits > 0, mode == WriteMode::Deferred, "{io:?}");
        }
    }
    stop(ex);
}

#[test]
fn pipelined_pings_cross_workers_in_order() {
    let ex = exchange(Config::new());
    let gw = gateway(
        ex.local_addr().unwrap(),
        2,
        Routing::Handoff,
        WriteMode::Speculative,
    );
    let client = ClientConfig {
        load: Load::Pipelined { inflight: 32 },
        size: 512,
        ..pings(4, 20_000)
    };
    let report = load(gw.local_addr().unwrap(), client);
    assert_healthy(&report, 20_100, true);
    stop(gw);
    stop(ex);
}

#[test]
fn small_socket_buffers_force_partial_writes_without_loss() {
    // 4 KiB buffers everywhere and 64 KiB of pings in flight per connection:
    // writes hit WouldBlock and resume on WRITABLE, mid-frame. The client
    // writes its first window in one go, four times what the kernel's
    // buffers on the way hold (16 KiB fitted, on a machine whose exchange
    // drained it as fast as it came).
    let small = Some(4096);
    let ex = exchange(Config::new().send_buffer(small).recv_buffer(small));
    let client = ClientConfig {
        load: Load::Pipelined { inflight: 64 },
        size: 1024,
        ..pings(2, 5_000)
    };
    let config = Config::new()
        .peers(vec![ex.local_addr().unwrap()])
        .send_buffer(small)
        .recv_buffer(small);
    let workers = fep_net::run(config, move |_| Client::new(client.clone())).unwrap();
    assert_healthy(workers[0].service().report(), 5_100, false);
    let client_io = workers[0].io;
    let exchange_io = stop(ex)[0].io;
    // The fallback was taken, on both sides, and nothing else went wrong.
    assert!(client_io.would_blocks > 0, "{client_io}");
    assert!(exchange_io.would_blocks > 0, "{exchange_io}");
    assert_eq!(exchange_io.lingers_expired, 0);
}

#[test]
fn every_worker_listens_on_the_one_resolved_port() {
    let ex = exchange(Config::new().workers(2));
    let addr = ex.local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    // Enough connections that both workers' listeners take some.
    let report = load(addr, pings(16, 500));
    assert_healthy(&report, 600, false);
    let accepted: Vec<u64> = stop(ex)
        .iter()
        .map(|w| w.service().stats().closed)
        .collect();
    assert_eq!(accepted.iter().sum::<u64>(), 16, "{accepted:?}");
}

#[test]
fn an_address_in_use_is_a_bind_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = fep_net::start(Config::new().listen(addr), |w| {
        Exchange::new(w, ExchangeConfig::default())
    })
    .unwrap_err();
    assert!(
        matches!(err, NetError::Bind { addr: a, .. } if a == addr),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with(&format!("cannot listen on {addr}: ")));
}

#[test]
fn a_cpu_that_does_not_exist_is_a_pin_error() {
    let config = Config::new().cpus(Some(vec![0, 4096]));
    let err = fep_net::start(config, |w| Exchange::new(w, ExchangeConfig::default())).unwrap_err();
    assert!(matches!(err, NetError::Pin { core: 4096, .. }), "{err}");
}

#[test]
fn zero_workers_is_a_config_error() {
    let err = fep_net::start(Config::new().workers(0), |w| {
        Exchange::new(w, ExchangeConfig::default())
    })
    .unwrap_err();
    assert!(matches!(err, NetError::Config { .. }), "{err}");
}

#[test]
fn an_unknown_congestion_control_is_a_config_error_naming_it() {
    let config = Config::new().tcp_congestion(Some("no-such-cc".to_owned()));
    let err = fep_net::start(config, |w| Exchange::new(w, ExchangeConfig::default())).unwrap_err();
    assert!(matches!(err, NetError::Config { .. }), "{err}");
    assert!(err.to_string().contains("\"no-such-cc\""), "{err}");
    assert!(!err.to_string().contains('\n'), "{err}");
}

#[test]
fn workers_serve_with_a_chosen_congestion_control() {
    let config = Config::new().tcp_congestion(Some("reno".to_owned()));
    let ex = exchange(config);
    let report = load(ex.local_addr().unwrap(), pings(2, 200));
    assert_healthy(&report, 300, false);
    stop(ex);
}

#[test]
fn pinned_workers_serve() {
    let ex = exchange(Config::new().workers(2).cpus(Some(vec![0])));
    let report = load(ex.local_addr().unwrap(), pings(2, 200));
    assert_healthy(&report, 300, false);
    stop(ex);
}

#[test]
fn a_refused_dial_reaches_the_service_and_the_run_ends() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let report = load(closed, pings(3, 10));
    assert_eq!(report.errors, 3);
    assert_eq!(report.connections_lost, 3);
    assert_eq!(report.sent, 0);
}

#[test]
fn connections_closed_before_the_hand_shake_are_counted_lost() {
    // A server that accepts and hangs up at once (a proxy out of
    // descriptors does that): no dial fails and no Error arrives, yet the
    // run had none of its connections.
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..3 {
            drop(listener.accept().unwrap());
        }
    });
    let report = load(addr, pings(3, 10));
    server.join().unwrap();
    assert_eq!(report.connections_lost, 3);
    assert_eq!((report.errors, report.sent), (0, 0));
}

#[test]
fn a_gateway_without_its_exchange_is_not_ready_and_still_shuts_down() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = Config::new()
        .listen(loopback())
        .peers(vec![closed])
        .drain_timeout(Duration::from_millis(200));
    let running = fep_net::start(config, |id| Gateway::new(id, GatewayConfig::default())).unwrap();
    assert_eq!(
        running.wait_ready(Some(Duration::from_millis(100))),
        Readiness::TimedOut
    );
    let workers = stop(running);
    assert!(!workers[0].service().upstream_up());
}

#[test]
fn busy_polling_serves_like_sleeping() {
    let ex = exchange(Config::new().busy_poll(true));
    let report = load(ex.local_addr().unwrap(), pings(1, 500));
    assert_healthy(&report, 600, false);
    stop(ex);
}

#[test]
fn a_finished_client_stops_without_a_signal() {
    // `run` returns only because the client's service said it is done.
    let ex = exchange(Config::new());
    let report = load(ex.local_addr().unwrap(), pings(1, 1));
    assert_eq!(report.pongs, 101);
    stop(ex);
}

/// 200 clients with 16 pings of 1 KiB in flight each (3.2 MB) through a
/// gateway and an exchange whose output bound is 64 KiB, with 4 KiB socket
/// buffers: the one upstream connection cannot hold what the clients send.
/// The gateway stops reading its clients while the upstream is backlogged
/// (and the exchange its peer while the pongs are), rather than piling it
/// up until the bound cuts the upstream and every ping in flight with it.
#[test]
fn a_backlogged_upstream_pauses_the_clients_instead_of_being_cut() {
    let small = fep_core::WorkerConfig {
        output_backlog_max: 64 * 1024,
        ..fep_core::WorkerConfig::default()
    };
    let tight = || {
        Config::new()
            .worker_config(small)
            .send_buffer(Some(4096))
            .recv_buffer(Some(4096))
    };
    let ex = exchange(tight());
    let config = tight()
        .listen(loopback())
        .peers(vec![ex.local_addr().unwrap()]);
    let gw = fep_net::start(config, |id| Gateway::new(id, GatewayConfig::default())).unwrap();
    assert_eq!(gw.wait_ready(READY_TIMEOUT), Readiness::Ready);
    let client = ClientConfig {
        load: Load::Pipelined { inflight: 16 },
        size: 1024,
        ..pings(200, 20_000)
    };
    let report = load(gw.local_addr().unwrap(), client);
    assert_healthy(&report, 20_100, true);
    assert_eq!(report.connections_lost, 0);
    let gateway_io = stop(gw)[0].io;
    let exchange_io = stop(ex)[0].io;
    assert!(
        gateway_io.input_pauses > 0,
        "the gateway never paused: {gateway_io}"
    );
    assert_eq!(gateway_io.dialed, 1, "the upstream was never cut");
    eprintln!("gateway: {gateway_io}\nexchange: {exchange_io}");
}

#[test]
fn a_peer_that_stops_reading_is_cut_off_with_overloaded() {
    use std::io::{Read, Write};
    let ex = exchange(Config::new());
    // A 256 KiB output bound and 4 KiB send buffers: the kernel hides little
    // of a stalled reader's backlog, so the bound is reached quickly.
    let worker = fep_core::WorkerConfig {
        output_backlog_max: 256 * 1024,
        ..fep_core::WorkerConfig::default()
    };
    let config = Config::new()
        .listen(loopback())
        .peers(vec![ex.local_addr().unwrap()])
        .worker_config(worker)
        .send_buffer(Some(4096));
    let gw = fep_net::start(config, |id| Gateway::new(id, GatewayConfig::default())).unwrap();
    assert_eq!(gw.wait_ready(READY_TIMEOUT), Readiness::Ready);
    // A raw client that hand-shakes and sends 2 MiB of pings, paced so the
    // upstream keeps up, and reads nothing until it has sent them all.
    let mut sock = std::net::TcpStream::connect(gw.local_addr().unwrap()).unwrap();
    send_client_hello(&mut sock);
    let mut bytes = Vec::new();
    let pad = vec![7u8; 1024];
    for burst in 0..64u64 {
        bytes.clear();
        for seq in 1..=32u64 {
            push_ping(&mut bytes, burst * 32 + seq, &pad);
        }
        sock.write_all(&bytes).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    // Meanwhile the gateway still serves a client that reads.
    let report = load(gw.local_addr().unwrap(), pings(2, 500));
    assert_healthy(&report, 600, true);
    // Now read: pongs, then Error{OVERLOADED}, then the end.
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    sock.read_to_end(&mut got).unwrap();
    let mut decoder = fep_core::Decoder::new(1 << 20);
    let mut frames = decoder.frames(&got);
    let mut pongs = 0;
    let mut last = None;
    while let Some(frame) = frames.next() {
        let frame = frame.unwrap();
        pongs += u64::from(frame.opcode == fep_trading::msg::OP_PERF_PONG);
        last = Some((frame.opcode, frame.payload.to_vec()));
    }
    let (opcode, payload) = last.expect("some frame came back");
    assert_eq!(opcode, fep_core::wire::OP_ERROR);
    let error = fep_core::wire::ErrorMsg::decode(&payload).unwrap();
    assert_eq!(
        error.code,
        fep_core::ErrorCode::Overloaded,
        "{}",
        error.reason
    );
    assert!(pongs > 0 && pongs < 2048, "{pongs} pongs before the cut");
    stop(gw);
    stop(ex);
}

/// A service with one deadline 3 ms after its start, done once it fired.
#[derive(Debug, Default)]
struct Alarm {
    at: Option<Nanos>,
    fired: Option<Nanos>,
    timeouts: u32,
}

impl fep_core::Service for Alarm {
    type Data = ();
    const HANDLERS: &'static [fep_core::Handler<Self>] = &[];

    fn on_start(&mut self, cx: &mut fep_core::Context<'_, Self>) {
        self.at = Some(cx.now() + Nanos::from_millis(3));
    }

    fn on_close(
        &mut self,
        _: &mut fep_core::Context<'_, Self>,
        _: fep_core::ConnId,
        _: fep_core::Session<()>,
    ) {
    }

    fn on_timeout(&mut self, cx: &mut fep_core::Context<'_, Self>) {
        self.timeouts += 1;
        if self.at.is_some_and(|at| cx.now() >= at) {
            self.fired = Some(cx.now());
        }
    }

    fn poll_timeout(&self) -> Option<Nanos> {
        self.at.filter(|_| self.fired.is_none())
    }

    fn is_done(&self) -> bool {
        self.fired.is_some()
    }
}

#[test]
fn the_driver_fires_the_service_deadline_on_time_with_no_other_input() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let workers = fep_net::run(Config::new(), |_| Alarm::default()).unwrap();
        let _ = tx.send(workers.into_iter().next().unwrap().worker.into_service());
    });
    let alarm = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the deadline fired and the worker stopped");
    let (at, fired) = (alarm.at.unwrap(), alarm.fired.unwrap());
    assert!(fired >= at, "fired at {fired:?}, before {at:?}");
    // timerfd wakes to the nanosecond; a loaded machine adds scheduling.
    assert!(
        fired - at < Nanos::from_millis(100),
        "fired {:?} late",
        fired - at
    );
    assert!(
        alarm.timeouts <= 2,
        "{} wake-ups for one deadline",
        alarm.timeouts
    );
}

#[test]
fn a_full_handoff_mailbox_holds_the_bytes_until_the_target_drains_it() {
    // A mailbox of one byte: every batch behind another waits in its
    // worker until the target drained the mailbox and woke it. Nothing is
    // shed, every ping is answered exactly once, in order.
    let ex = exchange(Config::new());
    let config = Config::new()
        .listen(loopback())
        .peers(vec![ex.local_addr().unwrap()])
        .workers(2)
        .handoff_mailbox_bytes(1);
    let gw_config = GatewayConfig {
        workers: 2,
        routing: Routing::Handoff,
        ..GatewayConfig::default()
    };
    let gw = fep_net::start(config, move |id| Gateway::new(id, gw_config.clone())).unwrap();
    assert_eq!(gw.wait_ready(READY_TIMEOUT), Readiness::Ready);
    let client = ClientConfig {
        load: Load::Pipelined { inflight: 64 },
        ..pings(8, 20_000)
    };
    let report = load(gw.local_addr().unwrap(), client);
    let stopped = stop(gw);
    let stats: Vec<_> = stopped.iter().map(|w| w.service().stats()).collect();
    assert_eq!(report.sent, report.pongs);
    assert_eq!(
        (
            report.rejects,
            report.lost,
            report.errors,
            report.corrupt,
            report.window_violations
        ),
        (0, 0, 0, 0, 0),
        "drain timeouts {} {stats:?}",
        report.drain_timeouts,
    );
    let io: Vec<_> = stopped.iter().map(|w| w.io).collect();
    let waits: u64 = io.iter().map(|io| io.handoff_waits).sum();
    assert!(waits > 0, "{io:?}");
    stop(ex);
}

#[test]
fn clients_paused_by_a_spent_credit_resume_when_the_answers_come_back() {
    // A credit of 64 KiB between two gateway workers (one read of a
    // client holds at most 16 KiB of pings): the clients routed
    // across pause and resume many times, and the resume comes with the
    // answers handed back, not with a socket event. Every ping is answered.
    let ex = exchange(Config::new());
    let config = Config::new()
        .listen(loopback())
        .peers(vec![ex.local_addr().unwrap()])
        .workers(2);
    let gw_config = GatewayConfig {
        workers: 2,
        routing: Routing::Handoff,
        handoff_inflight_bytes_max: 64 * 1024,
        ..GatewayConfig::default()
    };
    let gw = fep_net::start(config, move |id| Gateway::new(id, gw_config.clone())).unwrap();
    assert_eq!(gw.wait_ready(READY_TIMEOUT), Readiness::Ready);
    let client = ClientConfig {
        load: Load::Pipelined { inflight: 32 },
        size: 512,
        ..pings(16, 20_000)
    };
    let report = load(gw.local_addr().unwrap(), client);
    assert_healthy(&report, 20_100, true);
    assert_eq!(report.drain_timeouts, 0);
    let stopped = stop(gw);
    let pauses: u64 = stopped.iter().map(|w| w.io.input_pauses).sum();
    assert!(pauses > 0, "the credit never paused a client");
    stop(ex);
}

#[test]
fn a_dial_that_never_completes_fails_at_the_connect_timeout() {
    // A listener whose accept queue is full drops new SYNs: a dial to it
    // hangs until our connect timeout.
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&loopback().into()).unwrap();
    full.listen(0).unwrap();
    let addr = full.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<_> = (0..2)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()
        })
        .collect();
    assert!(!fillers.is_empty());
    let config = Config::new()
        .peers(vec![addr])
        .connect_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let workers = fep_net::run(config, |_| Client::new(pings(2, 10))).unwrap();
    assert_eq!(workers[0].service().report().errors, 2);
    assert_eq!(workers[0].io.dial_failures, 2);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

/// Worker 1 panics at its start; worker 0 would run forever.
#[derive(Debug, Default)]
struct Fragile;

impl fep_core::Service for Fragile {
    type Data = ();
    const HANDLERS: &'static [fep_core::Handler<Self>] = &[];

    fn on_start(&mut self, cx: &mut fep_core::Context<'_, Self>) {
        assert!(cx.worker().0 != 1, "worker 1 breaks an invariant");
    }

    fn on_close(
        &mut self,
        _: &mut fep_core::Context<'_, Self>,
        _: fep_core::ConnId,
        _: fep_core::Session<()>,
    ) {
    }
}

#[test]
fn a_worker_that_panics_stops_every_worker_and_is_reported() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = fep_net::run(Config::new().workers(2), |_| Fragile);
        let _ = tx.send(result.map(|w| w.len()));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the healthy worker stopped too");
    match result {
        Err(fep_net::NetError::WorkerPanicked { worker }) => assert_eq!(worker, 1),
        other => panic!("{other:?}"),
    }
}

/// An exchange with a 64 KiB output bound pauses its one client while the
/// pongs pile up, and must read it again once the writes that `WRITABLE`
/// brings drain them: the resume they queue is polled at once, not left
/// for some later, unrelated event (there is none: the paused client is
/// all the exchange has, and it waits for its pongs).
#[test]
fn an_exchange_paused_by_its_backlog_reads_again_once_writable_drains_it() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let small = fep_core::WorkerConfig {
        output_backlog_max: 64 * 1024,
        ..fep_core::WorkerConfig::default()
    };
    let ex = exchange(
        Config::new()
            .worker_config(small)
            .send_buffer(Some(4096))
            .recv_buffer(Some(4096)),
    );
    // A raw client with small socket buffers that sends 3,000 pings of
    // 4 KiB and reads nothing until its writes stop moving: the pongs fill
    // both kernels' buffers, then the exchange's backlog passes its bound
    // and the exchange must stop reading (a client that read along, as
    // loadgen does, let the exchange keep up on a fast machine).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&ex.local_addr().unwrap().into()).unwrap();
    let mut sock: std::net::TcpStream = socket.into();
    send_client_hello(&mut sock);
    const PINGS: u64 = 3_000;
    const SIZE: usize = 4096;
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let mut sock = sock.try_clone().unwrap();
        let written = Arc::clone(&written);
        std::thread::spawn(move || {
            let pad = vec![7u8; SIZE - 54];
            let mut bytes = Vec::new();
            for seq in 1..=PINGS {
                bytes.clear();
                push_ping(&mut bytes, seq, &pad);
                assert_eq!(bytes.len(), SIZE);
                sock.write_all(&bytes).unwrap();
                written.store(seq, Ordering::Release);
            }
        })
    };
    // Wait until the writes stop moving (the exchange stopped reading) or
    // all went out.
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = written.load(Ordering::Acquire);
        if now == last || now == PINGS {
            break;
        }
        last = now;
    }
    assert!(
        written.load(Ordering::Acquire) < PINGS,
        "the exchange held back"
    );
    // Now read every pong: the exchange resumes as its output drains.
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut decoder = fep_core::Decoder::new(1 << 20);
    let mut buf = vec![0u8; 64 * 1024];
    let mut pongs = 0u64;
    while pongs < PINGS {
        let n = sock.read(&mut buf).expect("pongs keep coming");
        assert!(n > 0, "the exchange closed after {pongs} pongs");
        let mut frames = decoder.frames(&buf[..n]);
        while let Some(frame) = frames.next() {
            let frame = frame.unwrap();
            if frame.opcode == fep_trading::msg::OP_PERF_PONG {
                pongs += 1;
            }
        }
    }
    writer.join().unwrap();
    let exchange_io = stop(ex)[0].io;
    assert!(
        exchange_io.input_pauses > 0,
        "the exchange never paused: {exchange_io}"
    );
}
