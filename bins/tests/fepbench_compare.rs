//! `fepbench compare A B` on result directories written here: the table,
//! the files, and the exit code CI gates on.

use std::path::Path;
use std::process::Command;

fn write_run(dir: &Path, n: usize, p99: f64) {
    let run = dir.join(format!("s1/2026112{n}T100000Z"));
    std::fs::create_dir_all(&run).unwrap();
    let json = format!(
        r#"{{"started_utc":"2026-11-29T10:00:00Z","partial":false,"partial_reason":null,
      "settings":{{"scenario":"s1","workers":1,"routing":"local","write_mode":"speculative","target":"gateway",
        "connections":10,"inflight":1,"size":64,"warmup":10,"count":100,"commands":[]}},
      "pinning":{{"plan":"none","reason":"requested","exchange_cpu":null,"gateway_cpus":[],"loadgen_cpu":null}},
      "machine":{{"cores":2,"kernel":"k","cpu_model":"c","git_commit":"abc"}},
      "scenario":"s1","connections":10,"inflight":1,"size":64,"count":100,"errors":0,"rejects":0,"lost":0,
      "drain_timeouts":0,"window_violations":0,"elapsed_s":1.0,"throughput_msgs_per_s":1000.0,
      "rtt":{{"p50_us":30,"p90_us":35,"p99_us":{p99},"p999_us":90,"max_us":400,"mean_us":31}},
      "hop1":null,"hop2":null,"hop3":null,"hop4":null}}"#
    );
    std::fs::write(run.join("summary.json"), json).unwrap();
}

fn compare(a: &Path, b: &Path, out: &Path, gate: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fepbench"))
        .arg("compare")
        .args([a, b])
        .args(["--fail-on", gate, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn a_significant_regression_past_the_gate_exits_1_and_noise_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let (a, slow, same) = (
        root.path().join("a"),
        root.path().join("slow"),
        root.path().join("same"),
    );
    for (i, v) in [50.0, 51.0, 49.5, 50.5, 50.2].into_iter().enumerate() {
        write_run(&a, i, v);
        write_run(&slow, i, v * 1.3);
        write_run(&same, i, [50.4, 49.8, 50.9, 49.6, 50.1][i]);
    }
    let out = compare(&a, &slow, &root.path().join("o1"), "p99:+10%");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Gate `p99:+10%`: FAILED by s1 p99."),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.path().join("o1/compare.json")).unwrap(),
    )
    .unwrap();
    let p99 = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "p99")
        .unwrap();
    assert_eq!(p99["verdict"], "regression");
    assert!(root.path().join("o1/compare.md").is_file());

    let out = compare(&a, &same, &root.path().join("o2"), "p99:+10%");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("~ (noise)"), "{text}");
}

#[test]
fn a_directory_without_runs_is_one_line_and_exit_2() {
    let root = tempfile::tempdir().unwrap();
    let out = compare(root.path(), root.path(), &root.path().join("o"), "p99:+10%");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
}
