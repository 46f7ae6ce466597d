//! The real write-ahead log: `fep-journal`'s format on real files, written
//! by one thread with natural group commit.
//!
//! - Producers (the exchange's engine thread, or several threads) call
//!   [`Wal::try_append`]: the record is encoded into the pending buffer
//!   under a short lock (a memcpy, no allocation, no syscall unless the
//!   writer sleeps) and gets its sequence number. Past
//!   [`WalConfig::pending_bytes_max`] the answer is [`AppendError::Full`]:
//!   the producer pauses its input until the writer takes the batch.
//! - The WAL thread swaps the pending buffer with its own (a double
//!   buffer), writes everything in one `pwrite` per segment, calls
//!   `fdatasync` once, publishes "durable up to N" in an atomic and calls
//!   the owner's callback (a `mio::Waker`, typically), and repeats. While
//!   it syncs, the next batch accumulates: the more load, the bigger the
//!   batch, with no timer.
//! - Segments are preallocated (`fallocate`, or zeros where the file system
//!   cannot) and roll at the size bound; a segment is synced before the
//!   next one is created, so a torn record can only be at the very end.
//! - Shutdown drains what is pending and syncs one last time.
//! - An I/O error stops the writer for good: `durable_seq` never moves
//!   again, appends answer [`AppendError::Stopped`], the callback runs once
//!   more so the owner notices, and the owner must stop acknowledging.
//!
//! [`recover`] reads a directory back (snapshot, then segments) before a
//! [`Wal`] is started where it ended. [`write_snapshot`] and [`prune`]
//! keep recovery short; [`probe_fsync`] measures the disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use fep_journal::limits::{
    RECORD_LEN_MAX, RECORD_PAYLOAD_LEN_MAX, SEGMENT_SIZE_DEFAULT, SEGMENT_SIZE_MAX,
    SEGMENT_SIZE_MIN, SETTINGS_LEN_MAX,
};
use fep_journal::record::{encode_append, len_encoded};
use fep_journal::segment::{
    encode_header, header_len, segment_file_name, snapshot_file_name, snapshot_temporary_name,
};
use fep_journal::{AppendAt, Listing, Record, Recovered, RecoveryError, SegmentCursor};
use hdrhistogram::Histogram;

use crate::limits::{FSYNC_PROBE_BLOCK_LEN, WAL_PENDING_BYTES_MAX_DEFAULT, WAL_ZERO_CHUNK_LEN};

/// When the WAL thread calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalSync {
    /// Once per batch: a record is durable when published.
    Batch,
    /// Never (but at shutdown): for measuring everything but the disk.
    /// "Durable" then only means "written to the page cache".
    None,
}

/// Settings of a [`Wal`] and of [`recover`].
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// The journal's directory (created if missing).
    pub dir: PathBuf,
    /// The settings blob every segment and snapshot carries; a journal
    /// written with other settings is refused.
    pub settings: Vec<u8>,
    /// When to sync.
    pub sync: WalSync,
    /// Segment size bound, in bytes.
    pub segment_size: u64,
    /// Bound of the pending buffer, in bytes (two such buffers exist).
    pub pending_bytes_max: usize,
    /// CPU to pin the WAL thread to.
    pub cpu: Option<usize>,
    /// Told about every batch, on the WAL thread (metrics).
    pub observer: Option<WalObserver>,
}

/// One group commit as the WAL thread saw it, for an observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalBatch {
    /// Records in the batch.
    pub records: u64,
    /// Bytes written (records only).
    pub bytes: u64,
    /// How long the batch's `fdatasync` took, in nanoseconds; `None` with
    /// [`WalSync::None`]. A batch that rolls to a new segment also syncs
    /// the old one: that sync is not counted here.
    pub sync_ns: Option<u64>,
}

/// Called by the WAL thread after each batch is durable and published
/// (so a slow observer delays the next batch, never this one's answers).
/// It runs on the WAL thread only: keep it short and allocation-free.
#[derive(Clone)]
pub struct WalObserver(Arc<dyn Fn(&WalBatch) + Send + Sync>);

impl WalObserver {
    /// Wraps `f`.
    pub fn new(f: impl Fn(&WalBatch) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Tells `f` about `batch` (the WAL thread does, after each batch).
    pub fn call(&self, batch: &WalBatch) {
        (self.0)(batch)
    }
}

impl std::fmt::Debug for WalObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WalObserver")
    }
}

impl WalConfig {
    /// Defaults: batch sync, 64 MiB segments, 4 MiB pending, unpinned.
    pub fn new(dir: impl Into<PathBuf>, settings: impl Into<Vec<u8>>) -> Self {
        Self {
            dir: dir.into(),
            settings: settings.into(),
            sync: WalSync::Batch,
            segment_size: SEGMENT_SIZE_DEFAULT,
            pending_bytes_max: WAL_PENDING_BYTES_MAX_DEFAULT,
            cpu: None,
            observer: None,
        }
    }

    /// Sets the observer told about every batch.
    pub fn observe(mut self, observer: WalObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Sets when to sync.
    pub fn sync(mut self, sync: WalSync) -> Self {
        self.sync = sync;
        self
    }

    /// Sets the segment size bound.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Sets the pending buffer bound.
    pub fn pending_bytes_max(mut self, bytes: usize) -> Self {
        self.pending_bytes_max = bytes;
        self
    }

    /// Pins the WAL thread.
    pub fn cpu(mut self, cpu: Option<usize>) -> Self {
        self.cpu = cpu;
        self
    }

    fn validate(&self) -> Result<(), WalError> {
        let reason = if self.settings.len() > SETTINGS_LEN_MAX {
            format!(
                "settings of {} bytes above {SETTINGS_LEN_MAX}",
                self.settings.len()
            )
        } else if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&self.segment_size) {
            format!(
                "segment size {} outside {SEGMENT_SIZE_MIN}..={SEGMENT_SIZE_MAX}",
                self.segment_size
            )
        } else if self.pending_bytes_max < RECORD_LEN_MAX {
            format!(
                "pending bound {} below one record ({RECORD_LEN_MAX})",
                self.pending_bytes_max
            )
        } else {
            return Ok(());
        };
        Err(WalError::Config { reason })
    }
}

/// Why the WAL cannot go on. Each prints as one line.
#[derive(Debug)]
#[non_exhaustive]
pub enum WalError {
    /// The configuration is out of its bounds.
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A file operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The journal cannot be recovered (corruption, other settings, …).
    Recovery {
        /// The journal's directory.
        dir: PathBuf,
        /// What recovery found.
        error: RecoveryError<io::Error>,
    },
    /// The WAL thread died (a panic: a broken invariant).
    ThreadPanicked,
}

impl std::fmt::Display for WalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config { reason } => write!(f, "wal: {reason}"),
            Self::Io { op, path, source } => {
                write!(f, "wal: cannot {op} {}: {source}", path.display())
            }
            Self::Recovery { dir, error } => write!(f, "wal {}: {error}", dir.display()),
            Self::ThreadPanicked => write!(f, "wal: the WAL thread panicked"),
        }
    }
}

impl std::error::Error for WalError {}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> WalError + 'p {
    move |source| WalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Why an append was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendError {
    /// The pending buffer is full: pause, retry after the next durable
    /// notification.
    Full {
        /// Bytes pending.
        pending_bytes: usize,
        /// The bound.
        pending_bytes_max: usize,
    },
    /// The payload is above the journal's record bound.
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The WAL stopped (an I/O error, or shutdown): nothing more becomes
    /// durable.
    Stopped,
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Full {
                pending_bytes,
                pending_bytes_max,
            } => write!(
                f,
                "wal full ({pending_bytes} of {pending_bytes_max} bytes pending)"
            ),
            Self::TooLong { len } => {
                write!(f, "record of {len} bytes above {RECORD_PAYLOAD_LEN_MAX}")
            }
            Self::Stopped => write!(f, "wal stopped"),
        }
    }
}

impl std::error::Error for AppendError {}

/// What the WAL thread did, returned by [`Wal::shutdown`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records written.
    pub records: u64,
    /// Bytes written (records only).
    pub bytes: u64,
    /// Batches written (one `fdatasync` each with [`WalSync::Batch`]).
    pub batches: u64,
    /// `fdatasync`/`fsync` calls, segment creation and shutdown included.
    pub syncs: u64,
    /// The largest batch, in records.
    pub batch_records_max: u64,
    /// Segments created.
    pub segments_created: u64,
    /// Whether the thread was pinned as asked.
    pub pinned: bool,
}

/// Called by the WAL thread with the new durable sequence number after each
/// batch, and once more if it stops on an error.
pub type DurableCallback = Box<dyn Fn(u64) + Send>;

struct Pending {
    buf: Vec<u8>,
    seq_next: u64,
    writer_waiting: bool,
    producers_waiting: usize,
    shutdown: bool,
    stopped: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    writer_wake: Condvar,
    room: Condvar,
    durable_seq: Arc<AtomicU64>,
    pending_bytes_max: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A producer or writer that panicked while holding the lock left the
        // buffer consistent (appends are all-or-nothing): go on.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stop(&self) {
        let mut p = self.lock();
        p.stopped = true;
        self.room.notify_all();
    }
}

/// A running WAL: producers append, the WAL thread makes it durable.
pub struct Wal {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<WalStats, WalError>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("durable_seq", &self.durable_seq())
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens the segment recovery ended in (or creates one) and starts the
    /// WAL thread. `on_durable` runs on the WAL thread after each batch.
    pub fn start(
        config: WalConfig,
        append_at: AppendAt,
        on_durable: DurableCallback,
    ) -> Result<Self, WalError> {
        config.validate()?;
        let writer = SegmentWriter::open(&config, append_at)?;
        let seq_next = append_at.seq_next();
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(config.pending_bytes_max),
                seq_next,
                writer_waiting: false,
                producers_waiting: 0,
                shutdown: false,
                stopped: false,
            }),
            writer_wake: Condvar::new(),
            room: Condvar::new(),
            durable_seq: Arc::new(AtomicU64::new(seq_next - 1)),
            pending_bytes_max: config.pending_bytes_max,
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("fep-wal".into())
            .spawn(move || {
                let pinned = config
                    .cpu
                    .is_some_and(|id| core_affinity::set_for_current(core_affinity::CoreId { id }));
                let result = run_writer(&thread_shared, writer, &config, &on_durable);
                if result.is_err() {
                    thread_shared.stop();
                    on_durable(thread_shared.durable_seq.load(Ordering::Acquire));
                }
                result.map(|stats| WalStats { pinned, ..stats })
            })
            .map_err(io_err("spawn the WAL thread in", Path::new(".")))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Appends a record without waiting; returns its sequence number.
    pub fn try_append(&self, payload: &[u8]) -> Result<u64, AppendError> {
        if payload.len() > RECORD_PAYLOAD_LEN_MAX {
            return Err(AppendError::TooLong { len: payload.len() });
        }
        let mut p = self.shared.lock();
        self.append_locked(&mut p, payload)
    }

    /// Appends a record, waiting while the pending buffer is full (for
    /// producers that may block; the engine thread uses `try_append`).
    pub fn append(&self, payload: &[u8]) -> Result<u64, AppendError> {
        if payload.len() > RECORD_PAYLOAD_LEN_MAX {
            return Err(AppendError::TooLong { len: payload.len() });
        }
        let mut p = self.shared.lock();
        loop {
            match self.append_locked(&mut p, payload) {
                Err(AppendError::Full { .. }) => {
                    p.producers_waiting += 1;
                    p = self.shared.room.wait(p).unwrap_or_else(|e| e.into_inner());
                    p.producers_waiting -= 1;
                }
                other => return other,
            }
        }
    }

    fn append_locked(&self, p: &mut Pending, payload: &[u8]) -> Result<u64, AppendError> {
        if p.stopped || p.shutdown {
            return Err(AppendError::Stopped);
        }
        let max = self.shared.pending_bytes_max;
        if p.buf.len() + len_encoded(payload.len()) > max {
            return Err(AppendError::Full {
                pending_bytes: p.buf.len(),
                pending_bytes_max: max,
            });
        }
        let seq = p.seq_next;
        encode_append(seq, payload, &mut p.buf).expect("length checked, sequence from 1");
        p.seq_next += 1;
        if p.writer_waiting {
            p.writer_waiting = false;
            self.shared.writer_wake.notify_one();
        }
        Ok(seq)
    }

    /// Every record up to this sequence number is durable.
    pub fn durable_seq(&self) -> u64 {
        self.shared.durable_seq.load(Ordering::Acquire)
    }

    /// The atomic behind [`Wal::durable_seq`], for an owner that reads it
    /// from its own thread without a reference to the `Wal`.
    pub fn durable_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.durable_seq)
    }

    /// Whether the WAL stopped (an I/O error or shutdown): the owner must
    /// acknowledge nothing past [`Wal::durable_seq`].
    pub fn is_stopped(&self) -> bool {
        let p = self.shared.lock();
        p.stopped || p.shutdown
    }

    /// Drains what is pending, syncs, stops the thread.
    pub fn shutdown(mut self) -> Result<WalStats, WalError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<WalStats, WalError> {
        {
            let mut p = self.shared.lock();
            p.shutdown = true;
            self.shared.writer_wake.notify_one();
            self.shared.room.notify_all();
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| WalError::ThreadPanicked)?,
            None => Ok(WalStats::default()),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // The final sync still happens; its error has no one to go to.
            let _ = self.stop_and_join();
        }
    }
}

fn run_writer(
    shared: &Shared,
    mut writer: SegmentWriter,
    config: &WalConfig,
    on_durable: &DurableCallback,
) -> Result<WalStats, WalError> {
    let mut batch = Vec::with_capacity(config.pending_bytes_max);
    let mut stats = WalStats {
        segments_created: writer.segments_created,
        ..WalStats::default()
    };
    let mut durable = shared.durable_seq.load(Ordering::Acquire);
    loop {
        let last_seq = {
            let mut p = shared.lock();
            while p.buf.is_empty() && !p.shutdown {
                p.writer_waiting = true;
                p = shared
                    .writer_wake
                    .wait(p)
                    .unwrap_or_else(|e| e.into_inner());
            }
            p.writer_waiting = false;
            std::mem::swap(&mut p.buf, &mut batch);
            if p.producers_waiting > 0 {
                shared.room.notify_all();
            }
            p.seq_next - 1
        };
        if batch.is_empty() {
            writer.sync(&mut stats)?;
            break;
        }
        let sync_ns = writer.write_batch(&batch, config.sync, &mut stats)?;
        let records = last_seq - durable;
        stats.records += records;
        let bytes_written = batch.len() as u64;
        stats.bytes += bytes_written;
        stats.batches += 1;
        stats.batch_records_max = stats.batch_records_max.max(records);
        batch.clear();
        durable = last_seq;
        shared.durable_seq.store(durable, Ordering::Release);
        on_durable(durable);
        if let Some(observer) = &config.observer {
            observer.call(&WalBatch {
                records,
                bytes: bytes_written,
                sync_ns,
            });
        }
    }
    stats.segments_created = writer.segments_created;
    Ok(stats)
}

struct SegmentWriter {
    dir: PathBuf,
    settings: Vec<u8>,
    sync: WalSync,
    path: PathBuf,
    file: File,
    cursor: SegmentCursor,
    segments_created: u64,
}

impl SegmentWriter {
    fn open(config: &WalConfig, at: AppendAt) -> Result<Self, WalError> {
        fs::create_dir_all(&config.dir).map_err(io_err("create", &config.dir))?;
        match at {
            AppendAt::NewSegment { seq_next } => {
                let (file, path, cursor) = create_segment(
                    &config.dir,
                    &config.settings,
                    config.sync,
                    seq_next,
                    config.segment_size,
                )?;
                Ok(Self {
                    dir: config.dir.clone(),
                    settings: config.settings.clone(),
                    sync: config.sync,
                    path,
                    file,
                    cursor,
                    segments_created: 1,
                })
            }
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
                // A segment written under a larger bound keeps its size.
                let size = config.segment_size.max(offset).min(SEGMENT_SIZE_MAX);
                let mut writer = Self {
                    dir: config.dir.clone(),
                    settings: config.settings.clone(),
                    sync: config.sync,
                    path,
                    file,
                    cursor: SegmentCursor::new(segment_first_seq, offset, size),
                    segments_created: 0,
                };
                writer.wipe(offset, dirty_end)?;
                Ok(writer)
            }
        }
    }

    /// Zeroes a torn tail so no stale byte outlives it, and syncs that.
    fn wipe(&mut self, from: u64, to: u64) -> Result<(), WalError> {
        if to <= from {
            return Ok(());
        }
        write_zeros(&self.file, from, to).map_err(io_err("wipe the torn tail of", &self.path))?;
        self.file
            .sync_data()
            .map_err(io_err("fdatasync", &self.path))
    }

    fn roll(&mut self, first_seq: u64) -> Result<(), WalError> {
        let (file, path, cursor) = create_segment(
            &self.dir,
            &self.settings,
            self.sync,
            first_seq,
            self.cursor.size,
        )?;
        self.file = file;
        self.path = path;
        self.cursor = cursor;
        self.segments_created += 1;
        Ok(())
    }

    /// Writes `batch` and, with [`WalSync::Batch`], syncs it; returns how
    /// long that last sync took.
    fn write_batch(
        &mut self,
        batch: &[u8],
        sync: WalSync,
        stats: &mut WalStats,
    ) -> Result<Option<u64>, WalError> {
        let mut rest = batch;
        while !rest.is_empty() {
            let n = self.cursor.fit(rest);
            if n == 0 {
                // The old segment is durable before the next one exists, so
                // a torn record can only ever be at the end of the last.
                if sync == WalSync::Batch {
                    self.sync(stats)?;
                }
                let first_seq = self.cursor.roll(rest, header_len(&self.settings));
                self.roll(first_seq)?;
                assert!(self.cursor.fit(rest) > 0, "a fresh segment fits any record");
                continue;
            }
            self.file
                .write_all_at(&rest[..n], self.cursor.offset)
                .map_err(io_err("write", &self.path))?;
            self.cursor.advance(n);
            rest = &rest[n..];
        }
        if sync == WalSync::None {
            return Ok(None);
        }
        let started = Instant::now();
        self.sync(stats)?;
        Ok(Some(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        ))
    }

    fn sync(&mut self, stats: &mut WalStats) -> Result<(), WalError> {
        stats.syncs += 1;
        self.file
            .sync_data()
            .map_err(io_err("fdatasync", &self.path))
    }
}

/// Creates (truncating) the segment starting at `first_seq`, preallocated,
/// with its header written and, with [`WalSync::Batch`], synced together
/// with its directory entry before any record goes in.
fn create_segment(
    dir: &Path,
    settings: &[u8],
    sync: WalSync,
    first_seq: u64,
    size: u64,
) -> Result<(File, PathBuf, SegmentCursor), WalError> {
    let path = dir.join(segment_file_name(first_seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    preallocate(&file, size).map_err(io_err("preallocate", &path))?;
    let mut header = Vec::with_capacity(header_len(settings));
    encode_header(first_seq, settings, &mut header);
    file.write_all_at(&header, 0)
        .map_err(io_err("write the header of", &path))?;
    if sync == WalSync::Batch {
        file.sync_all().map_err(io_err("fsync", &path))?;
        sync_dir(dir)?;
    }
    let cursor = SegmentCursor::new(first_seq, header.len() as u64, size);
    Ok((file, path, cursor))
}

fn preallocate(file: &File, size: u64) -> io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        // A file system without fallocate (tmpfs on old kernels, some
        // network file systems): zeros do the same, slower.
        Err(_) => write_zeros(file, 0, size),
    }
}

fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; WAL_ZERO_CHUNK_LEN];
    let mut at = from;
    while at < to {
        let n = (to - at).min(WAL_ZERO_CHUNK_LEN as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync the directory", dir))
}

fn list(dir: &Path) -> Result<Listing, WalError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(Listing::from_names(names.iter().map(String::as_str)))
}

/// Recovers the journal in `config.dir` (created if missing): the newest
/// snapshot's state goes to `on_snapshot`, every later record to
/// `on_record`, in order. Leftover temporary files are removed. Start the
/// [`Wal`] with the returned `append`.
pub fn recover(
    config: &WalConfig,
    on_snapshot: impl FnOnce(u64, &[u8]),
    on_record: impl FnMut(Record<'_>),
) -> Result<Recovered, WalError> {
    config.validate()?;
    let dir = &config.dir;
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let listing = list(dir)?;
    for name in &listing.temporaries {
        let path = dir.join(name);
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
    }
    let mut buf = Vec::new();
    let load = |name: &str, buf: &mut Vec<u8>| -> io::Result<()> {
        buf.clear();
        File::open(dir.join(name))?.read_to_end(buf).map(drop)
    };
    fep_journal::recover(
        &listing,
        &config.settings,
        &mut buf,
        load,
        on_snapshot,
        on_record,
    )
    .map_err(|error| WalError::Recovery {
        dir: dir.clone(),
        error,
    })
}

/// Writes a snapshot of `state` (the engine after record `seq`) durably:
/// a temporary file, synced, renamed, and the directory synced. Take it
/// only of state whose records are durable (`seq <= durable_seq`), or a
/// crash could recover a state the journal never had. Off the engine
/// thread, and not on the WAL thread (it would stall group commit).
pub fn write_snapshot(dir: &Path, seq: u64, settings: &[u8], state: &[u8]) -> Result<(), WalError> {
    let mut bytes = Vec::new();
    fep_journal::snapshot::encode(seq, settings, state, &mut bytes);
    let tmp = dir.join(snapshot_temporary_name(seq));
    let path = dir.join(snapshot_file_name(seq));
    let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all_at(&bytes, 0)
        .map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    sync_dir(dir)
}

/// Deletes the segments and older snapshots that the durable snapshot at
/// `snapshot_durable_seq` makes redundant (`fep_journal::deletable`);
/// returns their names.
pub fn prune(dir: &Path, snapshot_durable_seq: u64) -> Result<Vec<String>, WalError> {
    let names = fep_journal::deletable(&list(dir)?, snapshot_durable_seq);
    for name in &names {
        let path = dir.join(name);
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
    }
    if !names.is_empty() {
        sync_dir(dir)?;
    }
    Ok(names)
}

/// Where the fsync probe writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFile {
    /// Appends to a growing file: every sync also commits the new size
    /// (the classic "append + fdatasync" figure).
    Growing,
    /// Writes into a preallocated file, as the WAL does into its segments.
    Preallocated,
}

/// Measures this disk: `appends` writes of 4 KiB to a temporary file in
/// `dir`, each followed by `fdatasync`; the histogram holds each write +
/// sync in nanoseconds. The file is removed afterwards.
pub fn probe_fsync(dir: &Path, appends: u32, kind: ProbeFile) -> Result<Histogram<u64>, WalError> {
    let path = dir.join(format!(".fsync-probe-{}.tmp", std::process::id()));
    let result = probe_into(&path, appends, kind);
    let _ = fs::remove_file(&path);
    result
}

fn probe_into(path: &Path, appends: u32, kind: ProbeFile) -> Result<Histogram<u64>, WalError> {
    let file = File::create(path).map_err(io_err("create", path))?;
    let block = [0xA5u8; FSYNC_PROBE_BLOCK_LEN];
    if kind == ProbeFile::Preallocated {
        let len = u64::from(appends) * FSYNC_PROBE_BLOCK_LEN as u64;
        preallocate(&file, len).map_err(io_err("preallocate", path))?;
        file.sync_all().map_err(io_err("fsync", path))?;
    }
    let mut hist = Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid bounds");
    for i in 0..u64::from(appends) {
        let start = Instant::now();
        file.write_all_at(&block, i * FSYNC_PROBE_BLOCK_LEN as u64)
            .map_err(io_err("write", path))?;
        file.sync_data().map_err(io_err("fdatasync", path))?;
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        hist.saturating_record(ns.max(1));
    }
    Ok(hist)
}
