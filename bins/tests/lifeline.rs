//! The lifeline: with `FEP_LIFELINE=stdin` a process stops when its stdin
//! closes, so fepbench's children do not outlive fepbench, even a
//! SIGKILLed one. (Every other test starts the servers with stdin at
//! `/dev/null` and no lifeline: they keep serving, which is the other half.)

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

const EXIT_WAIT: Duration = Duration::from_secs(15);

#[test]
fn a_server_stops_cleanly_when_its_lifeline_closes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock_exchange"))
        .args(["--listen", "127.0.0.1:0"])
        .env("FEP_LIFELINE", "stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("ready "), "{ready:?}");
    // Still serving while the parent lives.
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "stopped too early");

    drop(child.stdin.take());
    let deadline = Instant::now() + EXIT_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mock_exchange still runs {EXIT_WAIT:?} after its stdin closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stdin closed"), "{stderr}");
}

/// The pids of `pid`'s children, from every thread's `children` list.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Gone, or a zombie nobody has reaped yet: either way it runs no more.
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|s| s.trim_start().starts_with('Z')),
    }
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn children_do_not_outlive_a_killed_fepbench() {
    if !Path::new("/proc/self/task").is_dir() {
        eprintln!("skipped: no /proc");
        return;
    }
    let results = tempfile::tempdir().unwrap();
    let mut fepbench = Command::new(env!("CARGO_BIN_EXE_fepbench"))
        .args(["run", "s1", "--count", "100000000", "--no-progress"])
        .arg("--results")
        .arg(results.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // All three started: exchange, gateway, loadgen.
    let deadline = Instant::now() + Duration::from_secs(30);
    let children = loop {
        let children = children_of(fepbench.id());
        let names: Vec<String> = children.iter().map(|&p| comm(p)).collect();
        if names.iter().any(|n| n == "loadgen") && children.len() >= 3 {
            break children;
        }
        if let Some(status) = fepbench.try_wait().unwrap() {
            panic!("fepbench ended early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "fepbench never started its three children: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    let pid = Pid::from_raw(fepbench.id() as i32).unwrap();
    kill_process(pid, Signal::KILL).unwrap();
    fepbench.wait().unwrap();

    let deadline = Instant::now() + EXIT_WAIT;
    loop {
        let alive: Vec<(u32, String)> = children
            .iter()
            .filter(|&&p| !is_gone(p))
            .map(|&p| (p, comm(p)))
            .collect();
        if alive.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for (p, _) in &alive {
                let _ = kill_process(Pid::from_raw(*p as i32).unwrap(), Signal::KILL);
            }
            panic!("still running {EXIT_WAIT:?} after fepbench was killed: {alive:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
