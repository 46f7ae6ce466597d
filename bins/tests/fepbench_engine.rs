//! `fepbench engine` as a process: it ends when asked to, and when its
//! output goes away, instead of measuring on (or waiting) for good.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

fn engine(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fepbench"))
        .arg("engine")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("fepbench starts")
}

/// The first line of `child`'s stdout (printed once the stream is built).
fn first_line(child: &mut Child) -> (BufReader<std::process::ChildStdout>, String) {
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("reads");
    (out, line)
}

/// Waits up to `limit` for `child` to end; kills it past that.
fn ended_within(child: &mut Child, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if child.try_wait().expect("waits").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

#[test]
fn sigterm_ends_fepbench_engine_at_once() {
    // A no-op leg of 200,000 commands at 1,000/s alone lasts 200 s.
    let mut child = engine(&["--commands", "200000", "--rates", "1000", "--no-compare"]);
    let (_out, line) = first_line(&mut child);
    assert!(line.starts_with("fepbench engine:"), "{line}");
    let pid = Pid::from_child(&child);
    kill_process(pid, Signal::TERM).expect("signals");
    assert!(
        ended_within(&mut child, Duration::from_secs(10)),
        "still measuring 10 s after SIGTERM"
    );
}

#[test]
fn a_closed_stdout_ends_fepbench_engine() {
    let mut child = engine(&["--commands", "20000", "--no-compare"]);
    let (mut out, line) = first_line(&mut child);
    assert!(line.starts_with("fepbench engine:"), "{line}");
    // Closed once the legs are under way (the input is then being kept
    // mapped by its second thread), as `| head` closes it.
    let mut line = String::new();
    while !line.starts_with("  input:") {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("reads") > 0,
            "no input line"
        );
    }
    drop(out);
    assert!(
        ended_within(&mut child, Duration::from_secs(60)),
        "still running 60 s after its stdout closed"
    );
}
