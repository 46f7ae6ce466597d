//! One seed, one trace: the digest of a run is the same in two separate
//! processes, and other seeds give other digests.
//!
//! The test re-runs its own binary as the child processes: a child (told so
//! by `FEP_SIM_DIGEST_OF`) runs one seed and prints the digest.

use std::process::Command;

use fep_load::scenario::Scenario;
use fep_sim::faults::FaultPlan;
use fep_sim::run::{run, RunConfig};

const CHILD_ENV: &str = "FEP_SIM_DIGEST_OF";
const TEST_NAME: &str = "one_seed_gives_one_digest_in_two_processes_and_other_seeds_others";

fn config(seed: u64) -> RunConfig {
    RunConfig {
        faults: FaultPlan::all(),
        pings: 400,
        ..RunConfig::new(Scenario::S3, seed)
    }
}

fn digest_in_child(seed: u64) -> String {
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, seed.to_string())
        .output()
        .expect("the test binary runs");
    assert!(out.status.success(), "child failed: {out:?}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    stdout
        .lines()
        .find_map(|l| l.split_once("DIGEST ").map(|(_, d)| d.trim()))
        .unwrap_or_else(|| panic!("no digest in the child's output:\n{stdout}"))
        .to_string()
}

#[test]
fn one_seed_gives_one_digest_in_two_processes_and_other_seeds_others() {
    if let Ok(seed) = std::env::var(CHILD_ENV) {
        let seed: u64 = seed.parse().expect("a seed");
        let outcome = run(&config(seed));
        println!("DIGEST {:016x} {}", outcome.digest, outcome.trace_lines);
        return;
    }
    let first = digest_in_child(42);
    let second = digest_in_child(42);
    assert_eq!(first, second, "seed 42 gave two traces");
    let here = run(&config(42));
    assert_eq!(
        first,
        format!("{:016x} {}", here.digest, here.trace_lines),
        "the parent's run of seed 42 differs from the children's"
    );
    let mut digests: Vec<String> = (43..47).map(digest_in_child).collect();
    digests.push(first);
    let count = digests.len();
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), count, "two seeds gave one trace");
}

#[test]
fn the_trace_text_hashes_to_the_digest() {
    let outcome = run(&RunConfig {
        keep_trace: true,
        ..config(7)
    });
    let text = outcome.trace.expect("kept");
    assert_eq!(fep_sim::trace::fnv1a64(text.as_bytes()), outcome.digest);
    assert_eq!(text.lines().count() as u64, outcome.trace_lines);
    assert!(text.contains("fault begin"), "the faults are in the trace");
    assert!(text.contains("handoff-out"), "s3 hands off");
}
