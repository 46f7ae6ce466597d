//! Many connections through the real processes: 2,000 pipelined clients
//! through fep_gateway to mock_exchange, every process started with the
//! usual soft limit of 1,024 open files. They must raise it themselves
//! (RLIMIT_NOFILE) and loadgen must pace its dials; every ping is answered.
//! With a hard limit too low for the run, loadgen refuses to start, in one
//! line, instead of failing half-way.

mod net_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fep_bins::bench::summary::LoadgenSummary;
use fep_bins::limits::NOFILE_SPARE;
use net_support::{assert_clean, exchange_bin, gateway_bin, loadgen_bin, Server};
use rustix::process::{getrlimit, Resource};

const CONNECTIONS: u64 = 2_000;
/// The soft limit most systems start processes with.
const USUAL_SOFT_LIMIT: u64 = 1_024;
const GRACE: Duration = Duration::from_secs(10);

/// `sh -c 'ulimit -Sn N; exec bin args…'`: `bin` starts with soft limit
/// N (the hard limit is inherited).
fn with_soft_limit(soft: u64, bin: &str) -> Vec<String> {
    vec![
        "-c".into(),
        format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""),
        bin.into(),
    ]
}

/// The soft limit of open files of process `pid`, from /proc.
fn soft_limit_of(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let soft = line.split_whitespace().nth(3).expect("a soft limit");
    soft.parse().unwrap_or(u64::MAX) // "unlimited"
}

#[test]
fn two_thousand_pipelined_connections_from_a_soft_limit_of_1024() {
    let hard = getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX);
    if hard < CONNECTIONS + NOFILE_SPARE {
        // This machine cannot run it: then loadgen must say so and refuse.
        return loadgen_refuses_a_hard_limit_below_the_need(hard);
    }
    let current = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let soft = current.min(USUAL_SOFT_LIMIT);
    let server = |name: &'static str, bin: &str, args: &[&str]| {
        let mut all = with_soft_limit(soft, bin);
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        Server::start(name, "/bin/sh", &all)
    };
    let exchange = server(
        "mock_exchange",
        exchange_bin(),
        &["--listen", "127.0.0.1:0"],
    );
    let upstream = exchange.addr.to_string();
    let gateway = server(
        "fep_gateway",
        gateway_bin(),
        &["--listen", "127.0.0.1:0", "--upstream", &upstream],
    );
    // Each server raised its limit past what 2,000 clients need.
    for s in [&exchange, &gateway] {
        let raised = soft_limit_of(s.child.id());
        assert!(
            raised >= CONNECTIONS + NOFILE_SPARE,
            "{}: soft limit {raised}",
            s.name
        );
    }
    let started = Instant::now();
    let out = Command::new("/bin/sh")
        .args(with_soft_limit(soft, loadgen_bin()))
        .args(["--connect", &gateway.addr.to_string(), "--json"])
        .args(["--connections", &CONNECTIONS.to_string()])
        .args(["--inflight", "4", "--size", "1024"])
        .args(["--warmup", "8000", "--count", "80000"])
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "loadgen failed: {stdout}");
    let summary = LoadgenSummary::from_stdout(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!(
        "{CONNECTIONS} connections from soft limit {soft}: {:.0} msgs/s, rtt p50 {:.0} us, \
         run {:.1?}",
        summary.throughput_msgs_per_s,
        summary.rtt.p50_us,
        started.elapsed()
    );
    // lost, errors, rejects, drain_timeouts, window_violations: all 0.
    assert_clean(&summary);
    assert_eq!(summary.connections, CONNECTIONS);
    assert_eq!(summary.extra["connections_lost"], 0, "{summary:?}");
    assert_eq!(summary.extra["pongs"], 88_000, "{summary:?}");
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

/// loadgen with a hard limit below its need: exit code 1 before any dial,
/// one stderr line with the numbers and how to raise the limit.
fn loadgen_refuses_a_hard_limit_below_the_need(hard: u64) {
    let out = Command::new(loadgen_bin())
        // Nothing listens there: a dial would fail, not hang.
        .args(["--connect", "127.0.0.1:9", "--json"])
        .args(["--connections", &CONNECTIONS.to_string()])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("loadgen runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("ulimit -Hn") && stderr.contains(&hard.to_string()),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn loadgen_refuses_to_start_when_the_hard_limit_is_too_low() {
    // A hard limit of 500 for loadgen alone (lowering it needs no
    // privilege); 1,000 connections need 1,064 descriptors.
    let out = Command::new("/bin/sh")
        .args(["-c", "ulimit -n 500 && exec \"$0\" \"$@\"", loadgen_bin()])
        .args([
            "--connect",
            "127.0.0.1:9",
            "--connections",
            "1000",
            "--json",
        ])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("loadgen runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "loadgen: 1000 connections need 1064 open files but the hard limit \
         (RLIMIT_NOFILE, `ulimit -Hn`) is 500; raise it, e.g. `ulimit -Hn 1064` as root \
         or a nofile line in /etc/security/limits.conf"
    );
    assert!(out.stdout.is_empty(), "no dial, no summary");
}
