//! `fepbench knee` end to end with the real mock_exchange, fep_gateway and
//! loadgen: a two-step schedule, kept to a few seconds for CI.

use std::process::{Command, Stdio};

#[test]
fn a_short_knee_of_s1_writes_its_table_json_and_plot_and_finds_a_sustained_rate() {
    let results = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fepbench"))
        .args([
            "knee",
            "s1",
            "--rates",
            "300,600",
            "--step-seconds",
            "0.5",
            "--warmup-seconds",
            "0.1",
            // Generous: a debug build on a shared, busy CI machine, where a
            // half-second step may well fall short of 95% of its rate.
            "--slo",
            "p50=1s",
            "--achieved-min",
            "0.5",
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
    let dirs: Vec<_> = std::fs::read_dir(results.path().join("knee"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1);
    let dir = &dirs[0];
    for file in [
        "knee.md",
        "knee.json",
        "knee.svg",
        "s1/rate-300/summary.json",
        "s1/rate-600/rtt.hgrm",
    ] {
        assert!(dir.join(file).is_file(), "{file}:\n{printed}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("knee.json")).unwrap()).unwrap();
    let curve = &json["curves"][0];
    assert_eq!(curve["name"], "s1");
    let points = curve["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for (p, rate) in points.iter().zip([300.0, 600.0]) {
        assert_eq!(p["offered_per_s"], rate);
        let achieved = p["achieved_per_s"].as_f64().unwrap();
        assert!(achieved > rate * 0.8 && achieved < rate * 1.2, "{p}");
        assert_eq!(p["failed_pings"], 0, "{p}");
        assert!(p["rtt"]["p50_us"].as_f64().unwrap() > 0.0);
    }
    let md = std::fs::read_to_string(dir.join("knee.md")).unwrap();
    assert_eq!(curve["sustainable_per_s"][0], 600.0, "{md}");
    let svg = std::fs::read_to_string(dir.join("knee.svg")).unwrap();
    assert!(
        svg.contains("rtt p99.9") && svg.contains("SLO p50"),
        "the plot's legend names its series"
    );
}
