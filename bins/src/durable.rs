//! `mock_exchange --wal DIR`: rebuild the engine from its journal before
//! the exchange starts, and keep the next recovery short.
//!
//! Recovery reads the newest snapshot, then replays every later durable
//! record through the same engine, so the state is exactly the one after
//! the last durable request. When it replayed more than
//! [`SNAPSHOT_AFTER_RECORDS`] records it writes a snapshot of that state
//! (durable by construction: everything in it was read from the disk) and
//! deletes the segments the snapshot covers, so a journal's replay is
//! bounded by what one run adds.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fep_engine::{Command, Engine, Event, EventSink};
use fep_journal::{AppendAt, Record};
use fep_net::wal::{self, WalConfig, WalSync};

/// Replayed records past which recovery writes a snapshot and prunes.
pub const SNAPSHOT_AFTER_RECORDS: u64 = 100_000;

/// An event sink that keeps nothing: replay wants the state, not the
/// events.
struct Discard;

impl EventSink for Discard {
    fn push(&mut self, _: Event) {}
}

/// What recovery rebuilt.
#[derive(Debug)]
pub struct RecoveredEngine {
    /// The engine after the last durable request.
    pub engine: Engine,
    /// The last durable record's number (0: an empty journal).
    pub seq_last: u64,
    /// Where the log appends next.
    pub append_at: AppendAt,
    /// Requests replayed after the snapshot.
    pub replayed: u64,
    /// The snapshot the state started from.
    pub snapshot_seq: Option<u64>,
    /// How long reading and replaying took.
    pub elapsed: Duration,
    /// Whether a snapshot was written after replay.
    pub compacted: bool,
}

/// The log's settings for `dir`: the engine's settings are the journal's
/// settings blob, so a journal written with others is refused.
pub fn wal_config(dir: PathBuf, engine: &fep_engine::Config, sync: WalSync) -> WalConfig {
    let mut settings = Vec::new();
    engine.encode(&mut settings);
    WalConfig::new(dir, settings).sync(sync)
}

/// Recovers the engine from `wal.dir` (created if missing), then, when it
/// replayed more than [`SNAPSHOT_AFTER_RECORDS`], snapshots and prunes.
/// Every error is one line: other settings, damage in the middle (file and
/// offset), a record or snapshot that does not decode.
pub fn recover(wal: &WalConfig, engine: fep_engine::Config) -> Result<RecoveredEngine, String> {
    let mut r = replay(wal, engine)?;
    if r.replayed > SNAPSHOT_AFTER_RECORDS {
        let mut bytes = Vec::new();
        r.engine.snapshot(&mut bytes);
        wal::write_snapshot(&wal.dir, r.seq_last, &wal.settings, &bytes)
            .map_err(|e| e.to_string())?;
        wal::prune(&wal.dir, r.seq_last).map_err(|e| e.to_string())?;
        r.compacted = true;
    }
    Ok(r)
}

/// The reading and replaying half of [`recover`], which changes nothing on
/// the disk (so a benchmark can time it again on the same journal).
pub fn replay(wal: &WalConfig, engine: fep_engine::Config) -> Result<RecoveredEngine, String> {
    let started = Instant::now();
    // Both callbacks reach the engine and the first failure (one at a time).
    let state = RefCell::new(Engine::new(engine).map_err(|e| e.to_string())?);
    let failure: RefCell<Option<String>> = RefCell::new(None);
    let mut replayed = 0u64;
    let recovered = wal::recover(
        wal,
        |seq, bytes| match Engine::restore(engine, bytes) {
            Ok(e) => *state.borrow_mut() = e,
            Err(e) => *failure.borrow_mut() = Some(format!("snapshot {seq}: {e}")),
        },
        |record: Record<'_>| {
            if failure.borrow().is_some() {
                return;
            }
            match Command::decode(record.payload) {
                Ok(c) => {
                    // Replay needs the state only: the events were the
                    // answers, sent (or not) before the crash.
                    state.borrow_mut().handle(&c, &mut Discard);
                    replayed += 1;
                }
                Err(e) => *failure.borrow_mut() = Some(format!("record {}: {e}", record.seq)),
            }
        },
    )
    .map_err(|e| e.to_string())?;
    let state = state.into_inner();
    if let Some(why) = failure.into_inner() {
        return Err(format!("wal {}: {why}", wal.dir.display()));
    }
    let elapsed = started.elapsed();
    Ok(RecoveredEngine {
        engine: state,
        seq_last: recovered.seq_last,
        append_at: recovered.append,
        replayed,
        snapshot_seq: recovered.snapshot_seq,
        elapsed,
        compacted: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fep_engine::{NewOrder, Side, Tif};

    fn order(account: u32, id: u64, side: Side, price: i64) -> Command {
        Command::NewOrder(NewOrder {
            account,
            cl_ord_id: id,
            instrument: 1,
            side,
            tif: Tif::Day,
            price,
            qty: 10,
        })
    }

    #[test]
    fn a_journal_replays_to_the_engine_that_wrote_it_and_refuses_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let config = fep_engine::Config::default();
        let wc = wal_config(dir.path().to_path_buf(), &config, WalSync::Batch);
        let first = recover(&wc, config).unwrap();
        assert_eq!((first.seq_last, first.replayed), (0, 0));
        let log = wal::Wal::start(wc.clone(), first.append_at, Box::new(|_| {})).unwrap();
        let mut live = Engine::new(config).unwrap();
        let mut events = Vec::new();
        let mut bytes = Vec::new();
        for i in 1..=50u64 {
            let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
            let c = order(1 + (i % 3) as u32, i, side, 100 + (i % 5) as i64);
            assert!(live.must_journal(&c));
            bytes.clear();
            c.encode(&mut bytes);
            log.append(&bytes).unwrap();
            events.clear();
            live.handle(&c, &mut events);
        }
        log.shutdown().unwrap();

        let again = recover(&wc, config).unwrap();
        assert_eq!((again.seq_last, again.replayed), (50, 50));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        live.snapshot(&mut a);
        again.engine.snapshot(&mut b);
        assert_eq!(a, b, "the recovered engine is the live one, byte for byte");

        let other = fep_engine::Config {
            accounts: config.accounts + 1,
            ..config
        };
        let wc_other = wal_config(dir.path().to_path_buf(), &other, WalSync::Batch);
        let refused = recover(&wc_other, other).unwrap_err();
        assert!(!refused.contains('\n'), "{refused}");
        assert!(refused.contains("settings"), "{refused}");

        // One flipped byte in the middle of the history: refused, naming
        // the file and the offset, never truncated.
        let segment = dir.path().join(fep_journal::segment::segment_file_name(1));
        let mut bytes = std::fs::read(&segment).unwrap();
        let middle = bytes.len() / 2;
        // The file is preallocated: flip a byte inside the records, which
        // end well before the zeros.
        let records_end = bytes.iter().rposition(|&b| b != 0).unwrap();
        let at = (records_end / 2).min(middle);
        bytes[at] ^= 0x5a;
        std::fs::write(&segment, &bytes).unwrap();
        let refused = recover(&wc, config).unwrap_err();
        let name = segment.file_name().unwrap().to_string_lossy().into_owned();
        assert!(refused.contains(&name), "{refused}");
        assert!(refused.contains("offset"), "{refused}");
        assert!(!refused.contains('\n'), "{refused}");
    }
}
