//! The first 50 round trips of client-0, hop by hop, in simulated time, for
//! a fixed seed: s1, s2, s3, and s3 under a pinned fault plan. A change of
//! routing, stamping or driver shows up here as a reviewed diff. The columns
//! are described in `snapshots/README.md`.

use std::fmt::Write as _;

use fep_load::client::{Answer, RoundTrip};
use fep_load::scenario::Scenario;
use fep_sim::run::{run, RunConfig};
use fep_trading::gateway::RouteTag;

const SEED: u64 = 7;
const ROUND_TRIPS: usize = 50;

fn table(config: &RunConfig) -> String {
    let outcome = run(config);
    assert!(outcome.passed(), "{:#?}", outcome.first_failure());
    let mut out = String::new();
    let _ = writeln!(out, "# {}", config.command());
    let _ = writeln!(out, "# digest {:016x}", outcome.digest);
    let _ = writeln!(
        out,
        "{:>4} {:>4} {:>6} {:>20} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "seq", "conn", "path", "ans", "t1", "t2", "t3", "t4", "t5"
    );
    assert_eq!(outcome.round_trips.len(), ROUND_TRIPS);
    for rt in &outcome.round_trips {
        row(&mut out, rt);
    }
    out
}

fn row(out: &mut String, rt: &RoundTrip) {
    let path = if rt.route == 0 {
        "-".to_string()
    } else {
        let tag = RouteTag::from_bits(rt.route);
        format!("w{}>w{}", tag.origin.0, tag.target.0)
    };
    let answer = match rt.answer {
        Answer::Pong => "pong".to_string(),
        Answer::Reject(code) => code.name().to_string(),
    };
    let [t1, t2, t3, t4, t5] = rt.t.map(|t| t.as_u64());
    let _ = writeln!(
        out,
        "{:>4} {:>4} {path:>6} {answer:>20} {t1:>12} {t2:>12} {t3:>12} {t4:>12} {t5:>12}",
        rt.seq, rt.conn
    );
}

fn config(scenario: Scenario) -> RunConfig {
    RunConfig {
        pings: 200,
        round_trips: ROUND_TRIPS,
        ..RunConfig::new(scenario, SEED)
    }
}

#[test]
fn s1_hops() {
    insta::assert_snapshot!("s1_hops", table(&config(Scenario::S1)));
}

#[test]
fn s2_hops() {
    insta::assert_snapshot!("s2_hops", table(&config(Scenario::S2)));
}

#[test]
fn s3_hops() {
    insta::assert_snapshot!("s3_hops", table(&config(Scenario::S3)));
}

#[test]
fn s3_hops_with_the_exchange_crashing_and_a_link_held() {
    let config = RunConfig {
        faults: "crash@6+8,hold@3+4/1,slowhandoff@0+30"
            .parse()
            .expect("a valid plan"),
        ..config(Scenario::S3)
    };
    insta::assert_snapshot!("s3_faults_hops", table(&config));
}
