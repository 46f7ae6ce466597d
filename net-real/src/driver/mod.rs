//! One worker's event loop: a mio poll, its sockets, and the engine.
//!
//! The loop: poll; read the clock once; for each readiness event feed the
//! engine (`handle_*`) and drain its effects completely; read the
//! connections that still have input waiting (a read budget cut them short,
//! or the service resumed them); take the bytes other workers handed over;
//! fire due deadlines; wake the workers this turn handed bytes to. The
//! engine's output buffer is the only buffer of outgoing bytes: the driver
//! writes from it and reports what went out. A read's input is lent to the
//! engine ([`Worker::handle_read_lent`]), so a forwarded payload can go
//! from the read buffer to the socket in the drain's vectored writes
//! ([`Worker::transmit_chunks`]); the loan ends
//! ([`Worker::settle_input`]) before the buffer is read into again.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use fep_core::{ConnId, Effect, InputGroup, Nanos, PeerId, Service, Worker, WorkerId};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::clock::monotonic_now;
use crate::config::{Config, WriteMode};
use crate::control::{Control, Mailboxes, Pushed};
use crate::limits::{
    CLOSE_DISCARD_BYTES_MAX, CLOSE_DISCARD_READS_MAX, EVENTS_PER_POLL_MAX, READS_PER_TURN_MAX,
    READ_BUF_LEN,
};
use crate::orphan::{Orphans, ORPHAN_TAG};
use crate::socket;
use crate::stats::IoStats;
use crate::timer::Timer;

mod dial;
mod journal;
mod write;

use crate::Observer;
use journal::JournalIo;
use write::Flush;

/// Which buffer of the driver's the engine's output may refer to.
#[derive(Clone, Copy, Debug)]
enum Loan {
    None,
    /// The front `n` bytes of the read buffer: one read.
    Read(usize),
    /// The bytes taken from a mailbox: one handoff batch.
    Inbound,
}

impl Loan {
    /// The bytes on loan, given the driver's two buffers.
    fn input<'a>(self, read_buf: &'a [u8], inbound: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            Loan::None => None,
            Loan::Read(n) => Some(&read_buf[..n]),
            Loan::Inbound => Some(inbound),
        }
    }
}

/// The worker's listening socket.
const LISTENER: Token = Token(0);
/// The worker's waker: handed bytes arrived, room was made in a mailbox, or
/// a shutdown began.
pub(crate) const WAKER: Token = Token(1);
/// The worker's deadline timer.
const TIMER: Token = Token(2);
/// Tag of a connection (dialling or open): `CONN_TAG | ConnId::to_bits()`.
/// The id's generation makes an event for a closed connection miss its
/// successor.
const CONN_TAG: usize = 1 << 62;

// A ConnId is 48 bits; it rides in a token below the tag.
const _: () = assert!(usize::BITS >= 64);

enum Target {
    Listener,
    Waker,
    Timer,
    Conn(ConnId),
    Orphan(Token),
}

fn target(token: Token) -> Option<Target> {
    match token {
        LISTENER => Some(Target::Listener),
        WAKER => Some(Target::Waker),
        TIMER => Some(Target::Timer),
        Token(t) if t & CONN_TAG != 0 => {
            Some(Target::Conn(ConnId::from_bits((t & !CONN_TAG) as u64)))
        }
        Token(t) if t & ORPHAN_TAG != 0 => Some(Target::Orphan(token)),
        Token(_) => None,
    }
}

fn conn_token(conn: ConnId) -> Token {
    let bits = usize::try_from(conn.to_bits()).expect("48 bits fit a 64-bit usize");
    Token(CONN_TAG | bits)
}

/// One socket of the worker: a dial in progress or an open connection.
#[derive(Debug)]
struct Conn {
    id: ConnId,
    stream: TcpStream,
    /// The dial has not completed yet.
    dialing: bool,
    /// Output is waiting for a `WRITABLE` event (after `WouldBlock`, or
    /// always in deferred mode).
    blocked: bool,
    /// The peer it dials or dialled, for a connection we opened.
    peer: Option<PeerId>,
    /// The engine asked to close it; it flushes its last bytes until then.
    closing_until: Option<Nanos>,
    /// Input read and dropped since it began closing (at most
    /// [`CLOSE_DISCARD_BYTES_MAX`] before its output is written).
    discarded: usize,
    /// The service asked for its input to stay in the kernel.
    paused: bool,
    /// In [`Driver::ready`]: input may wait that no event will announce.
    queued_ready: bool,
    /// In its input group's waiting list: readable while the group paused.
    queued_group: bool,
    /// In [`Driver::dirty`]: batched output waits for the end of the batch.
    queued_dirty: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deadline {
    Dial,
    Linger,
}

/// An input group as the driver sees it.
#[derive(Debug, Default)]
struct GroupIo {
    paused: bool,
    /// Connections found readable while the group was paused, in order: at
    /// most one entry per connection slot (a closed connection's is swept
    /// when the list would pass that).
    waiting: VecDeque<ConnId>,
    /// In [`Driver::resumed`]: its waiting connections are read this turn.
    scheduled: bool,
}

/// Everything one worker thread owns.
pub(crate) struct Driver<S: Service> {
    id: WorkerId,
    worker: Worker<S>,
    poll: Poll,
    /// Wakes the poll at the next deadline to the nanosecond (`None`: the
    /// kernel gave no timerfd; deadlines then round up to milliseconds).
    timer: Option<Timer>,
    listener: Option<TcpListener>,
    conns: Vec<Option<Conn>>,
    /// Dial and linger deadlines, oldest first. Each kind's duration is
    /// fixed, so they are due in the order they were set: the front is the
    /// next, and no deadline costs a scan of the connections.
    deadlines: VecDeque<(Nanos, ConnId, Deadline)>,
    lingering: usize,
    /// `unreachable[p]`: a failed dial to peer `p` was reported and no dial
    /// to it has succeeded since (with `Config::report_unreachable`).
    unreachable: Vec<bool>,
    /// Sockets of ended sessions whose peers have not closed yet.
    orphans: Orphans,
    read_buf: Box<[u8]>,
    /// The buffer lent to the engine: its output may refer to it until
    /// [`Driver::settle_input`].
    loan: Loan,
    config: Arc<Config>,
    control: Arc<Control>,
    mailboxes: Arc<Mailboxes>,
    /// Bytes taken from a mailbox, reused for every source.
    inbound: Vec<u8>,
    /// `wake_pending[t]`: this turn put the first bytes in a mailbox of `t`.
    wake_pending: Vec<bool>,
    /// `lane_waiting[t]`: bytes for `t` wait for room in its mailbox.
    lane_waiting: Vec<bool>,
    lanes_waiting: usize,
    draining: bool,
    /// Connections to read without a new event, each once, in order: a read
    /// budget cut them short, or the service resumed their input.
    ready: VecDeque<ConnId>,
    /// Input groups, by index, grown on first use.
    groups: Vec<GroupIo>,
    /// Groups resumed since their waiting connections were last read.
    resumed: Vec<InputGroup>,
    stats: IoStats,
    /// Batched write mode: connections with output to write before the
    /// next poll, each once.
    dirty: Vec<ConnId>,
    observer: Option<Observer<S>>,
    next_observe: Nanos,
    /// This worker's write-ahead log, if it journals.
    journal: Option<JournalIo>,
}

impl<S: Service> Driver<S> {
    pub(crate) fn new(
        worker: Worker<S>,
        poll: Poll,
        listener: Option<TcpListener>,
        config: Arc<Config>,
        control: Arc<Control>,
        mailboxes: Arc<Mailboxes>,
        observer: Option<Observer<S>>,
    ) -> io::Result<Driver<S>> {
        let mut listener = listener;
        if let Some(l) = listener.as_mut() {
            poll.registry().register(l, LISTENER, Interest::READABLE)?;
        }
        let workers = mailboxes.workers();
        let timer = match Timer::new(poll.registry(), TIMER) {
            Ok(timer) => Some(timer),
            Err(e) => {
                eprintln!(
                    "worker {}: no timerfd ({e}); deadlines round up to milliseconds",
                    worker.id().0
                );
                None
            }
        };
        Ok(Driver {
            id: worker.id(),
            worker,
            poll,
            timer,
            listener,
            conns: Vec::new(),
            deadlines: VecDeque::new(),
            lingering: 0,
            unreachable: vec![false; config.peers.len()],
            orphans: Orphans::default(),
            read_buf: vec![0; READ_BUF_LEN].into_boxed_slice(),
            loan: Loan::None,
            config,
            control,
            mailboxes,
            inbound: Vec::new(),
            wake_pending: vec![false; workers],
            lane_waiting: vec![false; workers],
            lanes_waiting: 0,
            draining: false,
            ready: VecDeque::new(),
            groups: Vec::new(),
            resumed: Vec::new(),
            stats: IoStats::default(),
            dirty: Vec::new(),
            observer,
            next_observe: Nanos::ZERO,
            journal: None,
        })
    }

    /// Runs until the service is done, or a shutdown drained (or timed out),
    /// then closes every socket and gives the worker back.
    pub(crate) fn run(mut self) -> (Worker<S>, IoStats) {
        let mut events = Events::with_capacity(EVENTS_PER_POLL_MAX);
        let mut ready_reported = false;
        let mut stop_at: Option<Nanos> = None;
        // The last poll looked without waiting and found nothing.
        let mut quiet = false;
        let me = self.id.index();
        let mut counted_done = false;
        let mut now = monotonic_now();
        self.worker.start(now);
        self.drain(now);
        loop {
            if self.control.is_forced() {
                break;
            }
            if self.control.is_shutdown() && !self.draining {
                self.begin_drain(now);
            }
            if !ready_reported && self.worker.is_ready() {
                ready_reported = true;
                self.control.report_ready();
            }
            let mut timeout = None;
            if self.draining || self.worker.is_done() {
                let at = *stop_at.get_or_insert(now + nanos(self.config.drain_timeout));
                if now >= at {
                    break;
                }
            }
            // Done, but input may already wait in the sockets (a ping that
            // crossed our last answer): a done worker looks once more
            // without sleeping before it counts itself done, and stops only
            // when every worker is done and one more look found nothing.
            let finished = self.worker.is_done() && self.is_flushed();
            if !finished {
                if counted_done {
                    counted_done = false;
                    self.control.set_done(me, false);
                }
            } else if !counted_done {
                if quiet {
                    counted_done = true;
                    self.control.set_done(me, true);
                } else {
                    timeout = Some(Duration::ZERO);
                }
            }
            if counted_done && self.control.all_done() {
                if quiet {
                    break;
                }
                timeout = Some(Duration::ZERO);
            }
            self.flush_dirty(now);
            if !self.ready.is_empty() || !self.resumed.is_empty() || self.orphans.has_ready() {
                // Input waits that no event will announce (a resume may
                // come from the last handoff of the turn).
                timeout = Some(Duration::ZERO);
            }
            let timeout = timeout.or_else(|| self.poll_timeout(now, stop_at));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("worker {}: poll failed, stopping: {e}", self.id.0);
                break;
            }
            // One clock read per poll return for the turn's bookkeeping;
            // each read that carries bytes reads it once more, for its
            // stamps.
            now = monotonic_now();
            self.stats.polls += 1;
            quiet = timeout == Some(Duration::ZERO)
                && events.is_empty()
                && self.ready.is_empty()
                && self.resumed.is_empty()
                && !self.orphans.has_ready();
            for event in events.iter() {
                self.handle_event(event, now);
            }
            self.read_ready(now);
            self.read_resumed(now);
            self.read_orphans();
            if self.take_handoffs() > 0 {
                quiet = false;
            }
            self.retry_lanes();
            self.poll_journal(now);
            self.fire_deadlines(now);
            self.send_wakes();
            self.observe(now, false);
        }
        let now = monotonic_now();
        self.close_all(now);
        self.observe(now, true);
        if let Some(j) = self.journal.take() {
            // The final sync: what was appended reaches the disk.
            match j.wal.shutdown() {
                Ok(w) => eprintln!(
                    "wal: {} records in {} batches ({} syncs, largest batch {}, pinned {})",
                    w.records, w.batches, w.syncs, w.batch_records_max, w.pinned
                ),
                Err(e) => eprintln!("worker {}: {e}", self.id.0),
            }
        }
        (self.worker, self.stats)
    }

    fn begin_drain(&mut self, now: Nanos) {
        self.draining = true;
        // New connections would only be refused: let the other listeners of
        // the port (or nobody) take them.
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.worker.handle_shutdown(now);
        self.drain(now);
    }

    /// Nothing waits to be written. Asked only once the service is done.
    fn is_flushed(&self) -> bool {
        self.lingering == 0
            && self.lanes_waiting == 0
            && self.conns.iter().flatten().all(|c| !c.blocked)
    }

    /// How long the next poll may sleep: not at all when busy-polling or
    /// when a deadline is due; otherwise until an event, with the timer
    /// armed at the next deadline.
    fn poll_timeout(&mut self, now: Nanos, stop_at: Option<Nanos>) -> Option<Duration> {
        if self.config.busy_poll {
            return Some(Duration::ZERO);
        }
        let at = self.next_deadline(stop_at)?;
        let Some(wait) = at.checked_since(now).filter(|w| *w > Nanos::ZERO) else {
            return Some(Duration::ZERO);
        };
        match self.timer.as_mut().map(|timer| timer.arm(at)) {
            Some(Ok(())) => None,
            Some(Err(e)) => {
                eprintln!(
                    "worker {}: cannot arm the timer ({e}); deadlines round up to milliseconds",
                    self.id.0
                );
                self.timer = None;
                Some(Duration::from_nanos(wait.0))
            }
            None => Some(Duration::from_nanos(wait.0)),
        }
    }

    /// The earliest time the loop must look again without an event: the
    /// service's deadline (its one timer channel, asked once per turn), the
    /// observer's, the drain's end, and the next dial or linger deadline.
    fn next_deadline(&self, stop_at: Option<Nanos>) -> Option<Nanos> {
        [
            self.worker.poll_timeout(),
            self.observer.as_ref().map(|_| self.next_observe),
            stop_at,
            self.deadlines.front().map(|d| d.0),
            self.orphans.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Lets the observer look at the service when its period is up (or
    /// `last`: the worker stops).
    fn observe(&mut self, now: Nanos, last: bool) {
        let Some(observer) = &self.observer else {
            return;
        };
        if now >= self.next_observe || last {
            observer(self.id, self.worker.service());
            self.next_observe = now + nanos(self.config.observe_every);
        }
    }

    fn handle_event(&mut self, event: &Event, now: Nanos) {
        match target(event.token()) {
            Some(Target::Listener) => self.accept_all(now),
            // Handoffs are taken after every poll, and the shutdown flag is
            // read before every poll: the wake-up itself carries nothing.
            Some(Target::Timer) => {
                if let Some(timer) = self.timer.as_mut() {
                    timer.expired();
                }
            }
            Some(Target::Waker) | None => {}
            Some(Target::Orphan(token)) => {
                // The read buffer takes the dropped bytes: no output may
                // refer to it any more.
                self.settle_input();
                self.orphans
                    .readable(self.poll.registry(), token, &mut self.read_buf);
            }
            Some(Target::Conn(conn)) => {
                if self.conn_mut(conn).is_some_and(|c| c.dialing) {
                    return self.finish_dial(conn, now);
                }
                let hangup = event.is_read_closed() || event.is_error();
                if event.is_writable() || event.is_error() {
                    self.writable(conn, now);
                }
                if event.is_readable() || hangup {
                    self.read(conn, hangup, now);
                }
            }
        }
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        find(&mut self.conns, id)
    }

    // ---- input -------------------------------------------------------

    fn accept_all(&mut self, now: Nanos) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => self.adopt_accepted(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors or memory: the connection waits in
                    // the kernel's queue; the next arrival retries.
                    eprintln!("worker {}: accept failed: {e}", self.id.0);
                    return;
                }
            }
        }
    }

    fn adopt_accepted(&mut self, stream: TcpStream, now: Nanos) {
        if socket::configure_stream(&stream, &self.config).is_err() {
            return;
        }
        self.stats.accepted += 1;
        // `None`: the session table is full; dropping the stream refuses it.
        if let Some(conn) = self.worker.handle_accepted(now) {
            if self.register(conn, stream, false, now) {
                self.drain(now);
            }
        }
    }

    /// Makes `stream` the socket of the engine's `conn`. Returns `false`
    /// (the engine told) when it cannot be registered.
    fn register(&mut self, conn: ConnId, mut stream: TcpStream, dialing: bool, now: Nanos) -> bool {
        let interest = match (dialing, self.config.write_mode) {
            // A dial completes with WRITABLE. Edge-triggered: registering
            // WRITABLE up front costs one spurious event per connection and
            // saves a reregister per `WouldBlock`; a write is still
            // attempted before any wait.
            (true, _) | (false, WriteMode::Speculative | WriteMode::Batched) => {
                Interest::READABLE | Interest::WRITABLE
            }
            (false, WriteMode::Deferred) => Interest::READABLE,
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, conn_token(conn), interest)
        {
            eprintln!("worker {}: register failed: {e}", self.id.0);
            if dialing {
                self.worker.handle_connect_failed(now, conn);
            } else {
                self.worker.handle_closed(now, conn);
            }
            return false;
        }
        let index = conn.index();
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        assert!(self.conns[index].is_none(), "{conn:?}: slot still in use");
        self.conns[index] = Some(Conn {
            id: conn,
            stream,
            dialing,
            blocked: false,
            peer: None,
            closing_until: None,
            discarded: 0,
            paused: false,
            queued_ready: false,
            queued_group: false,
            queued_dirty: false,
        });
        true
    }

    /// Reads `conn` until the kernel has nothing more, the service pauses
    /// it, or its read budget for this turn is spent (then it goes on next
    /// turn, so one busy peer cannot starve the rest).
    fn read(&mut self, conn: ConnId, hangup: bool, now: Nanos) {
        for _ in 0..READS_PER_TURN_MAX {
            let Some(c) = find(&mut self.conns, conn) else {
                return;
            };
            let closing = c.closing_until.is_some();
            // A closing connection's input is dropped, up to a bound: a
            // peer that sends on without reading then meets TCP's
            // backpressure, stops, and can read its last answers and the
            // `Error` before the linger runs out (dropped for good, it would
            // send until the close, whose RST would destroy them).
            if closing && c.discarded >= CLOSE_DISCARD_BYTES_MAX && !hangup {
                return;
            }
            // Backpressure: the bytes stay in the kernel until the service
            // resumes the input. After a hang-up it is read to the end.
            if !closing && !hangup {
                if c.paused {
                    return;
                }
                if let Some(group) = self.worker.input_group(conn) {
                    let g = group.index();
                    if self.groups.get(g).is_some_and(|g| g.paused) {
                        if !c.queued_group {
                            c.queued_group = true;
                            let waiting = &mut self.groups[g].waiting;
                            waiting.push_back(conn);
                            // Entries of connections that closed while the
                            // group stayed paused wait for its resume; past
                            // one per slot they are swept out, so the list
                            // never holds more than the worker's slots.
                            if waiting.len() > self.conns.len() {
                                let conns = &mut self.conns;
                                waiting
                                    .retain(|&id| find(conns, id).is_some_and(|c| c.queued_group));
                            }
                        }
                        return;
                    }
                }
            }
            match (&c.stream).read(&mut self.read_buf) {
                Ok(0) => {
                    self.finalize(conn, now);
                    self.drain(now);
                    return;
                }
                Ok(n) => {
                    // Input of a closing connection is dropped; it is read
                    // only so that the close sends FIN, not RST.
                    self.stats.reads += 1;
                    if closing {
                        c.discarded += n;
                    } else {
                        // The one clock read of this input: the stamps it
                        // causes (t2, t4) must not be older than the bytes.
                        let now = monotonic_now();
                        // Lent: a frame forwarded from this input is
                        // stamped in place and written from the read
                        // buffer by the drain's speculative writes; what
                        // they leave is copied when the input is settled.
                        self.worker
                            .handle_read_lent(now, conn, &mut self.read_buf[..n]);
                        self.loan = Loan::Read(n);
                        self.drain(now);
                        self.settle_input();
                    }
                    // A short read emptied the socket; with edge-triggered
                    // readiness, newer bytes bring a new event. That saves
                    // the read that would only say `WouldBlock`. After a
                    // hang-up no event follows: read on to the end.
                    if n < self.read_buf.len() && !hangup {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.finalize(conn, now);
                    self.drain(now);
                    return;
                }
            }
        }
        self.queue_ready(conn);
    }

    /// Reads the orphans whose read budget ran out last turn into the read
    /// buffer (no output may refer to it any more).
    fn read_orphans(&mut self) {
        if self.orphans.has_ready() {
            self.settle_input();
            self.orphans
                .read_ready(self.poll.registry(), &mut self.read_buf);
        }
    }

    /// Ends the loan of an input to the engine, if any.
    fn settle_input(&mut self) {
        if let Some(input) = self.loan.input(&self.read_buf, &self.inbound) {
            self.worker.settle_input(input);
            self.loan = Loan::None;
        }
    }

    fn queue_ready(&mut self, conn: ConnId) {
        if let Some(c) = find(&mut self.conns, conn) {
            if !c.queued_ready {
                c.queued_ready = true;
                self.ready.push_back(conn);
            }
        }
    }

    /// Reads, once each, the connections queued before this turn's events.
    fn read_ready(&mut self, now: Nanos) {
        for _ in 0..self.ready.len() {
            let Some(conn) = self.ready.pop_front() else {
                return;
            };
            let Some(c) = find(&mut self.conns, conn) else {
                continue;
            };
            c.queued_ready = false;
            if !c.dialing {
                self.read(conn, false, now);
            }
        }
    }

    fn writable(&mut self, conn: ConnId, now: Nanos) {
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        if !c.blocked && c.closing_until.is_none() {
            return;
        }
        match self.flush(conn, now) {
            Flush::Blocked => {}
            Flush::Done => {
                if self
                    .conn_mut(conn)
                    .is_some_and(|c| c.closing_until.is_some())
                {
                    self.retire(conn, now);
                }
            }
            Flush::Failed => self.finalize(conn, now),
        }
        // What went out may have drained a backlog: the service may resume
        // input, or say more.
        self.drain(now);
    }

    /// Delivers the bytes other workers left for this one; returns how
    /// many mailboxes had some.
    fn take_handoffs(&mut self) -> usize {
        let me = self.id.index();
        let mut taken = 0;
        for source in 0..self.mailboxes.workers() {
            if source == me {
                continue;
            }
            let producer_waiting = self.mailboxes.take(source, me, &mut self.inbound);
            if producer_waiting {
                self.control.wake(source);
            }
            if self.inbound.is_empty() {
                continue;
            }
            let from = WorkerId(u16::try_from(source).expect("bounded by WORKERS_MAX"));
            // A batch stamps what it forwards (t2) and returns (t4). Lent
            // like a read: frames forwarded from it are written from it.
            let now = monotonic_now();
            self.worker
                .handle_handoff_lent(now, from, &mut self.inbound);
            self.loan = Loan::Inbound;
            self.drain(now);
            self.settle_input();
            self.inbound.clear();
            taken += 1;
            self.stats.handoffs_received += 1;
        }
        taken
    }

    /// Offers again the bytes that found a mailbox full.
    fn retry_lanes(&mut self) {
        if self.lanes_waiting == 0 {
            return;
        }
        for t in 0..self.lane_waiting.len() {
            if self.lane_waiting[t] {
                self.lane_waiting[t] = false;
                self.lanes_waiting -= 1;
                let target = WorkerId(u16::try_from(t).expect("bounded by WORKERS_MAX"));
                self.handoff(target);
            }
        }
    }

    fn fire_deadlines(&mut self, now: Nanos) {
        if self.worker.poll_timeout().is_some_and(|at| at <= now) {
            self.worker.handle_timeout(now);
            self.drain(now);
        }
        self.stats.lingers_expired += self.orphans.expire(self.poll.registry(), now);
        while let Some(&(at, conn, kind)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(c) = self.conn_mut(conn) else {
                continue;
            };
            match kind {
                Deadline::Dial if c.dialing => {
                    let peer = c.peer;
                    let why = io::Error::from(io::ErrorKind::TimedOut);
                    self.say_unreachable(peer, &why);
                    self.stats.dial_failures += 1;
                    self.drop_socket(conn);
                    self.worker.handle_connect_failed(now, conn);
                }
                Deadline::Linger if c.closing_until.is_some() => {
                    self.stats.lingers_expired += 1;
                    self.finalize(conn, now);
                }
                Deadline::Dial | Deadline::Linger => continue,
            }
            self.drain(now);
        }
    }

    fn send_wakes(&mut self) {
        for target in 0..self.wake_pending.len() {
            if std::mem::take(&mut self.wake_pending[target]) && !self.config.busy_poll {
                // A busy-polling target looks at its mailboxes every turn.
                self.control.wake(target);
            }
        }
    }

    // ---- effects -----------------------------------------------------

    /// Carries out every effect the engine has queued.
    fn drain(&mut self, now: Nanos) {
        while let Some(effect) = self.worker.poll_effect() {
            match effect {
                Effect::Transmit { conn } => self.transmit(conn, now),
                Effect::Close { conn } => self.close(conn, now),
                Effect::Connect { conn, peer } => self.dial(conn, peer, now),
                Effect::Handoff { target } => self.handoff(target),
                Effect::PauseInput { conn } => {
                    if let Some(c) = self.conn_mut(conn) {
                        c.paused = true;
                        self.stats.input_pauses += 1;
                    }
                }
                Effect::ResumeInput { conn } => {
                    if let Some(c) = self.conn_mut(conn) {
                        c.paused = false;
                        // What waited in the kernel brings no new event.
                        self.queue_ready(conn);
                    }
                }
                Effect::PauseGroup { group } => {
                    self.group_mut(group).paused = true;
                    self.stats.input_pauses += 1;
                }
                Effect::ResumeGroup { group } => self.resume_group(group),
                Effect::Journal => self.append_journal(now),
                Effect::Snapshot => self.take_snapshot(),
                other => unreachable!("fep-net knows no {other:?}"),
            }
        }
    }

    fn group_mut(&mut self, group: InputGroup) -> &mut GroupIo {
        let g = group.index();
        if self.groups.len() <= g {
            self.groups.resize_with(g + 1, GroupIo::default);
        }
        &mut self.groups[g]
    }

    /// The group's connections that were readable while it paused are
    /// read before the next poll ([`Driver::read_resumed`]).
    fn resume_group(&mut self, group: InputGroup) {
        let g = self.group_mut(group);
        g.paused = false;
        if !g.scheduled && !g.waiting.is_empty() {
            g.scheduled = true;
            self.resumed.push(group);
        }
    }

    /// Reads the waiting connections of resumed groups, oldest first, until
    /// each group is empty or paused again: the work is one read per
    /// connection read, whatever the number left waiting.
    fn read_resumed(&mut self, now: Nanos) {
        while let Some(group) = self.resumed.pop() {
            let g = group.index();
            self.groups[g].scheduled = false;
            while !self.groups[g].paused {
                let Some(conn) = self.groups[g].waiting.pop_front() else {
                    break;
                };
                if let Some(c) = find(&mut self.conns, conn) {
                    c.queued_group = false;
                    // Paused again part-way: it queues at the back.
                    self.read(conn, false, now);
                }
            }
        }
    }

    fn close(&mut self, conn: ConnId, now: Nanos) {
        let linger = nanos(self.config.close_linger);
        let Some(c) = self.conn_mut(conn) else {
            // Never registered (or gone already): the engine still closes it.
            self.worker.handle_closed(now, conn);
            return;
        };
        if c.dialing {
            // An abandoned dial: nothing to flush.
            return self.finalize(conn, now);
        }
        if c.closing_until.is_some() {
            return;
        }
        match self.flush(conn, now) {
            Flush::Done => self.retire(conn, now),
            Flush::Failed => self.finalize(conn, now),
            Flush::Blocked => {
                let c = find(&mut self.conns, conn).expect("flush keeps the conn");
                c.closing_until = Some(now + linger);
                let token = conn_token(conn);
                let interest = Interest::READABLE | Interest::WRITABLE;
                let rearmed = match self.config.write_mode {
                    WriteMode::Speculative | WriteMode::Batched => true,
                    WriteMode::Deferred => self
                        .poll
                        .registry()
                        .reregister(&mut c.stream, token, interest)
                        .is_ok(),
                };
                self.lingering += 1;
                self.deadlines
                    .push_back((now + linger, conn, Deadline::Linger));
                if !rearmed {
                    self.finalize(conn, now);
                }
            }
        }
    }

    /// `conn` is closing and its output is all with the kernel: the session
    /// ends, and the socket lingers as an orphan until the peer has read
    /// the last bytes and closed (see [`crate::orphan`]).
    fn retire(&mut self, conn: ConnId, now: Nanos) {
        let Some(c) = self.take_socket(conn) else {
            return;
        };
        let until = now + nanos(self.config.close_linger);
        self.orphans
            .adopt(self.poll.registry(), c.stream, c.discarded, until);
        self.worker.handle_closed(now, conn);
    }

    /// Closes `conn`'s socket (if it has one) and tells the engine.
    fn finalize(&mut self, conn: ConnId, now: Nanos) {
        self.drop_socket(conn);
        self.worker.handle_closed(now, conn);
    }

    /// Closes `conn`'s socket, if it still has one.
    fn drop_socket(&mut self, conn: ConnId) {
        let Some(c) = self.take_socket(conn) else {
            return;
        };
        if !c.dialing {
            // The discarded bytes land in the read buffer: output that
            // refers to a lent input takes its copy first.
            self.settle_input();
            discard_input(&c.stream, &mut self.read_buf);
        }
    }

    /// Takes `conn`'s socket out of its slot and out of the poll, if it
    /// still has one.
    fn take_socket(&mut self, conn: ConnId) -> Option<Conn> {
        let slot = self.conns.get_mut(conn.index())?;
        if slot.as_ref().is_none_or(|c| c.id != conn) {
            return None;
        }
        let mut c = slot.take().expect("checked above");
        if c.closing_until.is_some() {
            self.lingering -= 1;
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
        Some(c)
    }

    /// Moves the bytes the engine holds for `target` into their mailbox,
    /// all or none; when the mailbox is full they wait for the target's
    /// wake-up.
    fn handoff(&mut self, target: WorkerId) {
        let t = target.index();
        let bytes = self.worker.handoff_buf(target);
        if bytes.is_empty() || self.lane_waiting[t] {
            return;
        }
        if !self.control.is_alive(t) {
            // The target stopped: nobody will read these. The process is
            // stopping; the service's in-flight counts say what was lost.
            self.worker.handle_handed_off(target);
            return;
        }
        match self.mailboxes.push(self.id.index(), t, bytes) {
            Pushed::First => {
                self.wake_pending[t] = true;
                self.stats.handoffs_sent += 1;
                self.worker.handle_handed_off(target);
            }
            Pushed::Behind => {
                self.stats.handoffs_sent += 1;
                self.worker.handle_handed_off(target);
            }
            Pushed::Full => {
                self.stats.handoff_waits += 1;
                self.lane_waiting[t] = true;
                self.lanes_waiting += 1;
                // The target may be asleep with a full mailbox: make sure
                // it looks.
                self.wake_pending[t] = true;
            }
        }
    }

    // ---- the end -----------------------------------------------------

    /// Closes every socket; the engine sees each close. What the service
    /// asks for after that (writes, dials, handoffs) goes nowhere: the worker
    /// is stopping.
    fn close_all(&mut self, now: Nanos) {
        // Workers that hand us bytes from now on have them dropped.
        self.control.report_exited(self.id.index());
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for index in 0..self.conns.len() {
            let Some(id) = self.conns[index].as_ref().map(|c| c.id) else {
                continue;
            };
            let _ = self.flush(id, now);
            self.finalize(id, now);
            self.drain_final(now);
        }
        self.drain_final(now);
    }

    fn drain_final(&mut self, now: Nanos) {
        while let Some(effect) = self.worker.poll_effect() {
            match effect {
                Effect::Transmit { conn } => {
                    let _ = self.flush(conn, now);
                }
                Effect::Close { conn } => {
                    let _ = self.flush(conn, now);
                    self.finalize(conn, now);
                }
                Effect::Connect { conn, .. } => self.worker.handle_connect_failed(now, conn),
                Effect::Handoff { target } => self.worker.handle_handed_off(target),
                _ => {}
            }
        }
    }
}

/// The connection `id` if its slot still holds it (not a successor).
fn find(conns: &mut [Option<Conn>], id: ConnId) -> Option<&mut Conn> {
    conns.get_mut(id.index())?.as_mut().filter(|c| c.id == id)
}

/// Reads and drops what the peer sent last, so the close sends FIN: closing
/// with unread input sends RST, which may destroy our last frame (an
/// `Error`) in the peer's receive queue.
fn discard_input(stream: &TcpStream, buf: &mut [u8]) {
    let mut reader = stream;
    for _ in 0..CLOSE_DISCARD_READS_MAX {
        match reader.read(buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn nanos(d: Duration) -> Nanos {
    Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
