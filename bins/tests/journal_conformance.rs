//! One journal, two drivers: the same appends through the real WAL thread
//! (`fep_net::wal`, real files) and through the simulated storage
//! (`fep_sim::storage`, turmoil's filesystem) leave byte-identical
//! segment files and recover the same records. The simulator therefore
//! tests the format and the rolling the real log writes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use fep_journal::limits::SEGMENT_SIZE_MIN;
use fep_journal::AppendAt;
use fep_net::wal::{self, Wal, WalConfig};
use fep_sim::storage::{SimJournal, StorageConfig};

const SETTINGS: &[u8] = b"instruments=4 accounts=8 cash=100 units=10";
const RECORDS: u64 = 500;

type Files = BTreeMap<String, Vec<u8>>;
/// What an arm leaves: its files and the records it recovered.
type Outcome = (Files, Vec<u64>);

/// Records of many sizes, some large enough that the journal rolls.
fn payload(seq: u64) -> Vec<u8> {
    let len = if seq % 97 == 0 {
        400_000
    } else {
        (seq % 200) as usize
    };
    (0..len).map(|i| (seq as usize + i) as u8).collect()
}

/// Sync points: after every `seq % 7 == 0` record.
fn syncs_after(seq: u64) -> bool {
    seq % 7 == 0
}

fn real_arm() -> Outcome {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = WalConfig::new(dir.path(), SETTINGS).segment_size(SEGMENT_SIZE_MIN);
    let wal = Wal::start(
        config.clone(),
        AppendAt::NewSegment { seq_next: 1 },
        Box::new(|_| {}),
    )
    .unwrap();
    for seq in 1..=RECORDS {
        assert_eq!(wal.append(&payload(seq)).unwrap(), seq);
        if syncs_after(seq) {
            while wal.durable_seq() < seq {
                std::thread::yield_now();
            }
        }
    }
    wal.shutdown().unwrap();
    let mut files = Files::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        files.insert(name, std::fs::read(entry.path()).unwrap());
    }
    let mut seqs = Vec::new();
    wal::recover(
        &config,
        |_, _| {},
        |r| {
            assert_eq!(r.payload, payload(r.seq));
            seqs.push(r.seq);
        },
    )
    .unwrap();
    (files, seqs)
}

fn sim_arm() -> Outcome {
    let out: Rc<RefCell<Option<Outcome>>> = Rc::default();
    let mut b = turmoil::Builder::new();
    b.rng_seed(1)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .tick_duration(Duration::from_millis(1));
    let mut sim = b.build();
    let host_out = Rc::clone(&out);
    sim.client("journal", async move {
        let config = StorageConfig::new("/wal", SETTINGS);
        let (mut j, _) = SimJournal::open(config.clone(), |_, _| {}, |_| {})?;
        for seq in 1..=RECORDS {
            assert_eq!(j.append(&payload(seq))?, seq);
            if syncs_after(seq) {
                assert_eq!(j.sync()?, seq);
            }
        }
        j.sync()?;
        drop(j);
        let mut files = Files::new();
        for entry in turmoil::fs::shim::std::fs::read_dir("/wal")? {
            let entry = entry?;
            let name = entry.file_name().into_string().unwrap();
            files.insert(name, turmoil::fs::shim::std::fs::read(entry.path())?);
        }
        let mut seqs = Vec::new();
        SimJournal::open(config, |_, _| {}, |r| seqs.push(r.seq))?;
        *host_out.borrow_mut() = Some((files, seqs));
        Ok(())
    });
    sim.run().unwrap();
    out.take().expect("the simulated arm ran")
}

#[test]
fn the_real_and_the_simulated_journal_write_the_same_bytes() {
    let (real_files, real_seqs) = real_arm();
    let (sim_files, sim_seqs) = sim_arm();
    let sizes: Vec<_> = real_files.iter().map(|(n, b)| (n, b.len())).collect();
    assert!(real_files.len() >= 3, "the journal rolled: {sizes:?}");
    assert_eq!(
        real_files.keys().collect::<Vec<_>>(),
        sim_files.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &real_files {
        assert!(
            sim_files[name] == *bytes,
            "{name} differs between the drivers"
        );
    }
    assert_eq!(real_seqs, (1..=RECORDS).collect::<Vec<_>>());
    assert_eq!(sim_seqs, real_seqs);
}
