//! CLI.md: every binary "exits non-zero with one clear line on stderr for
//! bad flags or an address it cannot bind", and has `--help` and
//! `--version`. The line must carry what is wrong: the missing argument,
//! the values allowed.

mod net_support;

use std::process::{Command, Output};

use net_support::{exchange_bin, gateway_bin, loadgen_bin};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_clear()
        .output()
        .expect("runs")
}

/// The one stderr line of a refused start.
fn refused(bin: &str, args: &[&str]) -> String {
    let out = run(bin, args);
    assert!(!out.status.success(), "{bin} {args:?} started");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{bin} {args:?}: {err}");
    err
}

#[test]
fn an_address_in_use_is_one_line_even_where_the_start_has_news() {
    // The gateway says which risk limits it enforces, but only once it has
    // started: a start that fails says only why.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let err = refused(gateway_bin(), &["--listen", &addr]);
    assert!(err.contains(&addr), "{err}");
    let err = refused(exchange_bin(), &["--listen", &addr]);
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn clap_errors_keep_what_is_missing_and_what_is_allowed_on_their_line() {
    let fepbench = env!("CARGO_BIN_EXE_fepbench");
    let fepsim = env!("CARGO_BIN_EXE_fepsim");
    let err = refused(fepbench, &["run"]);
    assert!(err.contains("<SCENARIO>"), "{err}");
    let err = refused(fepsim, &["sweep"]);
    assert!(err.contains("<SCENARIO>"), "{err}");
    let err = refused(fepbench, &[]);
    assert!(err.contains("subcommand"), "{err}");
    let err = refused(gateway_bin(), &["--write-mode", "sideways"]);
    assert!(
        err.contains("sideways") && err.contains("speculative"),
        "{err}"
    );
    let err = refused(exchange_bin(), &["--no-such-flag"]);
    assert!(err.contains("--no-such-flag"), "{err}");
    // The gateway's bounds say their range.
    for (flag, bad, range) in [
        ("--upstream-inflight-max", "0", "1..=4194304"),
        ("--handoff-bytes-max", "4096", "65536..=268435456"),
        ("--in-doubt-max", "2000000", "0..=1048576"),
    ] {
        let err = refused(gateway_bin(), &[flag, bad]);
        assert!(err.contains(flag) && err.contains(range), "{err}");
    }
}

#[test]
fn a_stats_interval_too_short_to_print_is_refused() {
    for interval in ["0s", "1us", "999us"] {
        let err = refused(loadgen_bin(), &["--interval", interval, "--count", "1"]);
        assert!(err.contains("1ms"), "{interval}: {err}");
    }
}

#[test]
fn every_binary_has_help_and_version() {
    for bin in [
        exchange_bin(),
        gateway_bin(),
        loadgen_bin(),
        env!("CARGO_BIN_EXE_fepbench"),
        env!("CARGO_BIN_EXE_fepsim"),
    ] {
        for flag in ["--help", "--version"] {
            let out = run(bin, &[flag]);
            assert!(out.status.success(), "{bin} {flag}");
            assert!(!out.stdout.is_empty(), "{bin} {flag}");
        }
    }
}
