//! `fepbench wal`: the journal's figures, measured in one run on one disk:
//! the disk's fsync latency (the probe, on a growing file and on a
//! preallocated one as the WAL writes), group-commit throughput of small
//! records with N producer threads (`batch` vs `none` sync), closed-loop
//! producers that each wait for their record (one producer: one fsync per
//! record), and recovery speed over a journal of >= 1M
//! records. Everything is written under `--dir` and removed afterwards.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use fep_journal::AppendAt;
use fep_net::wal::{self, ProbeFile, Wal, WalConfig, WalSync};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Settings of `fepbench wal`.
#[derive(Debug, Clone, Args)]
pub struct WalBenchOpts {
    /// Directory on the disk to measure (a scratch directory is made in it).
    #[arg(long, default_value = ".", env = "FEP_WAL_DIR")]
    pub dir: PathBuf,
    /// Appends of the fsync probe.
    #[arg(long, default_value_t = 300)]
    pub probe_appends: u32,
    /// Records per group-commit leg.
    #[arg(long, default_value_t = 500_000)]
    pub records: u64,
    /// Producer thread counts to run, comma-separated.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    pub producers: Vec<u32>,
    /// Payload bytes of each record (an engine command is ~64).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Records of each closed-loop leg (slow: keep it small).
    #[arg(long, default_value_t = 2_000)]
    pub per_record_count: u64,
    /// Closed-loop producer counts: each producer waits for its record to
    /// be durable before the next (1 = one fsync per record; more = what
    /// group commit makes of many waiting clients).
    #[arg(long, default_value = "1,16", value_delimiter = ',')]
    pub closed_producers: Vec<u32>,
    /// Records of the recovery leg.
    #[arg(long, default_value_t = 1_000_000)]
    pub recovery_records: u64,
    /// Print the figures as one JSON object (last line) too.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct ProbeFigures {
    file: &'static str,
    appends: u64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

#[derive(Debug, Serialize)]
struct CommitFigures {
    mode: &'static str,
    producers: u32,
    records: u64,
    elapsed_s: f64,
    records_per_s: f64,
    batches: u64,
    records_per_batch_mean: f64,
    records_per_batch_max: u64,
    /// Closed loop only: append to durable, as the waiting producer saw it.
    ack_p50_us: Option<f64>,
    ack_p99_us: Option<f64>,
}

#[derive(Debug, Serialize)]
struct RecoveryFigures {
    records: u64,
    segments: u64,
    bytes: u64,
    elapsed_s: f64,
    records_per_s: f64,
}

#[derive(Debug, Serialize)]
struct Figures {
    dir: String,
    payload_bytes: usize,
    fsync_probe: Vec<ProbeFigures>,
    group_commit: Vec<CommitFigures>,
    recovery: RecoveryFigures,
}

/// A scratch directory removed on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(parent: &Path, name: &str) -> Result<Self, String> {
        let path = parent.join(format!("fepbench-wal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SETTINGS: &[u8] = b"fepbench wal";

/// Runs every leg and prints the figures.
pub fn run(opts: &WalBenchOpts) -> Result<(), String> {
    println!(
        "fepbench wal: on {} (a shared VM: figures are noisy)",
        opts.dir.display()
    );
    let mut probes = Vec::new();
    for kind in [ProbeFile::Growing, ProbeFile::Preallocated] {
        let p = probe(opts, kind)?;
        println!(
            "fsync probe, {:<12} file: {} x (4 KiB write + fdatasync): p50 {:.0} us, p99 {:.0} us, \
             max {:.0} us",
            p.file, p.appends, p.p50_us, p.p99_us, p.max_us
        );
        probes.push(p);
    }
    let mut group_commit = Vec::new();
    for sync in [WalSync::Batch, WalSync::None] {
        for &producers in &opts.producers {
            let f = group_commit_leg(opts, sync, producers)?;
            print_commit(&f);
            group_commit.push(f);
        }
    }
    for &producers in &opts.closed_producers {
        let f = closed_loop_leg(opts, producers)?;
        print_commit(&f);
        group_commit.push(f);
    }
    let recovery = recovery_leg(opts)?;
    println!(
        "recovery: {} records in {} segments ({} MiB) in {:.3} s: {:.0} records/s",
        recovery.records,
        recovery.segments,
        recovery.bytes >> 20,
        recovery.elapsed_s,
        recovery.records_per_s
    );
    if opts.json {
        let figures = Figures {
            dir: opts.dir.display().to_string(),
            payload_bytes: opts.payload,
            fsync_probe: probes,
            group_commit,
            recovery,
        };
        println!(
            "{}",
            serde_json::to_string(&figures).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}

fn print_commit(f: &CommitFigures) {
    let ack = match (f.ack_p50_us, f.ack_p99_us) {
        (Some(p50), Some(p99)) => format!(", ack p50 {p50:.0} us p99 {p99:.0} us"),
        _ => String::new(),
    };
    println!(
        "{:<6} producers {:>2}: {:>8} records in {:>7.3} s: {:>10.0} records/s, {:>6} batches \
         (mean {:.1}, max {} records){ack}",
        f.mode,
        f.producers,
        f.records,
        f.elapsed_s,
        f.records_per_s,
        f.batches,
        f.records_per_batch_mean,
        f.records_per_batch_max
    );
}

fn probe(opts: &WalBenchOpts, kind: ProbeFile) -> Result<ProbeFigures, String> {
    let scratch = Scratch::new(&opts.dir, "probe")?;
    let h = wal::probe_fsync(&scratch.0, opts.probe_appends, kind).map_err(|e| e.to_string())?;
    let us = |ns: u64| ns as f64 / 1000.0;
    Ok(ProbeFigures {
        file: match kind {
            ProbeFile::Growing => "growing",
            ProbeFile::Preallocated => "preallocated",
        },
        appends: h.len(),
        p50_us: us(h.value_at_quantile(0.5)),
        p99_us: us(h.value_at_quantile(0.99)),
        max_us: us(h.max()),
    })
}

fn start(dir: &Path, sync: WalSync) -> Result<Wal, String> {
    let config = WalConfig::new(dir, SETTINGS).sync(sync);
    Wal::start(
        config,
        AppendAt::NewSegment { seq_next: 1 },
        Box::new(|_| {}),
    )
    .map_err(|e| e.to_string())
}

fn group_commit_leg(
    opts: &WalBenchOpts,
    sync: WalSync,
    producers: u32,
) -> Result<CommitFigures, String> {
    let scratch = Scratch::new(&opts.dir, "commit")?;
    let wal = Arc::new(start(&scratch.0, sync)?);
    let per_producer = opts.records / u64::from(producers.max(1));
    let payload = vec![0x42u8; opts.payload];
    let t0 = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|_| {
            let wal = Arc::clone(&wal);
            let payload = payload.clone();
            std::thread::spawn(move || {
                for _ in 0..per_producer {
                    wal.append(&payload).map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a producer panicked".to_string())??;
    }
    let wal = Arc::into_inner(wal).ok_or("the WAL is still shared")?;
    // Shutdown returns once the last batch is durable: that is the end.
    let stats = wal.shutdown().map_err(|e| e.to_string())?;
    let elapsed = t0.elapsed();
    Ok(commit_figures(
        match sync {
            WalSync::Batch => "batch",
            WalSync::None => "none",
        },
        producers,
        stats.records,
        elapsed,
        stats.batches,
        stats.batch_records_max,
    ))
}

/// Producers that each wait for their record to be durable before the
/// next, woken by the WAL's durable callback (as an engine answering
/// clients would be): with one producer, one fdatasync per record.
fn closed_loop_leg(opts: &WalBenchOpts, producers: u32) -> Result<CommitFigures, String> {
    let scratch = Scratch::new(&opts.dir, "closed")?;
    let durable = Arc::new((Mutex::new(0u64), Condvar::new()));
    let notify = Arc::clone(&durable);
    let config = WalConfig::new(&scratch.0, SETTINGS);
    let on_durable = Box::new(move |seq| {
        let (lock, cv) = &*notify;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = seq;
        cv.notify_all();
    });
    let wal = Wal::start(config, AppendAt::NewSegment { seq_next: 1 }, on_durable)
        .map_err(|e| e.to_string())?;
    let wal = Arc::new(wal);
    let per_producer = (opts.per_record_count / u64::from(producers.max(1))).max(1);
    let payload = vec![0x42u8; opts.payload];
    let t0 = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|_| {
            let (wal, durable, payload) = (Arc::clone(&wal), Arc::clone(&durable), payload.clone());
            std::thread::spawn(move || {
                let mut acks = ack_histogram();
                for _ in 0..per_producer {
                    let sent = Instant::now();
                    let seq = wal.append(&payload).map_err(|e| e.to_string())?;
                    let (lock, cv) = &*durable;
                    let mut d = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while *d < seq {
                        d = cv.wait(d).unwrap_or_else(|e| e.into_inner());
                    }
                    drop(d);
                    let ns = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    acks.saturating_record(ns.max(1));
                }
                Ok::<_, String>(acks)
            })
        })
        .collect();
    let mut acks = ack_histogram();
    for t in threads {
        let h = t.join().map_err(|_| "a producer panicked".to_string())??;
        acks.add(&h).map_err(|e| e.to_string())?;
    }
    let elapsed = t0.elapsed();
    let wal = Arc::into_inner(wal).ok_or("the WAL is still shared")?;
    let stats = wal.shutdown().map_err(|e| e.to_string())?;
    let mut f = commit_figures(
        "closed",
        producers,
        stats.records,
        elapsed,
        stats.batches,
        stats.batch_records_max,
    );
    f.ack_p50_us = Some(acks.value_at_quantile(0.5) as f64 / 1000.0);
    f.ack_p99_us = Some(acks.value_at_quantile(0.99) as f64 / 1000.0);
    Ok(f)
}

fn commit_figures(
    mode: &'static str,
    producers: u32,
    records: u64,
    elapsed: Duration,
    batches: u64,
    batch_max: u64,
) -> CommitFigures {
    let s = elapsed.as_secs_f64();
    CommitFigures {
        mode,
        producers,
        records,
        elapsed_s: s,
        records_per_s: records as f64 / s,
        batches,
        records_per_batch_mean: records as f64 / batches.max(1) as f64,
        records_per_batch_max: batch_max,
        ack_p50_us: None,
        ack_p99_us: None,
    }
}

fn ack_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid bounds")
}

/// Writes `recovery_records` records (without fsync, to save the disk's
/// time; recovery reads the same bytes either way), then times
/// `wal::recover`: listing, reading every segment, checking every record.
fn recovery_leg(opts: &WalBenchOpts) -> Result<RecoveryFigures, String> {
    let scratch = Scratch::new(&opts.dir, "recovery")?;
    let wal = start(&scratch.0, WalSync::None)?;
    let payload = vec![0x42u8; opts.payload];
    for _ in 0..opts.recovery_records {
        wal.append(&payload).map_err(|e| e.to_string())?;
    }
    let stats = wal.shutdown().map_err(|e| e.to_string())?;
    let config = WalConfig::new(&scratch.0, SETTINGS);
    let mut records = 0u64;
    let mut bytes = 0u64;
    let t0 = Instant::now();
    let recovered = wal::recover(
        &config,
        |_, _| {},
        |r| {
            records += 1;
            bytes += r.len_encoded() as u64;
        },
    )
    .map_err(|e| e.to_string())?;
    let elapsed = t0.elapsed();
    if records != opts.recovery_records || recovered.seq_last != records {
        return Err(format!(
            "recovery found {records} records of {}",
            opts.recovery_records
        ));
    }
    Ok(RecoveryFigures {
        records,
        segments: stats.segments_created,
        bytes,
        elapsed_s: elapsed.as_secs_f64(),
        records_per_s: records as f64 / elapsed.as_secs_f64(),
    })
}
