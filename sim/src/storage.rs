//! The journal on turmoil's simulated filesystem: `fep-journal`'s segments,
//! scan and snapshots, written with the shim `File` so a simulation can
//! crash the host between a write and its sync, tear writes at a block
//! size, fail writes and reads, and check what recovery makes of it.
//!
//! The same rules as the real WAL thread (`fep_net::wal`), on the host's
//! own task (turmoil's filesystem draws its faults from the world's seeded
//! RNG only there):
//!
//! - [`SimJournal::append`] encodes into a bounded pending buffer (memory);
//! - [`SimJournal::write`] writes it, one write per segment, not yet durable;
//! - [`SimJournal::sync`] writes what is pending and syncs: then, and only
//!   then, [`SimJournal::durable_seq`] moves and the owner may acknowledge.
//!
//! At most one write is ever unsynced (a second `write` syncs the first),
//! so a crash leaves a prefix of that one write, never a hole with a valid
//! record after it (turmoil tears each pending write independently, as a
//! disk may reorder them). A segment is synced before the next one is
//! created. An I/O error breaks the journal for good: every later call
//! answers [`StorageError::Broken`] and the owner must stop acknowledging.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fep_journal::limits::{RECORD_LEN_MAX, RECORD_PAYLOAD_LEN_MAX, SEGMENT_SIZE_MIN};
use fep_journal::record::{encode_append, len_encoded};
use fep_journal::segment::{
    encode_header, header_len, segment_file_name, snapshot_file_name, snapshot_temporary_name,
};
use fep_journal::{AppendAt, Listing, Record, Recovered, RecoveryError, SegmentCursor};
use turmoil::fs::shim::std::fs::{self as simfs, File, OpenOptions};

/// Default bound of the pending buffer: two of the largest records.
pub const STORAGE_PENDING_BYTES_MAX_DEFAULT: usize = 2 * RECORD_LEN_MAX;
/// Default segment size in simulation: the smallest legal one, so runs
/// roll often and keep little in memory.
pub const STORAGE_SEGMENT_SIZE_DEFAULT: u64 = SEGMENT_SIZE_MIN;

const _: () = assert!(STORAGE_PENDING_BYTES_MAX_DEFAULT >= RECORD_LEN_MAX);

/// Settings of a [`SimJournal`].
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The journal's directory on the host's simulated filesystem.
    pub dir: PathBuf,
    /// The settings blob every segment carries.
    pub settings: Vec<u8>,
    /// Segment size bound.
    pub segment_size: u64,
    /// Pending buffer bound.
    pub pending_bytes_max: usize,
}

impl StorageConfig {
    /// Defaults: [`STORAGE_SEGMENT_SIZE_DEFAULT`],
    /// [`STORAGE_PENDING_BYTES_MAX_DEFAULT`].
    pub fn new(dir: impl Into<PathBuf>, settings: impl Into<Vec<u8>>) -> Self {
        Self {
            dir: dir.into(),
            settings: settings.into(),
            segment_size: STORAGE_SEGMENT_SIZE_DEFAULT,
            pending_bytes_max: STORAGE_PENDING_BYTES_MAX_DEFAULT,
        }
    }
}

/// What went wrong with the simulated journal.
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError {
    /// A file operation failed; the journal is broken from here on.
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Recovery refused the directory (corruption, other settings, …).
    Recovery(RecoveryError<io::Error>),
    /// The pending buffer is full: `sync`, then retry.
    Full {
        /// Bytes pending.
        pending_bytes: usize,
    },
    /// The payload is above the journal's record bound.
    TooLong {
        /// Its length.
        len: usize,
    },
    /// An earlier I/O error broke the journal: nothing more becomes durable.
    Broken,
    /// A snapshot of records that are not durable yet.
    SnapshotNotDurable {
        /// The snapshot's sequence number.
        seq: u64,
        /// The durable one.
        durable_seq: u64,
    },
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io { op, path, source } => {
                write!(f, "journal: cannot {op} {}: {source}", path.display())
            }
            Self::Recovery(e) => write!(f, "journal: {e}"),
            Self::Full { pending_bytes } => write!(f, "journal full ({pending_bytes} pending)"),
            Self::TooLong { len } => write!(f, "journal record of {len} bytes"),
            Self::Broken => write!(f, "journal broken by an earlier I/O error"),
            Self::SnapshotNotDurable { seq, durable_seq } => {
                write!(f, "snapshot at {seq} past the durable {durable_seq}")
            }
        }
    }
}

impl std::error::Error for StorageError {}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> StorageError + 'p {
    move |source| StorageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The journal of one simulated host. Use it only from the host's task.
#[derive(Debug)]
pub struct SimJournal {
    config: StorageConfig,
    file: File,
    path: PathBuf,
    cursor: SegmentCursor,
    pending: Vec<u8>,
    seq_next: u64,
    /// Every record up to here was written; `durable_seq..=written_seq` is
    /// the one unsynced write.
    written_seq: u64,
    durable_seq: u64,
    broken: bool,
}

impl SimJournal {
    /// Recovers the journal in `config.dir` (created if missing) and opens
    /// it for appending: the newest snapshot goes to `on_snapshot`, later
    /// records to `on_record`.
    pub fn open(
        config: StorageConfig,
        on_snapshot: impl FnOnce(u64, &[u8]),
        on_record: impl FnMut(Record<'_>),
    ) -> Result<(Self, Recovered), StorageError> {
        let dir = config.dir.clone();
        simfs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        simfs::sync_dir(&dir).map_err(io_err("sync", &dir))?;
        let listing = list(&dir)?;
        for name in &listing.temporaries {
            let path = dir.join(name);
            simfs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
        let load = |name: &str, buf: &mut Vec<u8>| -> io::Result<()> {
            *buf = simfs::read(dir.join(name))?;
            Ok(())
        };
        let recovered = fep_journal::recover(
            &listing,
            &config.settings,
            &mut Vec::new(),
            load,
            on_snapshot,
            on_record,
        )
        .map_err(StorageError::Recovery)?;
        let journal = Self::resume(config, recovered.append)?;
        Ok((journal, recovered))
    }

    fn resume(config: StorageConfig, at: AppendAt) -> Result<Self, StorageError> {
        let seq_next = at.seq_next();
        let (file, path, cursor) = match at {
            AppendAt::NewSegment { seq_next } => create_segment(&config, seq_next)?,
            AppendAt::Existing {
                segment_first_seq,
                offset,
                dirty_end,
                ..
            } => {
                let path = config.dir.join(segment_file_name(segment_first_seq));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_err("open", &path))?;
                if dirty_end > offset {
                    let zeros = vec![0u8; (dirty_end - offset) as usize];
                    file.write_all_at(&zeros, offset)
                        .map_err(io_err("wipe the torn tail of", &path))?;
                    file.sync_data().map_err(io_err("sync", &path))?;
                }
                let size = config.segment_size.max(offset);
                (
                    file,
                    path,
                    SegmentCursor::new(segment_first_seq, offset, size),
                )
            }
        };
        Ok(Self {
            pending: Vec::with_capacity(config.pending_bytes_max),
            config,
            file,
            path,
            cursor,
            seq_next,
            written_seq: seq_next - 1,
            durable_seq: seq_next - 1,
            broken: false,
        })
    }

    /// Appends a record to the pending buffer; returns its sequence number.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, StorageError> {
        if self.broken {
            return Err(StorageError::Broken);
        }
        if payload.len() > RECORD_PAYLOAD_LEN_MAX {
            return Err(StorageError::TooLong { len: payload.len() });
        }
        if self.pending.len() + len_encoded(payload.len()) > self.config.pending_bytes_max {
            return Err(StorageError::Full {
                pending_bytes: self.pending.len(),
            });
        }
        let seq = self.seq_next;
        encode_append(seq, payload, &mut self.pending).expect("length checked, sequence from 1");
        self.seq_next += 1;
        Ok(seq)
    }

    /// Writes the pending records (not durable yet). An earlier unsynced
    /// write is synced first, so at most one write is ever unsynced.
    pub fn write(&mut self) -> Result<(), StorageError> {
        if self.broken {
            return Err(StorageError::Broken);
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.written_seq > self.durable_seq {
            self.sync_file()?;
        }
        let result = self.write_pending();
        self.broken |= result.is_err();
        result
    }

    /// Writes what is pending and syncs: returns the new durable sequence
    /// number. Acknowledge nothing past it.
    pub fn sync(&mut self) -> Result<u64, StorageError> {
        self.write()?;
        if self.written_seq > self.durable_seq {
            self.sync_file()?;
        }
        Ok(self.durable_seq)
    }

    fn write_pending(&mut self) -> Result<(), StorageError> {
        let batch = std::mem::take(&mut self.pending);
        let mut rest = &batch[..];
        while !rest.is_empty() {
            let n = self.cursor.fit(rest);
            if n == 0 {
                self.sync_file()?;
                let first_seq = self.cursor.roll(rest, header_len(&self.config.settings));
                let (file, path, cursor) = create_segment(&self.config, first_seq)?;
                (self.file, self.path, self.cursor) = (file, path, cursor);
                continue;
            }
            self.file
                .write_all_at(&rest[..n], self.cursor.offset)
                .map_err(io_err("write", &self.path))?;
            self.cursor.advance(n);
            rest = &rest[n..];
        }
        self.written_seq = self.seq_next - 1;
        self.pending = batch;
        self.pending.clear();
        Ok(())
    }

    fn sync_file(&mut self) -> Result<(), StorageError> {
        let result = self.file.sync_data().map_err(io_err("sync", &self.path));
        match result {
            Ok(()) => {
                self.durable_seq = self.written_seq;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Every record up to here is on stable (simulated) storage.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// The sequence number the next append gets.
    pub fn seq_next(&self) -> u64 {
        self.seq_next
    }

    /// Whether an I/O error broke the journal.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Writes a snapshot of the state after record `seq` (which must be
    /// durable) and deletes the files it makes redundant; returns their
    /// names.
    pub fn snapshot(&mut self, seq: u64, state: &[u8]) -> Result<Vec<String>, StorageError> {
        if self.broken {
            return Err(StorageError::Broken);
        }
        if seq > self.durable_seq {
            return Err(StorageError::SnapshotNotDurable {
                seq,
                durable_seq: self.durable_seq,
            });
        }
        let result = self.snapshot_files(seq, state);
        self.broken |= result.is_err();
        result
    }

    fn snapshot_files(&mut self, seq: u64, state: &[u8]) -> Result<Vec<String>, StorageError> {
        let dir = self.config.dir.clone();
        let mut bytes = Vec::new();
        fep_journal::snapshot::encode(seq, &self.config.settings, state, &mut bytes);
        let tmp = dir.join(snapshot_temporary_name(seq));
        let path = dir.join(snapshot_file_name(seq));
        let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        file.write_all_at(&bytes, 0)
            .map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("sync", &tmp))?;
        simfs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        simfs::sync_dir(&dir).map_err(io_err("sync", &dir))?;
        let names = fep_journal::deletable(&list(&dir)?, seq);
        for name in &names {
            let p = dir.join(name);
            simfs::remove_file(&p).map_err(io_err("remove", &p))?;
        }
        simfs::sync_dir(&dir).map_err(io_err("sync", &dir))?;
        Ok(names)
    }
}

/// Creates the segment starting at `first_seq`: preallocated (zeros), its
/// header written, file and directory entry synced before any record.
fn create_segment(
    config: &StorageConfig,
    first_seq: u64,
) -> Result<(File, PathBuf, SegmentCursor), StorageError> {
    let path = config.dir.join(segment_file_name(first_seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    file.set_len(config.segment_size)
        .map_err(io_err("preallocate", &path))?;
    let mut header = Vec::with_capacity(header_len(&config.settings));
    encode_header(first_seq, &config.settings, &mut header);
    file.write_all_at(&header, 0)
        .map_err(io_err("write the header of", &path))?;
    file.sync_all().map_err(io_err("sync", &path))?;
    simfs::sync_dir(&config.dir).map_err(io_err("sync", &config.dir))?;
    let cursor = SegmentCursor::new(first_seq, header.len() as u64, config.segment_size);
    Ok((file, path, cursor))
}

fn list(dir: &Path) -> Result<Listing, StorageError> {
    let mut names = Vec::new();
    for entry in simfs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(Listing::from_names(names.iter().map(String::as_str)))
}
