//! One worker's event loop: a mio poll, its sockets, and the engine.
//!
//! The loop: poll; for each readiness event feed the engine (`handle_*`) and
//! drain its effects completely; take the tasks other workers handed over;
//! fire due deadlines; wake the workers this batch handed tasks to. The
//! engine's output buffer is the only buffer of outgoing bytes: the driver
//! writes from [`Worker::transmit_buf`] and reports what went out.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use fep_core::{ConnId, Effect, Nanos, PeerId, Service, Worker, WorkerId};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::clock::monotonic_now;
use crate::config::{Config, WriteMode};
use crate::control::{Control, Handoffs};
use crate::limits::{
    CLOSE_DISCARD_READS_MAX, DIALS_PER_WORKER_MAX, EVENTS_PER_POLL_MAX, INPUT_PAUSE_RECHECK,
    READ_BUF_LEN,
};
use crate::socket;
use crate::stats::IoStats;
use crate::timer::Timer;
use crate::Observer;

/// The worker's listening socket.
const LISTENER: Token = Token(0);
/// The worker's waker: a handoff arrived or a shutdown began.
pub(crate) const WAKER: Token = Token(1);
/// The worker's deadline timer.
const TIMER: Token = Token(2);
/// Tag of a dial in progress: `DIAL_TAG | slot`.
const DIAL_TAG: usize = 1 << 61;
/// Tag of an open connection: `CONN_TAG | ConnId::to_bits()`. The id's
/// generation makes an event for a closed connection miss its successor.
const CONN_TAG: usize = 1 << 62;

// A ConnId is 48 bits; it rides in a token below the tags.
const _: () = assert!(usize::BITS >= 64);
const _: () = assert!(DIALS_PER_WORKER_MAX < DIAL_TAG);

enum Target {
    Listener,
    Waker,
    Timer,
    Dial(usize),
    Conn(ConnId),
}

fn target(token: Token) -> Option<Target> {
    match token {
        LISTENER => Some(Target::Listener),
        WAKER => Some(Target::Waker),
        TIMER => Some(Target::Timer),
        Token(t) if t & CONN_TAG != 0 => {
            Some(Target::Conn(ConnId::from_bits((t & !CONN_TAG) as u64)))
        }
        Token(t) if t & DIAL_TAG != 0 => Some(Target::Dial(t & !DIAL_TAG)),
        Token(_) => None,
    }
}

fn conn_token(conn: ConnId) -> Token {
    let bits = usize::try_from(conn.to_bits()).expect("48 bits fit a 64-bit usize");
    Token(CONN_TAG | bits)
}

/// One open socket of the worker.
#[derive(Debug)]
struct Conn {
    id: ConnId,
    stream: TcpStream,
    /// Output is waiting for a `WRITABLE` event (after `WouldBlock`, or
    /// always in deferred mode).
    blocked: bool,
    /// The engine asked to close it; it flushes its last bytes until then.
    closing_until: Option<Nanos>,
    /// Readable, but the service refused its input for now: it waits in
    /// [`Driver::paused`] (edge-triggered, no new event would come).
    paused: bool,
    /// In [`Driver::dirty`]: batched output waits for the end of the batch.
    queued: bool,
}

/// A dial in progress.
#[derive(Debug)]
struct Dial {
    peer: PeerId,
    stream: TcpStream,
    deadline: Nanos,
}

enum Flush {
    Done,
    Blocked,
    Failed,
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
    dials: Vec<Option<Dial>>,
    dials_len: usize,
    lingering: usize,
    read_buf: Box<[u8]>,
    config: Arc<Config>,
    control: Arc<Control>,
    handoffs: Arc<Handoffs<S::Task>>,
    /// `wake_pending[t]`: this batch handed worker `t` a task.
    wake_pending: Vec<bool>,
    /// `refusing[t]`: a task for `t` was refused during this drain; later
    /// ones are refused too, so the service gets them back in order.
    refusing: Vec<bool>,
    refusing_any: bool,
    draining: bool,
    /// Connections with unread input the service refused, oldest first.
    paused: VecDeque<ConnId>,
    /// The previous batch of `paused`, kept for its allocation.
    paused_spare: VecDeque<ConnId>,
    /// Paused connections are being read: the reads must not start another
    /// round of resumption.
    resuming: bool,
    stats: IoStats,
    /// Batched write mode: connections with output to write before the
    /// next poll, each once.
    dirty: Vec<ConnId>,
    observer: Option<Observer<S>>,
    next_observe: Nanos,
}

impl<S: Service> Driver<S> {
    pub(crate) fn new(
        worker: Worker<S>,
        poll: Poll,
        listener: Option<TcpListener>,
        config: Arc<Config>,
        control: Arc<Control>,
        handoffs: Arc<Handoffs<S::Task>>,
        observer: Option<Observer<S>>,
    ) -> io::Result<Driver<S>> {
        let mut listener = listener;
        if let Some(l) = listener.as_mut() {
            poll.registry().register(l, LISTENER, Interest::READABLE)?;
        }
        let workers = handoffs.workers();
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
            dials: Vec::new(),
            dials_len: 0,
            lingering: 0,
            read_buf: vec![0; READ_BUF_LEN].into_boxed_slice(),
            config,
            control,
            handoffs,
            wake_pending: vec![false; workers],
            refusing: vec![false; workers],
            refusing_any: false,
            draining: false,
            paused: VecDeque::new(),
            paused_spare: VecDeque::new(),
            resuming: false,
            stats: IoStats::default(),
            dirty: Vec::new(),
            observer,
            next_observe: Nanos::ZERO,
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
        let now = monotonic_now();
        self.worker.start(now);
        self.drain(now);
        loop {
            let now = monotonic_now();
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
            let timeout = timeout.or_else(|| self.poll_timeout(now, stop_at));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("worker {}: poll failed, stopping: {e}", self.id.0);
                break;
            }
            self.stats.polls += 1;
            quiet = timeout == Some(Duration::ZERO) && events.is_empty();
            for event in events.iter() {
                self.handle_event(event);
            }
            if self.take_handoffs() > 0 {
                quiet = false;
            }
            self.resume_paused();
            if !self.paused.is_empty() {
                quiet = false;
            }
            self.fire_deadlines(monotonic_now());
            self.send_wakes();
            self.observe(monotonic_now(), false);
        }
        self.close_all(monotonic_now());
        self.observe(monotonic_now(), true);
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

    fn is_flushed(&self) -> bool {
        self.lingering == 0 && self.conns.iter().flatten().all(|c| !c.blocked)
    }

    /// How long the next poll may sleep: not at all when busy-polling or
    /// when a deadline is due; otherwise until an event, with the timer
    /// armed at the next deadline.
    fn poll_timeout(&mut self, now: Nanos, stop_at: Option<Nanos>) -> Option<Duration> {
        if self.config.busy_poll {
            return Some(Duration::ZERO);
        }
        let at = self.next_deadline(now, stop_at)?;
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
    /// service's deadline, the observer's, the drain's end, lingering
    /// closes, dials, and the recheck of paused input.
    fn next_deadline(&self, now: Nanos, stop_at: Option<Nanos>) -> Option<Nanos> {
        let mut deadline = self.worker.poll_timeout();
        if self.observer.is_some() {
            deadline = Some(deadline.map_or(self.next_observe, |d| d.min(self.next_observe)));
        }
        let mut earliest = |at: Nanos| deadline = Some(deadline.map_or(at, |d| d.min(at)));
        if let Some(at) = stop_at {
            earliest(at);
        }
        if self.lingering > 0 {
            self.conns
                .iter()
                .flatten()
                .filter_map(|c| c.closing_until)
                .for_each(&mut earliest);
        }
        if self.dials_len > 0 {
            self.dials
                .iter()
                .flatten()
                .map(|d| d.deadline)
                .for_each(&mut earliest);
        }
        if !self.paused.is_empty() {
            earliest(now + nanos(INPUT_PAUSE_RECHECK));
        }
        deadline
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

    fn handle_event(&mut self, event: &Event) {
        match target(event.token()) {
            Some(Target::Listener) => self.accept_all(),
            // Handoffs are taken after every poll, and the shutdown flag is
            // read before every poll: the wake-up itself carries nothing.
            Some(Target::Timer) => {
                if let Some(timer) = self.timer.as_mut() {
                    timer.expired();
                }
            }
            Some(Target::Waker) | None => {}
            Some(Target::Dial(slot)) => self.finish_dial(slot, monotonic_now()),
            Some(Target::Conn(conn)) => {
                let hangup = event.is_read_closed() || event.is_error();
                if event.is_writable() || event.is_error() {
                    self.writable(conn);
                }
                if event.is_readable() || hangup {
                    self.read_all(conn, hangup);
                }
            }
        }
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        find(&mut self.conns, id)
    }

    // ---- input -------------------------------------------------------

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => self.adopt_accepted(stream),
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

    fn adopt_accepted(&mut self, stream: TcpStream) {
        if socket::configure_stream(&stream, &self.config).is_err() {
            return;
        }
        self.stats.accepted += 1;
        let now = monotonic_now();
        // `None`: the session table is full; dropping the stream refuses it.
        if let Some(conn) = self.worker.handle_accepted(now) {
            self.adopt(conn, stream, now);
        }
        self.drain(now);
    }

    /// Makes `stream` the socket of the engine's `conn`. The engine may have
    /// queued output for it already (`on_open`): the caller drains after.
    fn adopt(&mut self, conn: ConnId, mut stream: TcpStream, now: Nanos) {
        let interest = match self.config.write_mode {
            // Edge-triggered: registering WRITABLE up front costs one
            // spurious event per connection and saves a reregister per
            // `WouldBlock`; a write is still attempted before any wait.
            WriteMode::Speculative | WriteMode::Batched => Interest::READABLE | Interest::WRITABLE,
            WriteMode::Deferred => Interest::READABLE,
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, conn_token(conn), interest)
        {
            eprintln!("worker {}: register failed: {e}", self.id.0);
            self.worker.handle_closed(now, conn);
            return;
        }
        let index = conn.index();
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        assert!(self.conns[index].is_none(), "{conn:?}: slot still in use");
        self.conns[index] = Some(Conn {
            id: conn,
            stream,
            blocked: false,
            closing_until: None,
            paused: false,
            queued: false,
        });
    }

    fn read_all(&mut self, conn: ConnId, hangup: bool) {
        if !self.resuming && !self.paused.is_empty() {
            // Paused connections go first, so that room made by the last
            // writes is not always taken by whoever happens to have an event
            // (they would starve the paused ones).
            self.resume_front();
        }
        loop {
            let Some(c) = find(&mut self.conns, conn) else {
                return;
            };
            if c.paused && !self.resuming {
                // Its turn comes in the queue.
                return;
            }
            let closing = c.closing_until.is_some();
            // Backpressure: the bytes stay in the kernel until the service
            // takes input again. After a hang-up it is read to the end.
            if !closing && !hangup && !self.worker.accepts_input(monotonic_now(), conn) {
                if !c.paused {
                    c.paused = true;
                    self.paused.push_back(conn);
                    self.stats.input_pauses += 1;
                }
                return;
            }
            let result = (&c.stream).read(&mut self.read_buf);
            match result {
                Ok(0) => {
                    self.finalize(conn, monotonic_now());
                    self.drain(monotonic_now());
                    return;
                }
                Ok(n) => {
                    // Input of a closing connection is dropped; it is read
                    // only so that the close sends FIN, not RST.
                    self.stats.reads += 1;
                    if !closing {
                        let now = monotonic_now();
                        self.worker.handle_read(now, conn, &self.read_buf[..n]);
                        self.drain(now);
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
                    self.finalize(conn, monotonic_now());
                    self.drain(monotonic_now());
                    return;
                }
            }
        }
    }

    /// Reads paused connections from the oldest while the service accepts
    /// their input; stops at the first it still refuses. O(1) when nothing
    /// can go on: it runs before every read while some are paused.
    fn resume_front(&mut self) {
        self.resuming = true;
        let now = monotonic_now();
        while let Some(&conn) = self.paused.front() {
            let Some(c) = find(&mut self.conns, conn) else {
                self.paused.pop_front();
                continue;
            };
            if c.closing_until.is_none() && !self.worker.accepts_input(now, conn) {
                break;
            }
            c.paused = false;
            self.paused.pop_front();
            // Paused again, at the back, if it is refused part-way.
            self.read_all(conn, false);
        }
        self.resuming = false;
    }

    /// Once per loop: reads every paused connection the service accepts
    /// input from again (a refusal may be per connection), oldest first;
    /// the others stay paused, in order.
    fn resume_paused(&mut self) {
        if self.paused.is_empty() {
            return;
        }
        self.resuming = true;
        let mut batch = std::mem::replace(&mut self.paused, std::mem::take(&mut self.paused_spare));
        let now = monotonic_now();
        for conn in batch.drain(..) {
            let Some(c) = find(&mut self.conns, conn) else {
                continue;
            };
            if c.closing_until.is_none() && !self.worker.accepts_input(now, conn) {
                self.paused.push_back(conn);
                continue;
            }
            c.paused = false;
            self.read_all(conn, false);
        }
        self.paused_spare = batch;
        self.resuming = false;
    }

    fn writable(&mut self, conn: ConnId) {
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        if !c.blocked && c.closing_until.is_none() {
            return;
        }
        match self.flush(conn) {
            Flush::Blocked => {}
            Flush::Done => {
                if self
                    .conn_mut(conn)
                    .is_some_and(|c| c.closing_until.is_some())
                {
                    self.finalize(conn, monotonic_now());
                    self.drain(monotonic_now());
                }
            }
            Flush::Failed => {
                self.finalize(conn, monotonic_now());
                self.drain(monotonic_now());
            }
        }
    }

    fn finish_dial(&mut self, slot: usize, now: Nanos) {
        let Some(dial) = self.dials.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let connected = match dial.stream.take_error() {
            Ok(None) => match dial.stream.peer_addr() {
                Ok(_) => true,
                // Still connecting: a spurious event.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => false,
            },
            Ok(Some(_)) | Err(_) => false,
        };
        let mut dial = self.dials[slot].take().expect("checked above");
        self.dials_len -= 1;
        if !connected {
            self.stats.dial_failures += 1;
            let _ = self.poll.registry().deregister(&mut dial.stream);
            self.worker.handle_connect_failed(now, dial.peer);
            self.drain(now);
            return;
        }
        self.stats.dialed += 1;
        let _ = self.poll.registry().deregister(&mut dial.stream);
        if let Some(conn) = self.worker.handle_connected(now, dial.peer) {
            self.adopt(conn, dial.stream, now);
        }
        self.drain(now);
    }

    /// Delivers the tasks other workers queued for this one; returns how
    /// many.
    fn take_handoffs(&mut self) -> usize {
        let me = self.id.index();
        let mut taken = 0;
        for source in 0..self.handoffs.workers() {
            if source == me {
                continue;
            }
            while let Some(task) = self.handoffs.queue(source, me).pop() {
                let now = monotonic_now();
                self.worker.handle_handoff(now, task);
                self.drain(now);
                taken += 1;
                self.stats.handoffs_received += 1;
            }
        }
        taken
    }

    fn fire_deadlines(&mut self, now: Nanos) {
        if self.worker.poll_timeout().is_some_and(|at| at <= now) {
            self.worker.handle_timeout(now);
            self.drain(now);
        }
        if self.lingering > 0 {
            for index in 0..self.conns.len() {
                let Some(c) = self.conns[index].as_ref() else {
                    continue;
                };
                if c.closing_until.is_some_and(|at| at <= now) {
                    let id = c.id;
                    self.stats.lingers_expired += 1;
                    self.finalize(id, now);
                }
            }
            self.drain(now);
        }
        if self.dials_len > 0 {
            for slot in 0..self.dials.len() {
                if self.dials[slot].as_ref().is_some_and(|d| d.deadline <= now) {
                    let mut dial = self.dials[slot].take().expect("checked above");
                    self.dials_len -= 1;
                    self.stats.dial_failures += 1;
                    let _ = self.poll.registry().deregister(&mut dial.stream);
                    self.worker.handle_connect_failed(now, dial.peer);
                }
            }
            self.drain(now);
        }
    }

    fn send_wakes(&mut self) {
        for target in 0..self.wake_pending.len() {
            if std::mem::take(&mut self.wake_pending[target]) && !self.config.busy_poll {
                // A busy-polling target looks at its queues every turn.
                self.control.wake(target);
            }
        }
    }

    // ---- effects -----------------------------------------------------

    /// Carries out every effect the engine has queued.
    fn drain(&mut self, now: Nanos) {
        if self.refusing_any {
            self.refusing_any = false;
            self.refusing.fill(false);
        }
        while let Some(effect) = self.worker.poll_effect() {
            match effect {
                Effect::Transmit { conn } => self.transmit(conn, now),
                Effect::Close { conn } => self.close(conn, now),
                Effect::Connect { peer } => self.dial(peer, now),
                Effect::Handoff { target, task } => self.handoff(target, task, now),
                // The loop asks `poll_timeout` before every poll.
                Effect::Wake { .. } => {}
            }
        }
    }

    fn transmit(&mut self, conn: ConnId, now: Nanos) {
        let mode = self.config.write_mode;
        let Some(c) = find(&mut self.conns, conn) else {
            return;
        };
        if c.blocked {
            // The WRITABLE event will write these bytes behind the others.
            return;
        }
        match mode {
            WriteMode::Speculative => {
                if let Flush::Failed = self.flush(conn) {
                    self.finalize(conn, now);
                }
            }
            WriteMode::Batched => {
                if !c.queued {
                    c.queued = true;
                    self.dirty.push(conn);
                }
            }
            WriteMode::Deferred => {
                c.blocked = true;
                self.stats.deferred_waits += 1;
                // Re-arming an edge-triggered registration reports the
                // socket's current readiness: the event comes next poll.
                let token = conn_token(conn);
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .reregister(&mut c.stream, token, interest)
                    .is_err()
                {
                    self.finalize(conn, now);
                }
            }
        }
    }

    /// Writes what the engine has for `conn` until it is all out or the
    /// socket is full.
    /// Batched writes: every connection that got bytes since the last
    /// poll writes them now, once.
    fn flush_dirty(&mut self, now: Nanos) {
        while !self.dirty.is_empty() {
            let mut batch = std::mem::take(&mut self.dirty);
            for conn in batch.drain(..) {
                let Some(c) = find(&mut self.conns, conn) else {
                    continue;
                };
                c.queued = false;
                if c.blocked || c.closing_until.is_some() {
                    continue;
                }
                if let Flush::Failed = self.flush(conn) {
                    self.finalize(conn, now);
                }
            }
            // A close above may have queued more; keep the allocation when not.
            if self.dirty.is_empty() {
                self.dirty = batch;
            }
        }
    }

    fn flush(&mut self, conn: ConnId) -> Flush {
        let Some(c) = find(&mut self.conns, conn) else {
            return Flush::Failed;
        };
        loop {
            let pending = self.worker.transmit_buf(conn);
            let pending_len = pending.len();
            if pending.is_empty() {
                c.blocked = false;
                return Flush::Done;
            }
            match (&c.stream).write(pending) {
                Ok(0) => return Flush::Failed,
                Ok(n) => {
                    self.stats.writes += 1;
                    if n < pending_len {
                        self.stats.partial_writes += 1;
                    }
                    self.worker.handle_written(conn, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.would_blocks += 1;
                    c.blocked = true;
                    return Flush::Blocked;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flush::Failed,
            }
        }
    }

    fn close(&mut self, conn: ConnId, now: Nanos) {
        let linger = nanos(self.config.close_linger);
        let Some(c) = self.conn_mut(conn) else {
            // Never adopted (or gone already): the engine still closes it.
            self.worker.handle_closed(now, conn);
            return;
        };
        if c.closing_until.is_some() {
            return;
        }
        match self.flush(conn) {
            Flush::Done | Flush::Failed => self.finalize(conn, now),
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
                if !rearmed {
                    self.finalize(conn, now);
                }
            }
        }
    }

    /// Closes `conn`'s socket (if it has one) and tells the engine.
    fn finalize(&mut self, conn: ConnId, now: Nanos) {
        if let Some(slot) = self.conns.get_mut(conn.index()) {
            if slot.as_ref().is_some_and(|c| c.id == conn) {
                let mut c = slot.take().expect("checked above");
                if c.closing_until.is_some() {
                    self.lingering -= 1;
                }
                let _ = self.poll.registry().deregister(&mut c.stream);
                discard_input(&c.stream, &mut self.read_buf);
            }
        }
        self.worker.handle_closed(now, conn);
    }

    fn dial(&mut self, peer: PeerId, now: Nanos) {
        let Some(&addr) = self.config.peers.get(usize::from(peer.0)) else {
            eprintln!("worker {}: no address for {peer:?}", self.id.0);
            self.worker.handle_connect_failed(now, peer);
            return;
        };
        let slot = match self.dials.iter().position(Option::is_none) {
            Some(slot) => slot,
            None if self.dials.len() < DIALS_PER_WORKER_MAX => {
                self.dials.push(None);
                self.dials.len() - 1
            }
            None => {
                self.worker.handle_connect_failed(now, peer);
                return;
            }
        };
        let mut stream = match socket::dial(addr, &self.config) {
            Ok(stream) => stream,
            Err(_) => {
                self.stats.dial_failures += 1;
                self.worker.handle_connect_failed(now, peer);
                return;
            }
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut stream, Token(DIAL_TAG | slot), interest)
            .is_err()
        {
            self.worker.handle_connect_failed(now, peer);
            return;
        }
        self.dials[slot] = Some(Dial {
            peer,
            stream,
            deadline: now + nanos(self.config.connect_timeout),
        });
        self.dials_len += 1;
    }

    fn handoff(&mut self, target: WorkerId, task: S::Task, now: Nanos) {
        let t = target.index();
        if t >= self.handoffs.workers() || !self.control.is_alive(t) || self.refusing[t] {
            self.stats.handoffs_refused += 1;
            self.worker.handle_handoff_refused(now, target, task);
            return;
        }
        match self.handoffs.queue(self.id.index(), t).push(task) {
            Ok(()) => {
                self.stats.handoffs_sent += 1;
                self.wake_pending[t] = true;
            }
            Err(task) => {
                // The target may drain its queue a moment later: without
                // this, a later task could slip in ahead of this one.
                self.refusing[t] = true;
                self.refusing_any = true;
                self.stats.handoffs_refused += 1;
                self.worker.handle_handoff_refused(now, target, task);
            }
        }
    }

    // ---- the end -----------------------------------------------------

    /// Closes every socket; the engine sees each close. What the service
    /// asks for after that (writes, dials, handoffs) goes nowhere: the worker
    /// is stopping.
    fn close_all(&mut self, now: Nanos) {
        // Workers that hand us tasks from now on get them refused.
        self.control.report_exited(self.id.index());
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for slot in &mut self.dials {
            *slot = None;
        }
        self.dials_len = 0;
        for index in 0..self.conns.len() {
            let Some(id) = self.conns[index].as_ref().map(|c| c.id) else {
                continue;
            };
            let _ = self.flush(id);
            self.finalize(id, now);
            self.drain_final(now);
        }
        self.drain_final(now);
    }

    fn drain_final(&mut self, now: Nanos) {
        while let Some(effect) = self.worker.poll_effect() {
            match effect {
                Effect::Transmit { conn } => {
                    let _ = self.flush(conn);
                }
                Effect::Close { conn } => {
                    let _ = self.flush(conn);
                    self.finalize(conn, now);
                }
                Effect::Connect { .. } | Effect::Handoff { .. } | Effect::Wake { .. } => {}
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
