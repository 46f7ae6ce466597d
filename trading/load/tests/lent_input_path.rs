//! The whole in-memory path with every read and handoff lent to its worker,
//! as the real driver lends them: the gateway stamps the 1 KiB pings and
//! pongs it forwards in the delivered bytes instead of copying them first.
//! With the loans settled before anything is written, every round trip
//! must be what the copying path gives, stamp for stamp, in s1, s2 and s3
//! (handoffs lent too), whole and with frames split across reads.

use fep_load::client::{ClientConfig, Load};
use fep_load::harness::{Harness, HarnessConfig};
use fep_load::scenario::{check, Expect, Scenario};

fn run(scenario: Scenario, read_chunk: usize, lend: bool) -> Harness {
    let client = ClientConfig {
        connections: 4,
        warmup: 20,
        count: 600,
        size: 1024,
        load: Load::Pipelined { inflight: 8 },
        trace_max: 10_000,
        ..Default::default()
    };
    let mut h = Harness::new(HarnessConfig {
        gateway: Some(scenario.gateway_config()),
        client,
        read_chunk,
        lend,
        ..Default::default()
    });
    h.run();
    let expect = Expect {
        pings: 620,
        rejects_allowed: false,
        losses_allowed: false,
        through_gateway: true,
        dials_may_fail: false,
    };
    let violations = check(h.client().service().report(), &expect);
    assert!(violations.is_empty(), "{scenario}: {violations:?}");
    h
}

#[test]
fn lent_reads_and_handoffs_give_the_round_trips_copying_gives() {
    for scenario in [Scenario::S1, Scenario::S2, Scenario::S3] {
        for read_chunk in [usize::MAX, 700] {
            let copied = run(scenario, read_chunk, false);
            let lent = run(scenario, read_chunk, true);
            let (want, got) = (
                copied.client().service().report(),
                lent.client().service().report(),
            );
            let case = format!("{scenario}, reads of {read_chunk}");
            assert_eq!(got.trace.len(), 620, "{case}");
            assert_eq!(got.trace, want.trace, "{case}");
            assert_eq!(got.corrupt, 0, "{case}");
            assert_eq!(lent.handoff_count, copied.handoff_count, "{case}");
            if scenario == Scenario::S3 {
                assert!(!lent.handoff_count.is_empty(), "{case}: handoffs were lent");
            }
        }
    }
}
