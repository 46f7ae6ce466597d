//! The driver's side of a worker's write-ahead log: appending the
//! worker's records, telling it what is durable, and the snapshot thread.

use std::time::Duration;

use fep_core::{Nanos, Service};

use crate::wal::{AppendError, Wal, WalConfig};

use super::Driver;

/// The driver's side of a worker's write-ahead log.
pub(super) struct JournalIo {
    pub(super) wal: Wal,
    /// The number the next appended record gets (the service numbers its
    /// records the same way; a mismatch is a bug, reported as a failure).
    pub(super) seq_next: u64,
    /// The last durable number told to the worker.
    pub(super) durable_told: u64,
    /// The worker was told the log failed.
    pub(super) failed: bool,
    /// Snapshots for the snapshot thread: (record, state). Bounded to one
    /// waiting: a snapshot offered while one is being written is dropped
    /// (the next one comes `snapshot_every` records later).
    pub(super) snapshots: Option<std::sync::mpsc::SyncSender<(u64, Vec<u8>)>>,
    pub(super) config: WalConfig,
}

impl<S: Service> Driver<S> {
    /// Gives this worker its write-ahead log (see [`Config::journal`](crate::Config::journal)).
    pub(crate) fn with_journal(mut self, wal: Option<(Wal, WalConfig)>) -> Driver<S> {
        self.journal = wal.map(|(wal, config)| {
            let durable = wal.durable_seq();
            JournalIo {
                wal,
                seq_next: durable + 1,
                durable_told: durable,
                failed: false,
                snapshots: None,
                config,
            }
        });
        self
    }

    /// Hands the worker's snapshot to the snapshot thread (started on
    /// first use), which waits until its record is durable, writes it and
    /// deletes the segments it covers: the worker's thread does no I/O.
    pub(super) fn take_snapshot(&mut self) {
        let Some(snapshot) = self.worker.take_snapshot() else {
            return;
        };
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        if j.snapshots.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Vec<u8>)>(1);
            let durable = j.wal.durable_counter();
            let config = j.config.clone();
            let spawned = std::thread::Builder::new()
                .name("fep-snapshot".into())
                .spawn(move || write_snapshots(&rx, &durable, &config));
            if let Err(e) = spawned {
                eprintln!("wal: no snapshot thread ({e}); the journal is not compacted");
                return;
            }
            j.snapshots = Some(tx);
        }
        if let Some(tx) = &j.snapshots {
            let _ = tx.try_send(snapshot);
        }
    }

    /// Hands the worker's journal records to the log, in order; a full
    /// log keeps the rest for the next turn (the WAL thread wakes us).
    pub(super) fn append_journal(&mut self, now: Nanos) {
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        let buf = self.worker.journal_buf();
        let mut at = 0;
        let mut failed = None;
        while let Some(head) = buf[at..].first_chunk::<4>() {
            let len = u32::from_be_bytes(*head) as usize;
            let record = &buf[at + 4..at + 4 + len];
            match j.wal.try_append(record) {
                Ok(seq) if seq == j.seq_next => {
                    j.seq_next += 1;
                    at += 4 + len;
                }
                Ok(seq) => {
                    failed = Some(format!("record numbered {seq}, expected {}", j.seq_next));
                    break;
                }
                Err(AppendError::Full { .. }) => break,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(why) = failed {
            // Nothing past this can become durable: drop the rest.
            at = buf.len();
            self.journal_failed(now, &why);
        }
        self.worker.handle_journaled(at);
    }

    /// Tells the worker what became durable, or that the log failed, and
    /// retries records a full log refused.
    pub(super) fn poll_journal(&mut self, now: Nanos) {
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        if j.failed {
            return;
        }
        let durable = j.wal.durable_seq();
        if durable > j.durable_told {
            j.durable_told = durable;
            self.worker.handle_durable(now, durable);
        } else if j.durable_told + 1 < j.seq_next && j.wal.is_stopped() {
            self.journal_failed(now, "the WAL thread stopped on an I/O error");
        }
        if !self.worker.journal_buf().is_empty() {
            self.append_journal(now);
        }
        self.drain(now);
    }

    pub(super) fn journal_failed(&mut self, now: Nanos, why: &str) {
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        if !j.failed {
            j.failed = true;
            eprintln!(
                "worker {}: journal failed ({why}); durable up to record {}, \
                 acknowledging nothing more",
                self.id.0, j.durable_told
            );
            self.worker.handle_journal_failed(now);
        }
    }
}

/// The snapshot thread: each snapshot is written once its record is
/// durable (a snapshot of state the journal does not hold yet could
/// recover a state that never was), then the segments it covers go.
fn write_snapshots(
    rx: &std::sync::mpsc::Receiver<(u64, Vec<u8>)>,
    durable: &std::sync::atomic::AtomicU64,
    config: &WalConfig,
) {
    use std::sync::atomic::Ordering;
    for (seq, state) in rx {
        let waited = std::time::Instant::now();
        while durable.load(Ordering::Acquire) < seq {
            if waited.elapsed() > crate::limits::SNAPSHOT_DURABLE_WAIT_MAX {
                eprintln!("wal: snapshot at record {seq} dropped: the record never became durable");
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if durable.load(Ordering::Acquire) < seq {
            continue;
        }
        let written = crate::wal::write_snapshot(&config.dir, seq, &config.settings, &state)
            .and_then(|()| crate::wal::prune(&config.dir, seq));
        match written {
            Ok(deleted) => eprintln!(
                "wal: snapshot at record {seq} ({} bytes), {} files deleted",
                state.len(),
                deleted.len()
            ),
            Err(e) => eprintln!("wal: snapshot at record {seq} failed: {e}"),
        }
    }
}
