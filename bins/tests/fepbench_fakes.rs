//! fepbench's orchestration against stand-in binaries (`--bin-dir`): the
//! order and flags it starts processes with, what it writes, and how it
//! reports a process that dies, and Ctrl-C. The real binaries are covered
//! by `fepbench_run.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fep_bins::bench::hgrm::{read_hgrm, write_hgrm};
use fep_bins::bench::summary::RunSummary;
use hdrhistogram::Histogram;

/// One script plays every binary, by the name it is called as.
const FAKE: &str = r#"#!/bin/sh
name=$(basename "$0")
echo "$name $*" >> "$FAKE_ARGS_LOG"
if [ -n "$FAKE_ENV_LOG" ]; then
  env | grep '^FEP_' | sort | tr '\n' ' ' | sed "s/^/$name: /" >> "$FAKE_ENV_LOG"
  echo >> "$FAKE_ENV_LOG"
fi
case "$name" in
  cc)
    # The C compiler: "compiles" the relay into a copy of this script.
    out=""; prev=""
    for a in "$@"; do
      if [ "$prev" = "-o" ]; then out="$a"; fi
      prev="$a"
    done
    cp "$0" "$out"
    ;;
  mock_exchange|fep_gateway|tokio_proxy|epoll_relay)
    if [ "$name" = "$FAKE_DIE" ]; then
      echo "fake $name: cannot bind 127.0.0.1:0 (address in use)" >&2
      exit 2
    fi
    case "$name" in
      mock_exchange) port=10001 ;;
      fep_gateway) port=9001 ;;
      epoll_relay) port=9003 ;;
      *) port=9002 ;;
    esac
    trap 'exit 0' TERM INT
    echo "ready 127.0.0.1:$port"
    while :; do sleep 0.05; done
    ;;
  loadgen)
    out=""; prev=""
    for a in "$@"; do
      if [ "$prev" = "--out" ]; then out="$a"; fi
      prev="$a"
    done
    for f in rtt hop1 hop2 hop3 hop4; do cp "$FAKE_HGRM" "$out/$f.hgrm"; done
    if [ -n "$FAKE_LOADGEN_WAIT" ]; then
      trap 'echo "$FAKE_JSON"; exit 0' INT
      echo "measuring"
      while :; do sleep 0.05; done
    fi
    echo "interval 1s rate=5000"
    echo "$FAKE_JSON"
    ;;
esac
"#;

const JSON: &str = r#"{"scenario":"s1","connections":10,"inflight":1,"size":64,"count":500,"errors":0,"rejects":0,"lost":0,"drain_timeouts":0,"window_violations":0,"elapsed_s":0.1,"throughput_msgs_per_s":5000.0,"rtt":{"p50_us":31.2,"p90_us":35.0,"p99_us":48.1,"p999_us":90.5,"max_us":410.0,"mean_us":32.0},"hop1":{"p50_us":8,"p90_us":9,"p99_us":12,"p999_us":20,"max_us":100,"mean_us":8},"hop2":null,"hop3":null,"hop4":null}"#;

struct Fakes {
    root: tempfile::TempDir,
}

impl Fakes {
    fn new() -> Fakes {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for name in [
            "mock_exchange",
            "fep_gateway",
            "tokio_proxy",
            "loadgen",
            "cc",
        ] {
            let path = bin.join(name);
            std::fs::write(&path, FAKE).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in 0..500u64 {
            hist.record(25_000 + i * 17).unwrap();
        }
        let mut file = std::fs::File::create(root.path().join("fixture.hgrm")).unwrap();
        write_hgrm(&hist, &mut file).unwrap();
        Fakes { root }
    }

    fn results(&self) -> PathBuf {
        self.root.path().join("results")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fepbench"));
        cmd.args(args)
            .arg("--bin-dir")
            .arg(self.root.path().join("bin"))
            .arg("--results")
            .arg(self.results())
            .arg("--no-progress")
            .env("FAKE_ARGS_LOG", self.root.path().join("args.log"))
            .env("FAKE_HGRM", self.root.path().join("fixture.hgrm"))
            .env("FAKE_JSON", JSON)
            // The baseline's C relay is "compiled" by the stand-in cc.
            .env("CC", self.root.path().join("bin/cc"))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        cmd.output().unwrap()
    }

    fn args_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.path().join("args.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The run directories below `dir` (those holding a summary.json).
fn run_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "summary.json") {
                found.push(d.clone());
            }
        }
    }
    found.sort();
    found
}

fn summary_in(dir: &Path) -> RunSummary {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn run_s3_starts_exchange_gateway_loadgen_in_order_and_writes_every_file() {
    let fakes = Fakes::new();
    let out = fakes.run(
        &[
            "run", "s3", "--count", "500", "--warmup", "100", "--pin", "none",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let log = fakes.args_log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log[0].starts_with("mock_exchange --listen 127.0.0.1:0"),
        "{}",
        log[0]
    );
    assert!(
        log[1].starts_with("fep_gateway --listen 127.0.0.1:0 --upstream 127.0.0.1:10001 --workers 2 --routing handoff"),
        "{}",
        log[1]
    );
    assert!(
        log[2].starts_with("loadgen --connect 127.0.0.1:9001"),
        "{}",
        log[2]
    );
    assert!(
        log[2].contains("--warmup 100 --count 500 --scenario s3 --json --progress --out "),
        "{}",
        log[2]
    );

    let dirs = run_dirs(&fakes.results().join("s3"));
    assert_eq!(dirs.len(), 1);
    let dir = &dirs[0];
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.len() == 16 && name.ends_with('Z') && name.as_bytes()[8] == b'T',
        "{name}"
    );
    for file in [
        "summary.json",
        "rtt.hgrm",
        "hop1.hgrm",
        "hop4.hgrm",
        "plot.svg",
        "mock_exchange.log",
        "fep_gateway.log",
        "loadgen.log",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    let summary = summary_in(dir);
    assert!(!summary.partial, "{:?}", summary.partial_reason);
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    assert_eq!(
        (
            summary.settings.workers,
            summary.settings.routing.as_deref()
        ),
        (2, Some("handoff"))
    );
    assert_eq!(summary.settings.commands.len(), 3);
    assert_eq!(summary.pinning.plan, "none");
    assert!(summary.machine.cores >= 1);
    assert_eq!(summary.loadgen.as_ref().unwrap().rtt.p50_us, 31.2);
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        raw["rtt"]["p99_us"], 48.1,
        "loadgen's keys at the top level"
    );
    let rtt = read_hgrm(std::fs::read(dir.join("rtt.hgrm")).unwrap().as_slice()).unwrap();
    assert_eq!(rtt.total_count, 500);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("rtt") && stdout.contains("31.2") && stdout.contains("hop1"),
        "{stdout}"
    );
}

#[test]
fn auto_pinning_is_recorded_with_its_reason_and_cpus_are_passed_on() {
    let fakes = Fakes::new();
    let out = fakes.run(&["run", "s2", "--count", "500", "--cpus", "0"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = summary_in(&run_dirs(&fakes.results())[0]);
    assert_eq!(summary.pinning.plan, "colocate");
    assert!(
        summary
            .pinning
            .reason
            .starts_with("auto: closed-loop latency on 1 CPU"),
        "{}",
        summary.pinning.reason
    );
    assert_eq!(summary.pinning.gateway_cpus, vec![0, 0]);
    let log = fakes.args_log();
    assert!(log[0].ends_with("--cpus 0"), "{}", log[0]);
    assert!(log[1].ends_with("--cpus 0,0"), "{}", log[1]);
}

#[test]
fn a_gateway_that_dies_before_ready_is_reported_with_its_stderr() {
    let fakes = Fakes::new();
    let started = Instant::now();
    let out = fakes.run(
        &["run", "s1", "--pin", "none"],
        &[("FAKE_DIE", "fep_gateway")],
    );
    assert!(started.elapsed() < Duration::from_secs(20), "no hang");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PARTIAL") && stdout.contains("cannot bind"),
        "{stdout}"
    );
    let summary = summary_in(&run_dirs(&fakes.results())[0]);
    assert!(summary.partial);
    let reason = summary.partial_reason.unwrap();
    assert!(
        reason.contains("fep_gateway exited before it was ready")
            && reason.contains("address in use"),
        "{reason}"
    );
    assert!(summary.loadgen.is_none());
    assert_eq!(fakes.args_log().len(), 2, "loadgen never started");
}

#[test]
fn a_missing_binary_is_a_clear_failure() {
    let fakes = Fakes::new();
    std::fs::remove_file(fakes.root.path().join("bin/loadgen")).unwrap();
    let out = fakes.run(&["run", "s1", "--pin", "none"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("loadgen: cannot start /"),
        "{}",
        text(&out)
    );
}

#[test]
fn ctrl_c_stops_cleanly_and_keeps_what_loadgen_measured_marked_partial() {
    interrupt_stops_cleanly(rustix::process::Signal::INT);
}

#[test]
fn a_closed_terminal_stops_the_children_like_ctrl_c() {
    interrupt_stops_cleanly(rustix::process::Signal::HUP);
}

fn interrupt_stops_cleanly(signal: rustix::process::Signal) {
    let fakes = Fakes::new();
    let child = fakes
        .command(&["run", "s1", "--pin", "none"])
        .env("FAKE_LOADGEN_WAIT", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fakes.args_log().iter().any(|l| l.starts_with("loadgen")) {
        assert!(Instant::now() < deadline, "loadgen never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, signal).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let summary = summary_in(&run_dirs(&fakes.results())[0]);
    assert!(summary.partial);
    assert_eq!(
        summary.partial_reason.as_deref(),
        Some("interrupted (Ctrl-C)")
    );
    assert_eq!(
        summary.loadgen.unwrap().count,
        500,
        "loadgen's answer to SIGINT is kept"
    );
    assert!(
        summary.warnings.is_empty(),
        "servers stopped cleanly: {:?}",
        summary.warnings
    );
}

#[test]
fn sweep_interleaves_scenarios_and_summarizes() {
    let fakes = Fakes::new();
    let out = fakes.run(
        &["sweep", "--runs", "2", "--count", "500", "--pin", "none"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let order: Vec<String> = fakes
        .args_log()
        .iter()
        .filter(|l| l.starts_with("loadgen"))
        .map(|l| {
            l.split("--scenario ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(order, ["s1", "s2", "s3", "s1", "s2", "s3"]);
    let sweeps: Vec<PathBuf> = std::fs::read_dir(fakes.results().join("sweeps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sweeps.len(), 1);
    assert_eq!(run_dirs(&sweeps[0]).len(), 6);
    let md = std::fs::read_to_string(sweeps[0].join("summary.md")).unwrap();
    assert!(md.contains("| s1 | 2 | rtt | 31.2 (31.2–31.2)"), "{md}");
    assert!(
        md.contains("| s2/s1 | 1.00 |") && md.contains("| s3/s1 | 1.00 |"),
        "{md}"
    );

    // summarize on its own over the same directory gives the same table.
    std::fs::remove_file(sweeps[0].join("summary.md")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fepbench"))
        .arg("summarize")
        .arg(&sweeps[0])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(sweeps[0].join("summary.md")).unwrap(),
        md
    );
}

#[test]
fn summarize_of_an_empty_dir_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fepbench"))
        .arg("summarize")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("fepbench: no summary.json below"),
        "{stderr}"
    );
}

/// The `--scenario` of each loadgen started, in order.
fn loadgen_scenarios(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.starts_with("loadgen"))
        .map(|l| {
            l.split("--scenario ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The one baseline directory under the results.
fn baseline_dir(fakes: &Fakes) -> PathBuf {
    let base: Vec<PathBuf> = std::fs::read_dir(fakes.results().join("baseline"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(base.len(), 1, "{base:?}");
    base.into_iter().next().unwrap()
}

const BASELINE_ARGS: [&str; 7] = [
    "baseline",
    "--count",
    "500",
    "--pipelined-count",
    "1000",
    "--pin",
    "none",
];

#[test]
fn baseline_runs_every_leg_in_one_placement_and_writes_the_ratios() {
    let fakes = Fakes::new();
    let out = fakes.run(&BASELINE_ARGS, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let log = fakes.args_log();
    assert_eq!(
        loadgen_scenarios(&log),
        [
            "direct",
            "tokio",
            "c-relay",
            "gateway",
            "deferred",
            "batched",
            "tokio-pipelined",
            "c-relay-pipelined",
            "gateway-pipelined",
            "batched-pipelined",
            "upstreams-pipelined"
        ]
    );
    let loadgens: Vec<&String> = log.iter().filter(|l| l.starts_with("loadgen")).collect();
    assert!(
        loadgens[0].starts_with("loadgen --connect 127.0.0.1:10001"),
        "direct: {}",
        loadgens[0]
    );
    assert!(
        loadgens[1].starts_with("loadgen --connect 127.0.0.1:9002"),
        "tokio: {}",
        loadgens[1]
    );
    assert!(
        loadgens[2].starts_with("loadgen --connect 127.0.0.1:9003"),
        "c-relay: {}",
        loadgens[2]
    );
    assert!(log.iter().any(|l| l.contains("--write-mode deferred")));
    assert!(log.iter().any(|l| l.contains("--write-mode batched")));
    // Every gateway leg says how many upstream connections it keeps: one,
    // but the upstreams-pipelined leg's eight.
    let gateways: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("fep_gateway"))
        .collect();
    assert_eq!(gateways.len(), 6, "{log:?}");
    for (i, gateway) in gateways.iter().enumerate() {
        let want = if i == 5 { 8 } else { 1 };
        assert!(
            gateway.contains(&format!("--upstream-connections {want}")),
            "{gateway}"
        );
    }
    for pipelined in [6, 7, 8, 9, 10] {
        assert!(
            loadgens[pipelined].contains("--connections 100 --inflight 30 --size 1024"),
            "{}",
            loadgens[pipelined]
        );
    }

    // The relay is compiled once, from the embedded source, into the
    // baseline directory, with -O2, and started as LISTEN UPSTREAM.
    let base = baseline_dir(&fakes);
    let compiles: Vec<&String> = log.iter().filter(|l| l.starts_with("cc ")).collect();
    assert_eq!(compiles.len(), 1, "{log:?}");
    assert_eq!(
        *compiles[0],
        format!(
            "cc -O2 -o {0}/epoll_relay {0}/epoll_relay.c",
            base.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(base.join("epoll_relay.c")).unwrap(),
        include_str!("../c/epoll_relay.c")
    );
    let relays: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("epoll_relay"))
        .collect();
    assert_eq!(
        relays, ["epoll_relay 127.0.0.1:0 127.0.0.1:10001"; 2],
        "{log:?}"
    );
    let relay_run = &run_dirs(&base.join("c-relay"))[0];
    assert!(relay_run.join("epoll_relay.log").is_file());
    let summary = summary_in(relay_run);
    assert_eq!(summary.settings.target, "c_relay");
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    // The kernel's TCP counters over the leg, where /proc has them.
    let proc_net = Path::new("/proc/net/netstat").exists();
    assert_eq!(summary.tcp.is_some(), proc_net, "{:?}", summary.tcp);

    let md = std::fs::read_to_string(base.join("baseline.md")).unwrap();
    if proc_net {
        for needle in [
            "TCP during the pipelined legs (the kernel's counters, system-wide)",
            "| leg | segments sent | retransmitted | SACK reorderings | DSACKs received | zero windows |",
            "| c-relay-pipelined | ",
            "| upstreams-pipelined | ",
        ] {
            assert!(md.contains(needle), "{needle} in\n{md}");
        }
        // Only the pipelined legs are in it.
        let tcp = &md[md.find("TCP during").unwrap()..];
        let tcp = &tcp[..tcp.find("\n\n| ").map_or(tcp.len(), |end| end)];
        for closed in ["| direct |", "| gateway |", "| deferred |", "| c-relay |"] {
            assert!(!tcp.contains(closed), "{closed} in\n{tcp}");
        }
    }
    for needle in [
        "| c-relay | 10 × 1 × 64 | 31.2 |",
        "| c-relay-pipelined | 100 × 30 × 1024 |",
        "| gateway/direct | 1.00 |",
        "| gateway/tokio | 1.00 |",
        "| gateway/c-relay | 1.00 | 1.00 |",
        "| deferred/gateway |",
        "| gateway-pipelined/tokio-pipelined | 1.00 |",
        "| gateway-pipelined/c-relay-pipelined | 1.00 |",
        "| upstreams-pipelined/c-relay-pipelined | 1.00 |",
        "upstreams-pipelined: the gateway with 8 upstream connections per worker",
        "Placement none: requested.",
    ] {
        assert!(md.contains(needle), "{needle} in\n{md}");
    }
    // Measured facts only: no targets or claims the tool cannot know.
    for claim in ["target", "claim"] {
        assert!(!md.contains(claim), "{claim} in\n{md}");
    }
    assert!(!md.contains("warning"), "{md}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| gateway/c-relay | 1.00 |"), "{stdout}");
}

#[test]
fn baseline_without_a_c_compiler_skips_the_relay_legs_with_a_warning() {
    let fakes = Fakes::new();
    let out = fakes.run(&BASELINE_ARGS, &[("CC", "/nonexistent/cc")]);
    assert!(
        out.status.success(),
        "the rest of the baseline still runs: {}",
        text(&out)
    );
    assert_eq!(
        loadgen_scenarios(&fakes.args_log()),
        [
            "direct",
            "tokio",
            "gateway",
            "deferred",
            "batched",
            "tokio-pipelined",
            "gateway-pipelined",
            "batched-pipelined",
            "upstreams-pipelined"
        ]
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let warning = "warning: c-relay legs skipped: cannot compile the C epoll relay: no C compiler: cannot run `/nonexistent/cc`";
    assert!(stdout.contains(warning), "{stdout}");
    let base = baseline_dir(&fakes);
    assert!(!base.join("c-relay").exists());
    let md = std::fs::read_to_string(base.join("baseline.md")).unwrap();
    assert!(
        md.contains(
            "> **warning**: c-relay legs skipped: cannot compile the C epoll relay: no C compiler"
        ),
        "{md}"
    );
    assert!(md.contains("| gateway/c-relay | – | – |"), "{md}");
    assert!(md.contains("| gateway/tokio | 1.00 |"), "{md}");
    assert!(!md.contains("| c-relay |"), "{md}");
}

#[test]
fn baseline_with_a_failing_compiler_skips_the_relay_legs_with_its_complaint() {
    let fakes = Fakes::new();
    let cc = fakes.root.path().join("bad-cc");
    std::fs::write(
        &cc,
        "#!/bin/sh\necho 'bad-cc: fatal error: no headers' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&cc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = fakes.run(&BASELINE_ARGS, &[("CC", cc.to_str().unwrap())]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("c-relay legs skipped")
            && stdout.contains("bad-cc: fatal error: no headers"),
        "{stdout}"
    );
    assert_eq!(loadgen_scenarios(&fakes.args_log()).len(), 9);
}

#[test]
fn baseline_with_the_real_cc_compiles_and_runs_the_relay() {
    let fakes = Fakes::new();
    // The system's C compiler (cargo links with it, so it is there); the
    // compiled relay is real, the rest are stand-ins.
    let out = fakes.run(&BASELINE_ARGS, &[("CC", "cc")]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("compiled the C epoll relay"), "{stdout}");
    let base = baseline_dir(&fakes);
    let binary = base.join("epoll_relay");
    assert!(
        binary.metadata().unwrap().permissions().mode() & 0o111 != 0,
        "executable"
    );
    let log = fakes.args_log();
    assert_eq!(loadgen_scenarios(&log).len(), 11, "{log:?}");
    for leg in ["c-relay", "c-relay-pipelined"] {
        let summary = summary_in(&run_dirs(&base.join(leg))[0]);
        assert!(!summary.partial, "{leg}: {:?}", summary.partial_reason);
        assert!(
            summary.warnings.is_empty(),
            "the real relay exits 0 on SIGTERM: {:?}",
            summary.warnings
        );
        assert_eq!(
            summary.settings.commands[1],
            "epoll_relay 127.0.0.1:0 127.0.0.1:10001"
        );
        // loadgen was sent to the port the real relay picked and printed.
        let connect = summary.settings.commands[2]
            .split("--connect ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        assert!(connect.starts_with("127.0.0.1:"), "{connect}");
        assert!(
            !["127.0.0.1:0", "127.0.0.1:9003", "127.0.0.1:10001"].contains(&connect.as_str()),
            "{connect}"
        );
    }
    let md = std::fs::read_to_string(base.join("baseline.md")).unwrap();
    assert!(md.contains("| gateway/c-relay | 1.00 | 1.00 |"), "{md}");
}

#[test]
fn a_leg_runs_with_its_flags_alone_whatever_fep_variables_fepbench_sees() {
    // Every process takes its flags from FEP_* variables too: these would
    // turn s1 into an order flow at a fixed rate with a token the gateway
    // does not know, behind settings that say otherwise.
    let fakes = Fakes::new();
    let env_log = fakes.root.path().join("env.log");
    let out = fakes.run(
        &["run", "s1", "--count", "500", "--warmup", "100"],
        &[
            ("FAKE_ENV_LOG", env_log.to_str().unwrap()),
            ("FEP_WORKLOAD", "orders"),
            ("FEP_RATE", "500"),
            ("FEP_TOKEN", "xyz"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let seen = std::fs::read_to_string(&env_log).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 3, "{seen}");
    for line in lines {
        // The lifeline is fepbench's own, and the only one.
        let (_, vars) = line.split_once(": ").unwrap();
        assert_eq!(vars.trim(), "FEP_LIFELINE=stdin", "{line}");
    }
}

#[test]
fn bad_flags_exit_non_zero_with_one_clear_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_fepbench"))
        .args(["run", "s9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "fepbench: unknown scenario \"s9\": use one of s1, s2, s3, o1, o2, o3"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_fepbench"))
        .args(["run", "s1", "--pin", "sideways"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sideways"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let fakes = Fakes::new();
    let out = fakes.run(&["run", "s1", "--tcp-congestion", "no-such-cc"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("fepbench: --tcp-congestion no-such-cc: not available here"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(fakes.args_log().is_empty(), "nothing was started");
}

#[test]
fn knee_probes_the_maximum_then_offers_fractions_of_it_in_open_loop() {
    let fakes = Fakes::new();
    // The stand-in loadgen always reports 5000 msgs/s: the probe's
    // maximum, and every step's achieved rate.
    let out = fakes.run(
        &[
            "knee",
            "s2",
            "--fractions",
            "0.5,1,1.2",
            "--step-seconds",
            "0.1",
            "--slo",
            "p99=100us",
            "--cpus",
            "0,1",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let loadgens: Vec<String> = fakes
        .args_log()
        .into_iter()
        .filter(|l| l.starts_with("loadgen"))
        .collect();
    assert_eq!(loadgens.len(), 4, "{loadgens:?}");
    assert!(
        loadgens[0].contains("--connections 10 --inflight 16") && !loadgens[0].contains("--rate"),
        "the probe is pipelined: {}",
        loadgens[0]
    );
    for (line, rate) in loadgens[1..].iter().zip(["2500", "5000", "6000"]) {
        assert!(line.contains(&format!("--rate {rate} ")), "{line}");
        assert!(line.contains("--inflight 1 "), "{line}");
    }
    let knee_dirs: Vec<PathBuf> = std::fs::read_dir(fakes.results().join("knee"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let dir = &knee_dirs[0];
    for file in ["knee.md", "knee.json", "knee.svg"] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let md = std::fs::read_to_string(dir.join("knee.md")).unwrap();
    assert!(md.contains("Maximum rate (probe"), "{md}");
    let system = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap();
    assert!(
        md.contains(&format!(", TCP congestion control {}", system.trim())),
        "{md}"
    );
    // 2500/s achieved 5000 (200%), 5000/s 100%, 6000/s 83%: p99 is 48.1
    // µs throughout, so the 6000 step fails on the achieved rate alone.
    assert!(md.contains("| s2 | 5000 |"), "{md}");
    // Open-loop steps on two CPUs leave placement to the scheduler.
    let step = summary_in(&run_dirs(&dir.join("s2/rate-5000"))[0]);
    assert_eq!(step.pinning.plan, "none");
    assert!(
        step.pinning.reason.contains("open-loop"),
        "{}",
        step.pinning.reason
    );
}

#[test]
fn knee_refuses_an_unknown_target_and_a_bad_slo_in_one_line() {
    let fakes = Fakes::new();
    for args in [
        &["knee", "s9", "--max", "1000"][..],
        &["knee", "s1", "--slo", "p99=fast"][..],
    ] {
        let out = fakes.run(args, &[]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(fakes.args_log().is_empty(), "nothing started: {args:?}");
    }
}

#[test]
fn baseline_places_closed_loop_legs_together_and_pipelined_legs_nowhere_on_two_cpus() {
    let fakes = Fakes::new();
    let out = fakes.run(
        &[
            "baseline",
            "--count",
            "500",
            "--pipelined-count",
            "1000",
            "--cpus",
            "0,1",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let base = baseline_dir(&fakes);
    let plan = |leg: &str| summary_in(&run_dirs(&base.join(leg))[0]).pinning;
    for leg in ["direct", "gateway", "c-relay"] {
        assert_eq!(plan(leg).plan, "colocate", "{leg}");
    }
    for leg in ["gateway-pipelined", "c-relay-pipelined", "tokio-pipelined"] {
        let p = plan(leg);
        assert_eq!(p.plan, "none", "{leg}");
        assert!(p.reason.contains("pipelined load"), "{}", p.reason);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("  placement colocate: auto: closed-loop"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  placement none: auto: pipelined"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(base.join("baseline.md")).unwrap();
    assert!(
        md.contains("| gateway-pipelined | 100 × 30 × 1024 |"),
        "{md}"
    );
    assert!(md.contains("| none |"), "{md}");
    assert!(md.contains("Placement colocate: auto: closed-loop"), "{md}");
    assert!(md.contains("Placement none: auto: pipelined"), "{md}");
}

#[test]
fn a_chosen_congestion_control_reaches_every_process_and_the_record() {
    let fakes = Fakes::new();
    let mut args = BASELINE_ARGS.to_vec();
    args.extend(["--runs", "1", "--tcp-congestion", "reno"]);
    let out = fakes.run(&args, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let log = fakes.args_log();
    for name in [
        "mock_exchange",
        "fep_gateway",
        "tokio_proxy",
        "epoll_relay",
        "loadgen",
    ] {
        let lines: Vec<&String> = log
            .iter()
            .filter(|l| l.starts_with(&format!("{name} ")))
            .collect();
        assert!(!lines.is_empty(), "{name} never started: {log:?}");
        for line in lines {
            let wanted = if name == "epoll_relay" {
                line.ends_with(" reno")
            } else {
                line.contains("--tcp-congestion reno")
            };
            assert!(wanted, "{line}");
        }
    }
    let dir = baseline_dir(&fakes);
    for run in run_dirs(&dir) {
        let settings = summary_in(&run).settings;
        assert_eq!(settings.tcp_congestion.as_deref(), Some("reno"));
    }
    let md = std::fs::read_to_string(dir.join("baseline.md")).unwrap();
    assert!(md.contains(", TCP congestion control reno."), "{md}");
}

#[test]
fn without_a_choice_the_record_names_the_systems_congestion_control() {
    let fakes = Fakes::new();
    let out = fakes.run(&["run", "s1", "--count", "500"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let system = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap();
    let summary = summary_in(&run_dirs(&fakes.results())[0]);
    assert_eq!(
        summary.settings.tcp_congestion.as_deref(),
        Some(system.trim())
    );
    assert!(
        fakes
            .args_log()
            .iter()
            .all(|l| !l.contains("--tcp-congestion")),
        "nothing is passed on"
    );
}
