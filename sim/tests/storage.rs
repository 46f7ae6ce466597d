//! The journal on turmoil's simulated filesystem: a host appends, writes,
//! syncs and acknowledges in bursts; the test crashes it at a seeded
//! moment, restarts it, and checks what recovery found against what was
//! acknowledged.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use fep_sim::seed;
use fep_sim::storage::{SimJournal, StorageConfig, StorageError};
use rand::Rng;

const SETTINGS: &[u8] = b"instruments=16 accounts=1024";
const DIR: &str = "/wal";

#[derive(Debug, Default)]
struct Observed {
    incarnations: u32,
    appended: u64,
    acked: u64,
    recovered: Option<Vec<u64>>,
    torn: bool,
    rereads: u32,
    errors: Vec<String>,
    after_error: Option<String>,
}

type Shared = Rc<RefCell<Observed>>;

fn payload(seq: u64) -> Vec<u8> {
    format!("cmd-{seq}-{}", "z".repeat((seq % 50) as usize)).into_bytes()
}

#[derive(Clone, Copy, Default)]
struct Disk {
    block_size: Option<u64>,
    io_error_probability: f64,
    corruption_probability: f64,
}

fn sim(seed: u64, disk: Disk) -> turmoil::Sim<'static> {
    let mut b = turmoil::Builder::new();
    b.rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(3600));
    if let Some(bs) = disk.block_size {
        b.fs().block_size(bs);
    }
    b.fs().io_error_probability(disk.io_error_probability);
    b.fs().corruption_probability(disk.corruption_probability);
    b.build()
}

/// The host: recover, then append/write/sync bursts forever, publishing
/// what it appended and what it acknowledged (what `sync` said is durable).
async fn journal_host(shared: Shared, seed: u64, settings: &'static [u8]) -> turmoil::Result {
    let incarnation = {
        let mut o = shared.borrow_mut();
        o.incarnations += 1;
        o.incarnations
    };
    let mut seqs = Vec::new();
    let opened = SimJournal::open(
        StorageConfig::new(DIR, settings),
        |_, _| {},
        |r| {
            assert_eq!(r.payload, payload(r.seq), "a record comes back as written");
            seqs.push(r.seq);
        },
    );
    let (mut journal, recovered) = match opened {
        Ok(x) => x,
        Err(e) => {
            shared.borrow_mut().errors.push(e.to_string());
            return Ok(());
        }
    };
    if incarnation > 1 {
        let mut o = shared.borrow_mut();
        o.recovered = Some(seqs);
        o.torn = recovered.torn.is_some();
        o.rereads = recovered.rereads;
    }
    let mut rng = seed::rng(seed, "journal", "burst", u64::from(incarnation));
    loop {
        if let Err(e) = burst(&mut journal, &shared, &mut rng).await {
            let mut o = shared.borrow_mut();
            o.errors.push(e.to_string());
            o.after_error = journal.append(b"late").err().map(|e| e.to_string());
            return Ok(());
        }
    }
}

async fn burst(
    journal: &mut SimJournal,
    shared: &Shared,
    rng: &mut impl Rng,
) -> Result<(), StorageError> {
    for _ in 0..rng.random_range(1..40) {
        let seq = journal.append(&payload(journal.seq_next()))?;
        shared.borrow_mut().appended = seq;
    }
    journal.write()?;
    // A crash while this sleeps finds the write unsynced: lost or torn.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let durable = journal.sync()?;
    shared.borrow_mut().acked = durable;
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}

/// Runs until the host was crashed at a seeded step and restarted, and
/// recovery ran; returns what was observed.
fn crash_and_recover(seed: u64, disk: Disk) -> (Observed, u64, u64) {
    let shared = Shared::default();
    let mut sim = sim(seed, disk);
    let host_shared = Rc::clone(&shared);
    sim.host("wal", move || {
        journal_host(Rc::clone(&host_shared), seed, SETTINGS)
    });
    let crash_at = seed::rng(seed, "test", "crash", 0).random_range(3..120);
    for _ in 0..crash_at {
        sim.step().unwrap();
    }
    let (acked, appended) = {
        let o = shared.borrow();
        (o.acked, o.appended)
    };
    sim.crash("wal");
    for _ in 0..50 {
        sim.bounce("wal");
        for _ in 0..3 {
            sim.step().unwrap();
        }
        if shared.borrow().recovered.is_some() {
            break;
        }
    }
    let observed = shared.take();
    (observed, acked, appended)
}

fn check_prefix(seqs: &[u64]) {
    assert!(
        seqs.iter().enumerate().all(|(i, &s)| s == i as u64 + 1),
        "recovered records are 1..=n in order"
    );
}

#[test]
fn a_crash_loses_exactly_the_unsynced_writes_when_writes_are_atomic() {
    let disk = Disk::default();
    for seed in 0..30 {
        let (o, acked, _) = crash_and_recover(seed, disk);
        let seqs = o.recovered.expect("recovered");
        check_prefix(&seqs);
        assert_eq!(
            seqs.len() as u64,
            acked,
            "seed {seed}: exactly the synced prefix"
        );
        assert!(o.errors.is_empty(), "seed {seed}: {:?}", o.errors);
    }
}

#[test]
fn torn_writes_never_lose_an_acknowledged_record_and_are_discarded_as_tails() {
    let disk = Disk {
        block_size: Some(512),
        ..Disk::default()
    };
    let mut torn_seen = 0;
    let mut unacked_kept = 0;
    for seed in 0..60 {
        let (o, acked, appended) = crash_and_recover(seed, disk);
        assert!(o.errors.is_empty(), "seed {seed}: {:?}", o.errors);
        let seqs = o.recovered.expect("recovered");
        check_prefix(&seqs);
        let n = seqs.len() as u64;
        assert!(
            n >= acked,
            "seed {seed}: acknowledged {acked}, recovered {n}"
        );
        assert!(
            n <= appended,
            "seed {seed}: recovered {n} of {appended} appended"
        );
        torn_seen += u32::from(o.torn);
        unacked_kept += u32::from(n > acked);
    }
    assert!(
        torn_seen > 0,
        "no seed tore a record: the test did not test tails"
    );
    assert!(unacked_kept > 0, "no seed kept a whole unsynced record");
}

#[test]
fn io_errors_surface_as_errors_and_stop_acknowledgement() {
    let disk = Disk {
        block_size: Some(512),
        io_error_probability: 0.05,
        ..Disk::default()
    };
    let mut failures = 0;
    let mut refused_after_error = 0;
    for seed in 0..20 {
        let shared = Shared::default();
        let mut sim = sim(seed, disk);
        let host_shared = Rc::clone(&shared);
        sim.host("wal", move || {
            journal_host(Rc::clone(&host_shared), seed, SETTINGS)
        });
        for _ in 0..500 {
            sim.step().unwrap();
            if !shared.borrow().errors.is_empty() {
                break;
            }
        }
        let (acked, errored) = {
            let o = shared.borrow();
            (o.acked, !o.errors.is_empty())
        };
        if !errored {
            continue;
        }
        failures += 1;
        if let Some(late) = &shared.borrow().after_error {
            // An error in a burst (not in opening): the journal refuses
            // every later append.
            assert!(late.contains("broken"), "seed {seed}: {late}");
            refused_after_error += 1;
        }
        // Nothing was acknowledged after the error; everything acknowledged
        // before it survives a crash (recovery may itself hit an I/O error
        // and is retried, as an operator would restart).
        sim.crash("wal");
        for _ in 0..100 {
            sim.bounce("wal");
            for _ in 0..3 {
                sim.step().unwrap();
            }
            if shared.borrow().recovered.is_some() {
                break;
            }
        }
        let o = shared.take();
        let seqs = o.recovered.expect("recovered within 100 restarts");
        check_prefix(&seqs);
        assert!(seqs.len() as u64 >= acked, "seed {seed}");
    }
    assert!(failures > 0, "no seed hit an I/O error");
    assert!(
        refused_after_error > 0,
        "no I/O error hit a running journal"
    );
}

#[test]
fn a_journal_written_with_other_settings_is_refused_after_a_restart() {
    let shared = Shared::default();
    let mut sim = sim(7, Disk::default());
    let host_shared = Rc::clone(&shared);
    sim.host("wal", move || {
        let settings: &'static [u8] = if host_shared.borrow().incarnations == 0 {
            SETTINGS
        } else {
            b"instruments=8"
        };
        journal_host(Rc::clone(&host_shared), 7, settings)
    });
    for _ in 0..20 {
        sim.step().unwrap();
    }
    assert!(shared.borrow().acked > 0);
    sim.crash("wal");
    sim.bounce("wal");
    sim.step().unwrap();
    let o = shared.take();
    assert!(o.recovered.is_none());
    assert_eq!(o.errors.len(), 1);
    assert!(o.errors[0].contains("other settings"), "{}", o.errors[0]);
}

#[test]
fn the_same_seed_crashes_and_recovers_the_same_way() {
    let disk = Disk {
        block_size: Some(512),
        ..Disk::default()
    };
    for seed in [3, 11] {
        let (a, acked_a, app_a) = crash_and_recover(seed, disk);
        let (b, acked_b, app_b) = crash_and_recover(seed, disk);
        assert_eq!((acked_a, app_a), (acked_b, app_b));
        assert_eq!(a.recovered, b.recovered);
        assert_eq!(a.torn, b.torn);
    }
}

#[test]
fn corrupt_reads_are_read_again_and_never_cost_an_acknowledged_record() {
    let disk = Disk {
        block_size: Some(512),
        corruption_probability: 0.3,
        ..Disk::default()
    };
    let mut rereads = 0;
    for seed in 0..40 {
        let (o, acked, appended) = crash_and_recover(seed, disk);
        // A damaged read believed as corruption refuses the start (and a
        // restart reads again); it must never truncate what was acked.
        let Some(seqs) = o.recovered else {
            panic!("seed {seed}: not recovered: {:?}", o.errors)
        };
        check_prefix(&seqs);
        let n = seqs.len() as u64;
        assert!(
            n >= acked,
            "seed {seed}: acknowledged {acked}, recovered {n}"
        );
        assert!(n <= appended, "seed {seed}");
        rereads += o.rereads;
    }
    assert!(
        rereads > 0,
        "no read was corrupted: the test did not test rereads"
    );
}
