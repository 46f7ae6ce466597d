//! The roles wired together in memory run s1, s2 and s3: routing, the
//! cross-worker handoff, per-session order, and hops that sum to the rtt.

use fep_core::WorkerId;
use fep_load::client::{Answer, ClientConfig, Load};
use fep_load::harness::{Harness, HarnessConfig};
use fep_load::scenario::{check, Expect, Scenario};
use fep_trading::gateway::{GatewayConfig, RouteTag};

fn run(scenario: Scenario, load: Load, read_chunk: usize) -> Harness {
    run_with(
        scenario,
        load,
        read_chunk,
        ClientConfig::default().size,
        false,
    )
}

/// As [`run`], with pings of `size` bytes, every read and handoff lent to
/// its worker when `lend` (as the real driver lends them).
fn run_with(scenario: Scenario, load: Load, read_chunk: usize, size: usize, lend: bool) -> Harness {
    let client = ClientConfig {
        connections: 4,
        warmup: 20,
        count: 400,
        size,
        load,
        trace_max: 10_000,
        ..Default::default()
    };
    let gateway = scenario.gateway_config();
    let mut h = Harness::new(HarnessConfig {
        gateway: Some(gateway),
        client,
        read_chunk,
        lend,
        ..Default::default()
    });
    h.run();
    let expect = Expect {
        pings: 420,
        rejects_allowed: false,
        losses_allowed: false,
        through_gateway: true,
        dials_may_fail: false,
    };
    let violations = check(h.client().service().report(), &expect);
    assert!(violations.is_empty(), "{scenario}: {violations:?}");
    h
}

fn tags(h: &Harness) -> Vec<(u32, RouteTag)> {
    let trace = &h.client().service().report().trace;
    trace
        .iter()
        .filter(|rt| rt.answer == Answer::Pong)
        .map(|rt| (rt.conn, RouteTag::from_bits(rt.route)))
        .collect()
}

#[test]
fn s1_routes_every_ping_through_the_single_worker() {
    let h = run(Scenario::S1, Load::Closed, usize::MAX);
    assert!(tags(&h)
        .iter()
        .all(|(_, t)| t.origin == WorkerId(0) && t.target == WorkerId(0)));
    assert!(h.handoff_count.is_empty());
    assert_eq!(h.gateway(0).service().stats().forwarded, 420);
}

#[test]
fn s2_keeps_every_ping_on_the_worker_that_owns_its_client() {
    let h = run(Scenario::S2, Load::Pipelined { inflight: 8 }, usize::MAX);
    let tags = tags(&h);
    assert!(
        tags.iter().all(|(_, t)| t.origin == t.target),
        "local routing never crosses workers"
    );
    assert!(tags.iter().any(|(_, t)| t.origin == WorkerId(0)));
    assert!(tags.iter().any(|(_, t)| t.origin == WorkerId(1)));
    assert!(h.handoff_count.is_empty());
}

#[test]
fn s3_hands_pings_to_the_worker_of_session_id_mod_workers_and_back() {
    let h = run(Scenario::S3, Load::Pipelined { inflight: 8 }, usize::MAX);
    let tags = tags(&h);
    let crossed = tags.iter().filter(|(_, t)| t.origin != t.target).count();
    assert!(crossed > 0, "some sessions cross workers");
    assert!(crossed < tags.len(), "some stay local");
    // Forward and return both cross: every crossing ping is two handoffs.
    let handoffs: u64 = h.handoff_count.values().sum();
    assert_eq!(handoffs, 2 * crossed as u64);
    assert!(h.handoff_count.contains_key(&(0, 1)) && h.handoff_count.contains_key(&(1, 0)));
    // One connection always takes the same path.
    for (conn, tag) in &tags {
        let first = tags.iter().find(|(c, _)| c == conn).unwrap().1;
        assert_eq!((first.origin, first.target), (tag.origin, tag.target));
    }
}

#[test]
fn pongs_come_back_in_send_order_per_connection_even_from_split_reads() {
    for scenario in Scenario::ALL {
        let h = run(scenario, Load::Pipelined { inflight: 16 }, 7);
        let trace = &h.client().service().report().trace;
        for conn in 0..4 {
            let seqs: Vec<u64> = trace
                .iter()
                .filter(|rt| rt.conn == conn)
                .map(|rt| rt.seq)
                .collect();
            assert!(!seqs.is_empty());
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "{scenario} conn {conn}: {seqs:?}"
            );
        }
    }
}

#[test]
fn hops_sum_to_the_rtt_for_every_round_trip() {
    let h = run(Scenario::S3, Load::Closed, usize::MAX);
    let trace = &h.client().service().report().trace;
    for rt in trace {
        let [t1, t2, t3, t4, t5] = rt.t.map(|t| t.as_u64());
        assert!(t1 < t2 && t2 < t3 && t3 < t4 && t4 < t5, "{rt:?}");
        assert_eq!((t2 - t1) + (t3 - t2) + (t4 - t3) + (t5 - t4), t5 - t1);
    }
}

#[test]
fn the_closed_loop_keeps_one_ping_in_flight_round_robin() {
    let h = run(Scenario::S1, Load::Closed, usize::MAX);
    let trace = &h.client().service().report().trace;
    let conns: Vec<u32> = trace.iter().map(|rt| rt.conn).collect();
    assert!(
        conns.windows(2).all(|w| w[1] == (w[0] + 1) % 4),
        "round robin"
    );
    // One in flight: each ping leaves after the previous answer arrived.
    assert!(trace.windows(2).all(|w| w[1].t[0] >= w[0].t[4]));
}

#[test]
fn a_direct_run_has_an_rtt_and_no_hops() {
    let client = ClientConfig {
        connections: 2,
        warmup: 0,
        count: 50,
        ..Default::default()
    };
    let mut h = Harness::new(HarnessConfig {
        gateway: None,
        client,
        ..Default::default()
    });
    h.run();
    let report = h.client().service().report();
    assert_eq!(report.pongs, 50);
    assert_eq!(report.direct, 50);
    assert!(report.hops.iter().all(|h| h.is_empty()));
    assert_eq!(report.rtt.len(), 50);
    assert!(
        report.send_lag.is_empty(),
        "closed loop has no schedule to lag"
    );
}

fn open_loop(rate_per_s: f64, window: u32) -> Harness {
    use fep_load::schedule::{Schedule, ScheduleConfig, Shape};
    let schedule =
        Box::new(Schedule::new(ScheduleConfig::fixed(rate_per_s, Shape::Constant)).unwrap());
    let client = ClientConfig {
        connections: 2,
        warmup: 0,
        count: 2_000,
        load: Load::Open { schedule, window },
        interval: Some(fep_core::Nanos::from_millis(1)),
        ..Default::default()
    };
    let mut h = Harness::new(HarnessConfig {
        client,
        ..Default::default()
    });
    h.run();
    h
}

#[test]
fn open_loop_sends_on_schedule_and_reports_the_intended_rate() {
    // 20k/s is one arrival per 50 µs; a round trip takes a few 1 µs steps.
    let h = open_loop(20_000.0, 8);
    let report = h.client().service().report();
    assert_eq!((report.sent, report.pongs, report.lost), (2_000, 2_000, 0));
    let intended = report.intended_rate_per_s().unwrap();
    assert!((intended - 20_000.0).abs() < 20.0, "intended {intended}");
    let elapsed = report.elapsed_secs();
    assert!(
        (elapsed - 0.1).abs() < 0.001,
        "2,000 arrivals at 20k/s take 100 ms, took {elapsed}"
    );
    // Keeping up: latency from the intended time is the path's own, and
    // every ping left on time (0 ns late, the histogram's floor is 1).
    assert!(report.rtt.max() < 20_000, "max rtt {} ns", report.rtt.max());
    assert_eq!(report.send_lag.len(), 2_000);
    assert_eq!(
        report.send_lag.max(),
        1,
        "a ping left late while keeping up"
    );
    let answers: u64 = report.intervals.iter().map(|i| i.answers).sum();
    assert!(report.intervals.len() >= 99, "one sample per ms");
    assert_eq!(answers, 2_000, "the intervals saw every answer");
}

#[test]
fn open_loop_latency_counts_from_the_intended_time_when_the_path_falls_behind() {
    // 2M/s is one arrival per 0.5 µs, faster than a round trip: pings queue
    // at the client and wait for window room; rtt must show that wait.
    let h = open_loop(2_000_000.0, 1);
    let report = h.client().service().report();
    assert_eq!(report.pongs, 2_000);
    let hops: f64 = report.hops.iter().map(|h| h.mean()).sum();
    assert!(
        report.rtt.mean() > 20.0 * hops,
        "rtt mean {} vs hops {hops}",
        report.rtt.mean()
    );
    assert!(report.rtt.max() > report.rtt.min() * 100);
    // The wait is the send lag: rtt = lag + the hops, ping by ping, so the
    // means add up too (within the histograms' 3 significant digits).
    assert_eq!(report.send_lag.len(), 2_000);
    let sum = report.send_lag.mean() + hops;
    assert!(
        (report.rtt.mean() - sum).abs() < report.rtt.mean() * 0.01,
        "rtt mean {} vs lag + hops {sum}",
        report.rtt.mean()
    );
}

#[test]
fn dials_are_paced_and_every_connection_gets_its_turn() {
    use fep_core::{ConnId, Effect, Nanos, Worker, WorkerConfig, WorkerId};
    use fep_load::client::{Client, DIALS_IN_FLIGHT_MAX};
    let config = ClientConfig {
        connections: 1_000,
        ..Default::default()
    };
    let mut w = Worker::new(WorkerId(0), WorkerConfig::default(), Client::new(config));
    let dials = |w: &mut Worker<Client>| -> Vec<ConnId> {
        std::iter::from_fn(|| w.poll_effect())
            .filter_map(|e| match e {
                Effect::Connect { conn, .. } => Some(conn),
                _ => None,
            })
            .collect()
    };
    w.start(Nanos(1));
    let first = dials(&mut w);
    assert_eq!(first.len(), DIALS_IN_FLIGHT_MAX);
    // Dials complete in any order: the handle says which one did.
    w.handle_connected(Nanos(2), first[3]);
    assert_eq!(dials(&mut w).len(), 1, "a finished dial starts the next");
    w.handle_connect_failed(Nanos(3), first[5]);
    assert_eq!(dials(&mut w).len(), 1, "so does a failed one");
    assert_eq!(w.service().report().errors, 1);
    // In memory, all 1,000 connect, hand-shake and carry pings.
    let client = ClientConfig {
        connections: 1_000,
        warmup: 0,
        count: 3_000,
        ..Default::default()
    };
    let mut h = Harness::new(HarnessConfig {
        client,
        ..Default::default()
    });
    h.run();
    let report = h.client().service().report();
    assert_eq!((report.pongs, report.errors), (3_000, 0));
}

#[test]
fn twenty_thousand_connections_open_with_at_most_64_dials_in_flight() {
    use fep_core::{Effect, Nanos, Worker, WorkerConfig, WorkerId};
    use fep_load::client::{Client, DIALS_IN_FLIGHT_MAX};
    use fep_trading::msg::RoleHelloAck;
    let mut ack = Vec::new();
    RoleHelloAck {
        role: 2,
        version: 1,
    }
    .encode(&mut ack);
    // Dial, connect and hand-shake every link. (How the cost grows with the
    // number of links is measured by benchmarks, not asserted in time here:
    // a timed test fails on a busy machine and passes a slow build.)
    let n = 20_000u32;
    let config = ClientConfig {
        connections: n,
        ..Default::default()
    };
    let mut w = Worker::new(WorkerId(0), WorkerConfig::default(), Client::new(config));
    w.start(Nanos(1));
    let mut pending: Vec<_> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut opened = 0;
    loop {
        pending.extend(
            std::iter::from_fn(|| w.poll_effect()).filter_map(|e| match e {
                Effect::Connect { conn, .. } => Some(conn),
                _ => None,
            }),
        );
        assert!(
            pending.len() <= DIALS_IN_FLIGHT_MAX,
            "{} dials at once",
            pending.len()
        );
        let Some(conn) = pending.pop() else { break };
        assert!(seen.insert(conn), "{conn:?} dialled twice");
        w.handle_connected(Nanos(2), conn);
        w.handle_read(Nanos(3), conn, &ack);
        opened += 1;
    }
    assert_eq!(opened, n);
    assert!(w.service().is_running());
}

#[test]
fn a_worker_pauses_only_the_clients_routed_through_a_spent_credit_and_resumes_them_at_a_quarter() {
    use fep_core::{Effect, InputGroup, Nanos, Worker, WorkerConfig};
    use fep_trading::gateway::{Gateway, Routing};
    use fep_trading::msg::{
        offset, PerfPing, RoleHelloAck, RoleHelloReq, OP_PERF_PING, OP_PERF_PONG,
    };
    let ping_len = 54;
    let config = GatewayConfig {
        workers: 2,
        routing: Routing::Handoff,
        // Half of it, four pings, pauses; a quarter, two, resumes.
        handoff_inflight_bytes_max: 8 * ping_len,
        ..Default::default()
    };
    let mut w = Worker::new(
        WorkerId(0),
        WorkerConfig::default(),
        Gateway::new(WorkerId(0), config),
    );
    w.start(Nanos(1));
    let up = std::iter::from_fn(|| w.poll_effect())
        .find_map(|e| match e {
            Effect::Connect { conn, .. } => Some(conn),
            _ => None,
        })
        .unwrap();
    w.handle_connected(Nanos(1), up);
    let mut bytes = Vec::new();
    RoleHelloAck {
        role: 3,
        version: 1,
    }
    .encode(&mut bytes);
    w.handle_read(Nanos(2), up, &bytes);
    // The upstream is session 0; session 1 routes to worker 1 (handoff),
    // session 2 to worker 0 (local).
    let remote = w.handle_accepted(Nanos(3)).unwrap();
    let local = w.handle_accepted(Nanos(3)).unwrap();
    bytes.clear();
    RoleHelloReq::new(fep_trading::Role::Client, "").encode(&mut bytes);
    w.handle_read(Nanos(4), local, &bytes);
    w.handle_read(Nanos(4), remote, &bytes);
    while w.poll_effect().is_some() {}
    let ping = |seq: u64| {
        let mut frame = Vec::new();
        PerfPing::from_client(seq, Nanos(5), &[]).encode(OP_PERF_PING, &mut frame);
        assert_eq!(frame.len(), ping_len);
        frame
    };
    let mut handed = Vec::new();
    let mut effects = Vec::new();
    for seq in 1..=4 {
        w.handle_read(Nanos(5), remote, &ping(seq));
        while let Some(e) = w.poll_effect() {
            if let Effect::Handoff { target } = e {
                assert_eq!(target, WorkerId(1));
                handed.extend_from_slice(w.handoff_buf(target));
                w.handle_handed_off(target);
            } else {
                effects.push(e);
            }
        }
    }
    assert_eq!(handed.len(), 4 * ping_len, "the pings went to worker 1");
    let to_worker_1 = InputGroup(1);
    assert_eq!(w.input_group(remote), Some(to_worker_1));
    assert_eq!(w.input_group(local), Some(InputGroup(0)));
    assert_eq!(
        effects,
        vec![Effect::PauseGroup { group: to_worker_1 }],
        "the fourth ping spent half the credit: the clients routed there \
         pause, with one effect"
    );
    // The local client is not held back by worker 1's credit.
    w.handle_read(Nanos(6), local, &ping(1));
    let local_effects: Vec<_> = std::iter::from_fn(|| w.poll_effect()).collect();
    assert!(
        !local_effects
            .iter()
            .any(|e| matches!(e, Effect::PauseGroup { .. })),
        "{local_effects:?}"
    );
    // Worker 1 answers the first: more than a quarter of the credit is
    // still out, so the group stays paused (no flapping per ping)...
    let pong_of = |ping: &[u8]| {
        let mut pong = ping.to_vec();
        pong[offset::OPCODE..offset::OPCODE + 2].copy_from_slice(&OP_PERF_PONG.to_be_bytes());
        pong
    };
    w.handle_handoff(Nanos(7), WorkerId(1), &pong_of(&handed[..ping_len]));
    let effects: Vec<_> = std::iter::from_fn(|| w.poll_effect()).collect();
    assert_eq!(effects, vec![Effect::Transmit { conn: remote }]);
    // ...and the second brings it to a quarter: the group resumes.
    w.handle_handoff(
        Nanos(8),
        WorkerId(1),
        &pong_of(&handed[ping_len..2 * ping_len]),
    );
    let effects: Vec<_> = std::iter::from_fn(|| w.poll_effect()).collect();
    assert!(
        effects.contains(&Effect::ResumeGroup { group: to_worker_1 }),
        "{effects:?}"
    );
    assert_eq!(w.service().stats().pongs, 2);
}

#[test]
fn connections_not_hand_shaked_by_the_deadline_are_given_up_and_the_run_goes_on() {
    use fep_core::{Effect, Nanos, Worker, WorkerConfig, WorkerId};
    use fep_load::client::Client;
    use fep_trading::msg::RoleHelloAck;
    let config = ClientConfig {
        connections: 3,
        warmup: 0,
        count: 2,
        handshake_timeout: Nanos::from_millis(5),
        ..Default::default()
    };
    let mut w = Worker::new(WorkerId(0), WorkerConfig::default(), Client::new(config));
    w.start(Nanos(0));
    let dials: Vec<_> = std::iter::from_fn(|| w.poll_effect())
        .filter_map(|e| match e {
            Effect::Connect { conn, .. } => Some(conn),
            _ => None,
        })
        .collect();
    let (answered, silent, late) = (dials[0], dials[1], dials[2]);
    w.handle_connected(Nanos(1), answered);
    w.handle_connected(Nanos(1), silent);
    // The third dial never completes; the second peer never acks.
    let mut ack = Vec::new();
    RoleHelloAck {
        role: 2,
        version: 1,
    }
    .encode(&mut ack);
    w.handle_read(Nanos(2), answered, &ack);
    while w.poll_effect().is_some() {}
    assert!(!w.service().is_running(), "still waiting for the others");
    assert_eq!(w.poll_timeout(), Some(Nanos::from_millis(5)));
    w.handle_timeout(Nanos::from_millis(5));
    let effects: Vec<_> = std::iter::from_fn(|| w.poll_effect()).collect();
    assert!(
        effects.contains(&Effect::Close { conn: silent }),
        "{effects:?}"
    );
    assert!(
        effects.contains(&Effect::Close { conn: late }),
        "the dial still under way is abandoned: {effects:?}"
    );
    assert!(
        w.service().is_running(),
        "the run goes on with the connection that answered"
    );
    assert!(
        effects.contains(&Effect::Transmit { conn: answered }),
        "a ping leaves on it"
    );
    let report = w.service().report();
    assert_eq!((report.connections_lost, report.errors), (2, 2));
    // The abandoned dial completing afterwards changes nothing.
    w.handle_connected(Nanos::from_millis(6), late);
    w.handle_connect_failed(Nanos::from_millis(6), late);
    assert_eq!(w.service().report().errors, 2);
    assert!(w.poll_effect().is_none());
}

/// With every read and handoff lent to its worker, as the real driver lends
/// them, the gateway stamps the 1 KiB pings and pongs it forwards in the
/// delivered bytes instead of copying them first. With the loans settled
/// before anything is written, every round trip is what the copying path
/// gives, stamp for stamp, in s1, s2 and s3 (handoffs lent too), whole and
/// with frames split across reads.
#[test]
fn lent_reads_and_handoffs_give_the_round_trips_copying_gives() {
    let load = || Load::Pipelined { inflight: 8 };
    for scenario in [Scenario::S1, Scenario::S2, Scenario::S3] {
        for read_chunk in [usize::MAX, 700] {
            let copied = run_with(scenario, load(), read_chunk, 1024, false);
            let lent = run_with(scenario, load(), read_chunk, 1024, true);
            let want = copied.client().service().report();
            let got = lent.client().service().report();
            let case = format!("{scenario}, reads of {read_chunk}");
            assert_eq!(got.trace.len(), 420, "{case}");
            assert_eq!(got.trace, want.trace, "{case}");
            assert_eq!(got.corrupt, 0, "{case}");
            assert_eq!(lent.handoff_count, copied.handoff_count, "{case}");
            if scenario == Scenario::S3 {
                assert!(!lent.handoff_count.is_empty(), "{case}: handoffs were lent");
            }
        }
    }
}
