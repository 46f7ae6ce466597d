//! The C epoll relay fepbench's baseline compiles (`bins/c/epoll_relay.c`)
//! carries real traffic: real loadgen → relay → real mock_exchange, every
//! ping answered, and the relay exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use fep_bins::bench::crelay;
use fep_bins::bench::summary::LoadgenSummary;

/// Starts `cmd` and reads its `ready <addr>` line.
fn start_ready(cmd: &mut Command) -> (Child, String, BufReader<ChildStdout>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("no ready line: {line:?}"))
        .trim()
        .to_string();
    (child, addr, out)
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    child.wait().unwrap()
}

#[test]
fn the_compiled_relay_carries_loadgen_to_the_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let relay = crelay::build(dir.path(), &crelay::compiler_command(Some("cc")))
        .expect("cc compiles the relay");

    let (mut exchange, exchange_addr, _ex_out) = start_ready(
        Command::new(env!("CARGO_BIN_EXE_mock_exchange")).args(["--listen", "127.0.0.1:0"]),
    );
    let (mut relay, relay_addr, _relay_out) =
        start_ready(Command::new(&relay).args(["127.0.0.1:0", &exchange_addr]));
    assert_ne!(relay_addr, "127.0.0.1:0", "the real port is printed");

    for (connections, inflight) in [("3", "1"), ("4", "8")] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args([
                "--connect",
                &relay_addr,
                "--connections",
                connections,
                "--inflight",
                inflight,
                "--warmup",
                "50",
                "--count",
                "500",
                "--json",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
        let summary = LoadgenSummary::from_stdout(last).unwrap();
        assert_eq!(summary.count, 500);
        assert_eq!(
            (summary.errors, summary.rejects, summary.lost),
            (0, 0, 0),
            "{last}"
        );
        assert_eq!(summary.window_violations, 0);
        assert!(summary.rtt.p50_us > 0.0);
    }

    assert!(
        terminate(&mut relay).success(),
        "the relay exits 0 on SIGTERM"
    );
    terminate(&mut exchange);
}
