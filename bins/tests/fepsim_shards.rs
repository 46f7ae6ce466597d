//! `fepsim sweep --shard I/N --json` and `fepsim merge` as a CI fleet runs
//! them: N shards merged give the unsharded sweep, seed for seed.

use std::process::Command;

use fep_bins::bench::simsweep::{merge_report, read_seed_lines, SeedLine};

fn fepsim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fepsim"))
        .args(args)
        .output()
        .unwrap()
}

fn sweep_lines(shard: &str) -> Vec<SeedLine> {
    let out = fepsim(&[
        "sweep",
        "s3",
        "--seeds",
        "10..22",
        "--pings",
        "60",
        "--faults",
        "all",
        "--vary",
        "--threads",
        "2",
        "--json",
        "--shard",
        shard,
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    read_seed_lines(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}"))
}

#[test]
fn three_shards_merged_by_fepsim_merge_equal_the_unsharded_sweep() {
    let whole = sweep_lines("1/1");
    assert_eq!(whole.len(), 12);
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut shards = Vec::new();
    for i in 1..=3 {
        let lines = sweep_lines(&format!("{i}/3"));
        assert!(lines.iter().all(|l| l.seed % 3 == i - 1), "shard {i}/3");
        let path = dir.path().join(format!("shard-{i}.jsonl"));
        let text: Vec<String> = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap())
            .collect();
        std::fs::write(&path, text.join("\n")).unwrap();
        files.push(path);
        shards.push(lines);
    }
    assert_eq!(merge_report(shards, Some(10..22)).unwrap().seeds, whole);

    let out = Command::new(env!("CARGO_BIN_EXE_fepsim"))
        .args(["merge", "--seeds", "10..22"])
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("s3: 12 seeds (10..=21)"), "{text}");
    let failed = whole.iter().filter(|l| !l.passed).count();
    assert_eq!(out.status.success(), failed == 0, "{text}");

    // A shard lost on the way is caught when the range is given.
    let out = Command::new(env!("CARGO_BIN_EXE_fepsim"))
        .args(["merge", "--seeds", "10..22"])
        .args(&files[..2])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("MISSING s3: 4 of 10..22"), "{text}");
}

#[test]
fn merge_exits_1_and_prints_the_replay_command_of_a_failed_seed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard.jsonl");
    std::fs::write(
        &path,
        r#"{"scenario":"s1","seed":4,"digest":"00000000000000ff","answered":9,"passed":false,"failure":"exactly_once: lost 1","replay":"fepsim run s1 --seed 4 --pings 10"}"#,
    )
    .unwrap();
    let out = fepsim(&["merge", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("reproduce: fepsim run s1 --seed 4 --pings 10"),
        "{text}"
    );
}

#[test]
fn a_bad_shard_flag_is_one_line_and_exit_2() {
    let out = fepsim(&["sweep", "s1", "--shard", "4/3"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("4/3"), "{err}");
}
