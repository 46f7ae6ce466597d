//! What the workers of one process share: the shutdown flag, readiness, the
//! wakers, and the handoff queues.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use mio::Waker;

/// Whether every worker became ready, as seen by [`crate::Running::wait_ready`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Every worker's service said [`fep_core::Service::is_ready`].
    Ready,
    /// The timeout passed first.
    TimedOut,
    /// A worker stopped before all were ready (shutdown, done, or a panic).
    Stopped,
}

#[derive(Debug, Default)]
struct Progress {
    ready: usize,
    exited: usize,
}

/// Process-wide control, one per driver.
#[derive(Debug)]
pub(crate) struct Control {
    workers: usize,
    shutdown: AtomicBool,
    /// A second signal: skip the drain.
    force: AtomicBool,
    /// `alive[i]`: worker `i` still takes handoffs.
    alive: Vec<AtomicBool>,
    /// `done[i]`: worker `i`'s service is done and its output flushed.
    done: Vec<AtomicBool>,
    /// How many of `done` are set.
    done_count: AtomicUsize,
    wakers: Vec<Waker>,
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl Control {
    /// `wakers[i]` wakes worker `i`'s poll.
    pub(crate) fn new(wakers: Vec<Waker>) -> Control {
        let workers = wakers.len();
        Control {
            workers,
            shutdown: AtomicBool::new(false),
            force: AtomicBool::new(false),
            alive: (0..workers).map(|_| AtomicBool::new(true)).collect(),
            done: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            done_count: AtomicUsize::new(0),
            wakers,
            progress: Mutex::new(Progress::default()),
            changed: Condvar::new(),
        }
    }

    /// Wakes worker `worker` from its poll.
    pub(crate) fn wake(&self, worker: usize) {
        // A failed wake (eventfd full) means a wake-up is already pending.
        let _ = self.wakers[worker].wake();
    }

    /// Asks every worker to drain; a second call skips the drain.
    pub(crate) fn shutdown(&self) {
        if self.shutdown.swap(true, Ordering::SeqCst) {
            self.force.store(true, Ordering::SeqCst);
        }
        self.wake_all();
    }

    /// Asks every worker to stop at once, without a drain.
    pub(crate) fn abort(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.force.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        for worker in 0..self.workers {
            self.wake(worker);
        }
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    pub(crate) fn is_forced(&self) -> bool {
        self.force.load(Ordering::Relaxed)
    }

    pub(crate) fn is_alive(&self, worker: usize) -> bool {
        self.alive[worker].load(Ordering::Acquire)
    }

    /// Marks worker `worker` done (or busy again). The workers of a process
    /// stop together, once all are done: a worker that finished early still
    /// takes the tasks of those that drain (a ping handed over in the last
    /// instant is forwarded, not refused). The last one wakes the others.
    pub(crate) fn set_done(&self, worker: usize, done: bool) {
        if self.done[worker].swap(done, Ordering::SeqCst) == done {
            return;
        }
        if done {
            if self.done_count.fetch_add(1, Ordering::SeqCst) + 1 == self.workers {
                self.wake_all();
            }
        } else {
            self.done_count.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether every worker is done.
    pub(crate) fn all_done(&self) -> bool {
        self.done_count.load(Ordering::SeqCst) == self.workers
    }

    pub(crate) fn report_ready(&self) {
        let mut p = self.progress.lock().expect("progress lock");
        p.ready += 1;
        self.changed.notify_all();
    }

    pub(crate) fn report_exited(&self, worker: usize) {
        self.alive[worker].store(false, Ordering::Release);
        // A stopped worker holds nobody back.
        self.set_done(worker, true);
        let mut p = self.progress.lock().expect("progress lock");
        p.exited += 1;
        self.changed.notify_all();
    }

    pub(crate) fn wait_ready(&self, timeout: Option<Duration>) -> Readiness {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut p = self.progress.lock().expect("progress lock");
        loop {
            if p.ready >= self.workers {
                return Readiness::Ready;
            }
            if p.exited > 0 {
                return Readiness::Stopped;
            }
            p = match deadline {
                None => self.changed.wait(p).expect("progress lock"),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Readiness::TimedOut;
                    }
                    self.changed
                        .wait_timeout(p, deadline - now)
                        .expect("progress lock")
                        .0
                }
            };
        }
    }
}

/// The handoff mailboxes of one process: one per (source, target) pair,
/// a buffer of whole frames under its own lock, so each pair keeps its
/// order and no producer contends with another.
///
/// A producer appends its worker's whole batch at once (one lock, one copy);
/// the consumer swaps the mailbox's buffer with its own empty one (one
/// lock, no copy). Each drain of a mailbox is one wake-up, whatever the
/// number of frames in it.
#[derive(Debug)]
pub(crate) struct Mailboxes {
    workers: usize,
    /// Bytes past which a mailbox takes no more until it is drained.
    bytes_max: usize,
    boxes: Box<[Mutex<Mailbox>]>,
}

#[derive(Debug, Default)]
struct Mailbox {
    bytes: Vec<u8>,
    /// A producer found it full: the consumer wakes it once it drained.
    producer_waiting: bool,
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Appended to an empty mailbox: wake the consumer.
    First,
    /// Appended behind bytes the consumer has not taken yet (its wake-up is
    /// already on its way).
    Behind,
    /// The mailbox is past its bound: keep the bytes and try again after
    /// the consumer's wake-up.
    Full,
}

impl Mailboxes {
    pub(crate) fn new(workers: usize, bytes_max: usize) -> Mailboxes {
        assert!(bytes_max > 0, "a mailbox needs room");
        Mailboxes {
            workers,
            bytes_max,
            boxes: (0..workers * workers)
                .map(|_| Mutex::new(Mailbox::default()))
                .collect(),
        }
    }

    fn mailbox(&self, source: usize, target: usize) -> &Mutex<Mailbox> {
        assert!(source < self.workers && target < self.workers);
        &self.boxes[source * self.workers + target]
    }

    /// Appends `bytes` (whole frames) for `target`, unless the mailbox is
    /// past its bound. It may pass the bound by one batch: a batch is never
    /// split, so frames stay whole.
    pub(crate) fn push(&self, source: usize, target: usize, bytes: &[u8]) -> Pushed {
        let mut mailbox = self.mailbox(source, target).lock().expect("mailbox lock");
        if mailbox.bytes.len() >= self.bytes_max {
            mailbox.producer_waiting = true;
            return Pushed::Full;
        }
        let first = mailbox.bytes.is_empty();
        mailbox.bytes.extend_from_slice(bytes);
        if first {
            Pushed::First
        } else {
            Pushed::Behind
        }
    }

    /// Swaps what `source` left for `target` into `into` (which must be
    /// empty). Returns whether the producer waits for room.
    pub(crate) fn take(&self, source: usize, target: usize, into: &mut Vec<u8>) -> bool {
        debug_assert!(into.is_empty());
        let mut mailbox = self.mailbox(source, target).lock().expect("mailbox lock");
        std::mem::swap(&mut mailbox.bytes, into);
        std::mem::take(&mut mailbox.producer_waiting)
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers
    }
}
