//! `fepbench run s1` end to end with the real mock_exchange, fep_gateway and
//! loadgen (built next to fepbench by cargo for this test).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use fep_bins::bench::hgrm::read_hgrm;
use fep_bins::bench::summary::RunSummary;

/// Runs `fepbench run SCENARIO [extra] --count 500 --warmup 100` into a
/// fresh results directory and asserts it succeeded with exactly one run;
/// returns the directory (kept alive), the run's directory and what
/// fepbench printed.
fn fepbench_run(scenario: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf, String) {
    let results = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fepbench"))
        .args(["run", scenario])
        .args(extra)
        .args([
            "--count",
            "500",
            "--warmup",
            "100",
            "--no-progress",
            "--results",
        ])
        .arg(results.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    let runs: Vec<_> = std::fs::read_dir(results.path().join(scenario))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let dir = runs[0].clone();
    (results, dir, printed)
}

#[test]
fn fepbench_run_s1_measures_end_to_end_and_stores_every_file() {
    let (_results, dir, printed) = fepbench_run("s1", &[]);
    for file in [
        "summary.json",
        "rtt.hgrm",
        "hop1.hgrm",
        "hop2.hgrm",
        "hop3.hgrm",
        "hop4.hgrm",
        "plot.svg",
        "mock_exchange.log",
        "fep_gateway.log",
        "loadgen.log",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}:\n{printed}",
            dir.display()
        );
    }

    let summary: RunSummary =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert!(!summary.partial, "{:?}", summary.partial_reason);
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    let loadgen = summary.loadgen.expect("loadgen's summary");
    assert_eq!(loadgen.scenario.as_deref(), Some("s1"));
    assert_eq!(loadgen.count, 500);
    assert_eq!((loadgen.errors, loadgen.rejects, loadgen.lost), (0, 0, 0));
    assert!(loadgen.rtt.p50_us > 0.0 && loadgen.rtt.p50_us <= loadgen.rtt.p99_us);
    assert!(
        loadgen.hops().iter().all(Option::is_some),
        "s1 goes through the gateway"
    );

    // The stored distribution is the one loadgen summarised.
    let rtt = read_hgrm(std::fs::read(dir.join("rtt.hgrm")).unwrap().as_slice()).unwrap();
    assert_eq!(rtt.total_count, 500);
    let p50 = rtt.value_at_quantile(0.5).unwrap();
    assert!(
        (p50 - loadgen.rtt.p50_us).abs() <= loadgen.rtt.p50_us * 0.01 + 0.01,
        "hgrm p50 {p50} vs json {}",
        loadgen.rtt.p50_us
    );
}

#[test]
fn fepbench_run_o1_with_wal_journals_in_the_run_and_probes_fsync() {
    let (_results, dir, printed) = fepbench_run("o1", &["--wal"]);
    let segments = std::fs::read_dir(dir.join("wal")).unwrap().count();
    assert!(
        segments >= 1,
        "a journal in the run's directory:\n{printed}"
    );
    let fsync = std::fs::read_to_string(dir.join("fsync.txt")).unwrap();
    assert!(fsync.starts_with("fsync probe"), "{fsync}");
    let log = std::fs::read_to_string(dir.join("mock_exchange.log")).unwrap();
    assert!(log.contains("wal:"), "the exchange journaled:\n{log}");
}
