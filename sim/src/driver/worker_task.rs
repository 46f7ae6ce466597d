//! The worker task: one [`Worker`] on a host's `LocalSet`, its inbox of
//! inputs, and how each effect is carried out.

use super::*;

pub(super) enum Input<T> {
    Accepted(TcpStream),
    Dialed {
        conn: ConnId,
        peer: PeerId,
        result: io::Result<TcpStream>,
    },
    Read {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Eof {
        conn: ConnId,
    },
    Handoff {
        source: WorkerId,
        task: T,
    },
    Flush {
        conn: ConnId,
    },
    /// The writer moved bytes from the send buffer into the stream: room.
    Sent {
        conn: ConnId,
    },
    Control(Control),
}

pub(super) type Inbox<T> = Sender<Input<T>>;

pub(super) struct WorkerTask<S: Service> {
    pub(super) host: Rc<HostInner<S>>,
    pub(super) id: WorkerId,
    pub(super) worker: Rc<RefCell<Worker<S>>>,
    pub(super) inbox: Inbox<Batch>,
    pub(super) fabric: Rc<Fabric<Batch>>,
    pub(super) conns: Vec<Option<ConnIo>>,
    pub(super) wake: Option<Nanos>,
    /// The last time a timeout was handled, so a deadline that does not
    /// move past it waits for the next millisecond instead of spinning.
    pub(super) fired_at: Option<Nanos>,
    pub(super) buggify_rng: ChaCha8Rng,
    pub(super) handoff_rng: ChaCha8Rng,
    /// [`Sabotage::SwapHandoffs`]: the parcel per target waiting for the
    /// next one to overtake it.
    pub(super) held: Vec<Option<Parcel<Batch>>>,
    /// `lanes_waiting[t]`: bytes for worker `t` wait in the engine for room
    /// in the courier's queue; offered again after every input.
    pub(super) lanes_waiting: Vec<bool>,
    /// Input groups by index: paused, and the connections that had input
    /// meanwhile, in order.
    pub(super) groups: Vec<(bool, Vec<ConnId>)>,
    /// Journal records appended so far ([`Effect::Journal`]), with the
    /// in-memory log.
    pub(super) journal_seq: u64,
    /// With a [`JournalLog`]: when the batch written last is synced.
    pub(super) sync_at: Option<Nanos>,
    /// The input lent to the worker, as the real driver lends its read
    /// buffer: forwarded frames are written from it until it is settled.
    pub(super) lent: Vec<u8>,
    /// Whether `lent` is on loan now.
    pub(super) lending: bool,
}

impl<S: Service> WorkerTask<S> {
    pub(super) async fn run(mut self, mut inbox: Receiver<Input<Batch>>) {
        let now = sim_now();
        self.worker.borrow_mut().start(now);
        self.drain(now);
        loop {
            let idle = self.worker.borrow().is_done();
            if self.host.set_idle(self.id, idle) {
                self.finish();
                return;
            }
            self.wake = self.next_wake();
            let wait = self.timer_wait();
            let host = self.host.clone();
            let input = tokio::select! {
                biased;
                input = inbox.recv() => input,
                () = async {
                    match wait {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => std::future::pending().await,
                    }
                } => None,
                // Another worker became idle: look again whether all are.
                () = host.idle_changed.notified(), if idle => continue,
            };
            let now = sim_now();
            match input {
                Some(input) => self.handle(now, input),
                None => {
                    self.fired_at = Some(now);
                    self.worker.borrow_mut().handle_timeout(now);
                    self.drain(now);
                }
            }
            if self.sync_at.is_some_and(|at| at <= now) {
                self.sync_journal(now);
                self.drain(now);
            }
            self.maybe_spurious_wake(now);
            self.retry_lanes(now);
        }
    }

    /// The one timer channel, asked once per turn; bytes waiting for a
    /// courier are offered again a millisecond later at the latest.
    pub(super) fn next_wake(&self) -> Option<Nanos> {
        let wake = self.worker.borrow().poll_timeout();
        let wake = match (wake, self.sync_at) {
            (Some(w), Some(s)) => Some(w.min(s)),
            (w, s) => w.or(s),
        };
        if !self.lanes_waiting.contains(&true) {
            return wake;
        }
        let retry = sim_now() + Nanos::from_millis(1);
        Some(wake.map_or(retry, |w| w.min(retry)))
    }

    /// Offers the courier queues the bytes that found them full.
    pub(super) fn retry_lanes(&mut self, now: Nanos) {
        for t in 0..self.lanes_waiting.len() {
            if std::mem::take(&mut self.lanes_waiting[t]) {
                let target = WorkerId(u16::try_from(t).expect("workers fit u16"));
                self.handoff(now, target);
                self.drain(now);
            }
        }
    }

    pub(super) fn timer_wait(&self) -> Option<Duration> {
        let at = self.wake?;
        let now = sim_now();
        let wait = at.checked_since(now).unwrap_or(Nanos::ZERO);
        if wait == Nanos::ZERO && self.fired_at == Some(now) {
            return Some(Duration::from_millis(1));
        }
        Some(Duration::from_nanos(wait.as_u64()))
    }

    pub(super) fn line(&self, now: Nanos, what: fmt::Arguments<'_>) {
        self.host.recorder.borrow_mut().line(
            now,
            format_args!("{}/w{}", self.host.spec.name, self.id.0),
            what,
        );
    }

    pub(super) fn handle(&mut self, now: Nanos, input: Input<Batch>) {
        match input {
            Input::Accepted(stream) => {
                let conn = self.worker.borrow_mut().handle_accepted(now);
                self.open(now, conn, stream, "accepted");
                self.drain(now);
            }
            Input::Dialed { conn, peer, result } => match result {
                // Abandoned while it was dialled: the stream just drops.
                Ok(_) if self.worker.borrow().session(conn).is_none() => {}
                Ok(stream) => {
                    // The socket first: the service's first words (a hello)
                    // go out on it.
                    self.open(now, Some(conn), stream, "connected");
                    self.worker.borrow_mut().handle_connected(now, conn);
                    self.drain(now);
                }
                Err(e) => {
                    self.line(now, format_args!("connect-failed p{} {}", peer.0, e.kind()));
                    self.worker.borrow_mut().handle_connect_failed(now, conn);
                    self.drain(now);
                }
            },
            Input::Read { conn, bytes } => self.read(now, conn, &bytes),
            Input::Eof { conn } => {
                if let Some(io) = self.io_mut(conn) {
                    // After a hang-up the input is read to the end, held or
                    // not, as the real backend does.
                    let held = std::mem::take(&mut io.held);
                    if !held.is_empty() {
                        self.deliver(now, conn, &held);
                    }
                }
                if self.io(conn).is_some() {
                    self.line(now, format_args!("eof {conn:?}"));
                    self.drop_io(conn, false);
                    if self.host.knobs.get().sabotage == Sabotage::IgnoreEof {
                        return;
                    }
                    self.worker.borrow_mut().handle_closed(now, conn);
                    self.drain(now);
                }
            }
            Input::Handoff { source, task } => {
                let pair = self.fabric.pair(source, self.id);
                let queued = &self.fabric.queued[pair];
                queued.set(queued.get() - 1);
                self.line(
                    now,
                    format_args!("handoff-in w{} {}B", source.0, task.len()),
                );
                let mut seen = Vec::new();
                let template = self.template(now, ConnId::from_bits(0));
                // A task holds whole frames, an order's first answer inside
                // the gateway's own lane frame: read as the answer.
                let _ = crate::oracle::read_lane(&task, |s| {
                    seen.push(WireEvent {
                        dir: Dir::In,
                        opcode: s.opcode,
                        seq: s.seq,
                        route: s.route,
                        t: s.t,
                        pad: s.pad,
                        code: s.code,
                        order: s.order,
                        ..template
                    });
                });
                self.host
                    .recorder
                    .borrow_mut()
                    .handled(Handled::Handoff, &seen);
                self.lend(&task);
                self.worker
                    .borrow_mut()
                    .handle_handoff_lent(now, source, &mut self.lent);
                self.drain(now);
                self.settle();
            }
            Input::Flush { conn } => {
                if let Some(io) = self.io_mut(conn) {
                    io.flush_pending = false;
                    self.write(now, conn);
                }
            }
            // A delayed write still holds the connection: `write` waits.
            Input::Sent { conn } => {
                self.write(now, conn);
                // A write is an input too (`handle_written`): the output
                // it drained may let the service resume a paused input
                // (`on_drained`), an effect that must not wait for some
                // later, unrelated input to be polled.
                self.drain(now);
            }
            Input::Control(Control::Shutdown) => {
                self.line(now, format_args!("shutdown"));
                self.host
                    .recorder
                    .borrow_mut()
                    .shutdown(self.host.ix, self.id.0);
                self.worker.borrow_mut().handle_shutdown(now);
                self.drain(now);
            }
            Input::Control(Control::AbortPeer(ip)) => {
                let doomed: Vec<ConnId> = self
                    .conns
                    .iter()
                    .flatten()
                    .filter(|io| io.peer.ip() == ip)
                    .map(|io| io.id)
                    .collect();
                for conn in doomed {
                    self.line(now, format_args!("abort {conn:?}"));
                    self.drop_io(conn, true);
                    self.worker.borrow_mut().handle_closed(now, conn);
                    self.drain(now);
                }
            }
        }
    }

    pub(super) fn open(&mut self, now: Nanos, conn: Option<ConnId>, stream: TcpStream, how: &str) {
        let (local, peer) = match (stream.local_addr(), stream.peer_addr()) {
            (Ok(l), Ok(p)) => (l, p),
            _ => return,
        };
        let Some(conn) = conn else {
            self.line(
                now,
                format_args!("{how}-refused {peer} (session table full)"),
            );
            return;
        };
        self.line(now, format_args!("{how} {conn:?} {local} {peer}"));
        let (read_half, write_half) = stream.into_split();
        let gate = Rc::new(ReadGate::default());
        let send_buf = Rc::new(RefCell::new(SendBuf::default()));
        let io = ConnIo {
            id: conn,
            local,
            peer,
            send_buf: send_buf.clone(),
            reader_task: tokio::task::spawn_local(read_loop(
                read_half,
                conn,
                self.inbox.clone(),
                [self.host.reads.clone(), gate.clone()],
            )),
            writer_task: tokio::task::spawn_local(write_loop(
                write_half,
                send_buf,
                conn,
                self.inbox.clone(),
            )),
            observer: ConnObserver::default(),
            flush_pending: false,
            gate,
            held: Vec::new(),
            paused: false,
            group_held: false,
        };
        let slot = conn.index();
        if self.conns.len() <= slot {
            self.conns.resize_with(slot + 1, || None);
        }
        assert!(
            self.conns[slot].is_none(),
            "{conn:?} opened over a live slot"
        );
        self.conns[slot] = Some(io);
        self.host.recorder.borrow_mut().opened(OpenConn {
            host: self.host.ix,
            incarnation: self.host.incarnation.get(),
            worker: self.id.0,
            conn,
            local,
            peer,
        });
    }

    pub(super) fn io(&self, conn: ConnId) -> Option<&ConnIo> {
        self.conns
            .get(conn.index())?
            .as_ref()
            .filter(|io| io.id == conn)
    }

    pub(super) fn io_mut(&mut self, conn: ConnId) -> Option<&mut ConnIo> {
        self.conns
            .get_mut(conn.index())?
            .as_mut()
            .filter(|io| io.id == conn)
    }

    /// Forgets `conn`'s I/O. `abort`: drop it without flushing (a dead
    /// stream); otherwise the writer finishes what it holds, then FIN.
    pub(super) fn drop_io(&mut self, conn: ConnId, abort: bool) {
        if self.io(conn).is_none() {
            return;
        }
        let io = self.conns[conn.index()].take().expect("checked above");
        io.reader_task.abort();
        if abort {
            io.writer_task.abort();
        } else {
            io.send_buf.borrow_mut().shut();
        }
        self.host
            .recorder
            .borrow_mut()
            .closed(self.host.ix, self.id.0, conn, sim_now());
    }

    pub(super) fn read(&mut self, now: Nanos, conn: ConnId, bytes: &[u8]) {
        let template = self.template(now, conn);
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        let mut seen = Vec::new();
        io.observer
            .observe(Dir::In, bytes, template, |e| seen.push(e));
        self.host.recorder.borrow_mut().wire_events(&seen);
        self.line(
            now,
            format_args!(
                "recv {conn:?} {}B h={:08x}",
                bytes.len(),
                crate::trace::fnv1a64(bytes) as u32
            ),
        );
        self.feed(now, conn, bytes);
    }

    /// Hands `bytes` read from `conn` to the worker, or holds them while the
    /// service has the connection's input paused (a read already under way
    /// when the pause came; the real backend leaves such bytes in the
    /// kernel).
    pub(super) fn feed(&mut self, now: Nanos, conn: ConnId, bytes: &[u8]) {
        let group = self.worker.borrow().input_group(conn).map(|g| g.index());
        let group_paused = group.is_some_and(|g| self.groups.get(g).is_some_and(|g| g.0));
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        if group_paused && !io.group_held {
            io.group_held = true;
            io.gate.set_stalled(true);
            let g = group.expect("checked above");
            self.groups[g].1.push(conn);
            self.line(now, format_args!("group-hold {conn:?} g{g}"));
        }
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        if io.gate.is_stalled() {
            io.held.extend_from_slice(bytes);
            return;
        }
        self.deliver(now, conn, bytes);
    }

    /// [`Effect::PauseGroup`]: the group's connections stop as they are
    /// found with input.
    pub(super) fn pause_group(&mut self, now: Nanos, group: InputGroup) {
        let g = group.index();
        if self.groups.len() <= g {
            self.groups.resize_with(g + 1, Default::default);
        }
        self.groups[g].0 = true;
        self.line(now, format_args!("pause-group g{g}"));
    }

    /// [`Effect::ResumeGroup`]: what its connections held goes to the
    /// worker, in the order they were stopped.
    pub(super) fn resume_group(&mut self, now: Nanos, group: InputGroup) {
        let g = group.index();
        let Some(entry) = self.groups.get_mut(g) else {
            return;
        };
        entry.0 = false;
        let waiting = std::mem::take(&mut entry.1);
        self.line(now, format_args!("resume-group g{g} {}", waiting.len()));
        for conn in waiting {
            let Some(io) = self.io_mut(conn) else {
                continue;
            };
            io.group_held = false;
            if !io.paused {
                self.release(now, conn);
            }
        }
    }

    /// Hands `bytes` to the worker, in pieces when buggified.
    pub(super) fn deliver(&mut self, now: Nanos, conn: ConnId, bytes: &[u8]) {
        let pieces = self.read_pieces(bytes.len());
        let template = self.template(now, conn);
        if let Some(io) = self.io_mut(conn) {
            let mut seen = Vec::new();
            io.observer.handed(bytes, template, |e| seen.push(e));
            self.host
                .recorder
                .borrow_mut()
                .handled(Handled::Read, &seen);
        }
        let mut start = 0;
        for (i, end) in pieces.iter().copied().enumerate() {
            if i > 0 {
                self.line(now, format_args!("buggify short-read {conn:?} at {start}"));
            }
            self.lend(&bytes[start..end]);
            self.worker
                .borrow_mut()
                .handle_read_lent(now, conn, &mut self.lent);
            self.drain(now);
            self.settle();
            start = end;
        }
    }

    /// Puts `bytes` in the buffer the next input is lent from. An input
    /// handed over while another is on loan (a resumed connection's held
    /// bytes, fed from the drain) settles the other first.
    fn lend(&mut self, bytes: &[u8]) {
        self.settle();
        self.lent.clear();
        self.lent.extend_from_slice(bytes);
        self.lending = true;
    }

    /// Ends the loan: what the writes left of the input is copied in.
    fn settle(&mut self) {
        if std::mem::take(&mut self.lending) {
            self.worker.borrow_mut().settle_input(&self.lent);
        }
    }

    /// Where to cut a read of `len` bytes: the ends of the pieces.
    pub(super) fn read_pieces(&mut self, len: usize) -> Vec<usize> {
        let p = self.host.knobs.get().buggify.short_read;
        if len < 2 || p <= 0.0 || !self.buggify_rng.random_bool(p) {
            return vec![len];
        }
        let pieces = self.buggify_rng.random_range(2..=4usize).min(len);
        let mut cuts: Vec<usize> = (1..pieces)
            .map(|_| self.buggify_rng.random_range(1..len))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts.push(len);
        cuts
    }

    /// [`Effect::PauseInput`]: the reader stops before its next read.
    pub(super) fn pause(&mut self, now: Nanos, conn: ConnId) {
        if let Some(io) = self.io_mut(conn) {
            io.paused = true;
            io.gate.set_stalled(true);
            self.line(now, format_args!("pause {conn:?}"));
        }
    }

    /// [`Effect::ResumeInput`]: the reader goes on, and what it read before
    /// the pause took hold goes to the worker first.
    pub(super) fn resume(&mut self, now: Nanos, conn: ConnId) {
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        io.paused = false;
        if !io.group_held {
            self.release(now, conn);
        }
    }

    /// Opens `conn`'s reader again and hands the worker what it held.
    pub(super) fn release(&mut self, now: Nanos, conn: ConnId) {
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        io.gate.set_stalled(false);
        let held = std::mem::take(&mut io.held);
        self.line(now, format_args!("resume {conn:?} {}B", held.len()));
        // One read's worth at a time, as the real backend reads what waited
        // in the kernel: a pause the first piece causes holds the rest
        // (`feed` holds it again), instead of the worker taking everything
        // the reader had queued before the pause in one go.
        for piece in held.chunks(READ_BUF_LEN) {
            self.feed(now, conn, piece);
        }
    }

    pub(super) fn maybe_spurious_wake(&mut self, now: Nanos) {
        let p = self.host.knobs.get().buggify.spurious_wake;
        if p > 0.0 && self.buggify_rng.random_bool(p) {
            self.line(now, format_args!("buggify spurious-wake"));
            self.worker.borrow_mut().handle_timeout(now);
            self.drain(now);
        }
    }

    pub(super) fn template(&self, now: Nanos, conn: ConnId) -> WireEvent {
        let (local, peer) = self.io(conn).map_or(
            (
                SocketAddr::from(([0, 0, 0, 0], 0)),
                SocketAddr::from(([0, 0, 0, 0], 0)),
            ),
            |io| (io.local, io.peer),
        );
        WireEvent {
            at: now,
            host: self.host.ix,
            worker: self.id.0,
            conn,
            local,
            peer,
            dir: Dir::Out,
            opcode: 0,
            seq: 0,
            route: 0,
            t: [0; 4],
            pad: 0,
            code: 0,
            order: crate::oracle::OrderFields::default(),
        }
    }

    /// Writes what `conn` has pending into its send buffer, as much as fits,
    /// unless a delayed write holds it; the rest waits for
    /// [`Input::Sent`].
    pub(super) fn write(&mut self, now: Nanos, conn: ConnId) {
        let Some(room) = self.io(conn).map(|io| io.send_buf.borrow().room()) else {
            return;
        };
        self.write_up_to(now, conn, room);
    }

    pub(super) fn write_up_to(&mut self, now: Nanos, conn: ConnId, room: usize) {
        let bytes = {
            // The pending bytes in order, part of them perhaps still in
            // the lent input: the same bytes the real driver's vectored
            // write takes.
            let worker = self.worker.borrow();
            let input: &[u8] = if self.lending { &self.lent } else { &[] };
            let mut bytes = Vec::new();
            for chunk in worker
                .transmit_chunks(conn, input, usize::MAX)
                .into_iter()
                .flatten()
            {
                let take = chunk.len().min(room - bytes.len());
                bytes.extend_from_slice(&chunk[..take]);
                if bytes.len() == room {
                    break;
                }
            }
            bytes
        };
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        if bytes.is_empty() || io.flush_pending {
            return;
        }
        let n = bytes.len();
        let target = self.sabotage_target(conn, &bytes).unwrap_or(conn);
        let template = self.template(now, target);
        let Some(io) = self.io_mut(target) else {
            return;
        };
        let mut seen = Vec::new();
        io.observer
            .observe(Dir::Out, &bytes, template, |e| seen.push(e));
        let hash = crate::trace::fnv1a64(&bytes) as u32;
        io.send_buf.borrow_mut().push(bytes);
        self.host.recorder.borrow_mut().wire_events(&seen);
        self.line(now, format_args!("send {target:?} {n}B h={hash:08x}"));
        self.worker.borrow_mut().handle_written(now, conn, n);
    }

    /// [`Sabotage::CrossWrites`]: another accepted connection to write a
    /// pong to, now and then.
    pub(super) fn sabotage_target(&mut self, conn: ConnId, bytes: &[u8]) -> Option<ConnId> {
        const OPCODE_PONG: [u8; 2] = fep_trading::msg::OP_PERF_PONG.to_be_bytes();
        if self.host.knobs.get().sabotage == Sabotage::Panic {
            panic!("sabotage: the driver panics at its first write");
        }
        if self.host.knobs.get().sabotage != Sabotage::CrossWrites
            || bytes.get(4..6) != Some(&OPCODE_PONG[..])
            || !self.buggify_rng.random_bool(0.05)
        {
            return None;
        }
        let port = self.host.spec.listen_port?;
        self.conns
            .iter()
            .flatten()
            .find(|io| io.id != conn && io.local.port() == port)
            .map(|io| io.id)
    }

    pub(super) fn transmit(&mut self, now: Nanos, conn: ConnId) {
        let buggify = self.host.knobs.get().buggify;
        let delay = buggify.delayed_write > 0.0
            && buggify.delayed_write_ms_max > 0
            && self.io(conn).is_some_and(|io| !io.flush_pending)
            && self.buggify_rng.random_bool(buggify.delayed_write);
        if !delay {
            self.write(now, conn);
            return;
        }
        let ms = self
            .buggify_rng
            .random_range(1..=buggify.delayed_write_ms_max);
        self.line(now, format_args!("buggify delayed-write {conn:?} {ms}ms"));
        if let Some(io) = self.io_mut(conn) {
            io.flush_pending = true;
        }
        let inbox = self.inbox.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let _ = inbox.send(Input::Flush { conn }).await;
        });
    }

    pub(super) fn close(&mut self, now: Nanos, conn: ConnId) {
        if let Some(io) = self.io_mut(conn) {
            io.flush_pending = false;
        }
        // The last bytes go out whatever the room, as the real backend
        // lingers to flush them: the worker's own bound already holds them.
        self.write_up_to(now, conn, usize::MAX);
        self.line(now, format_args!("close {conn:?}"));
        self.drop_io(conn, false);
        self.worker.borrow_mut().handle_closed(now, conn);
    }

    pub(super) fn connect(&mut self, now: Nanos, conn: ConnId, peer: PeerId) {
        let Some((name, port)) = self.host.spec.peers.get(usize::from(peer.0)).cloned() else {
            self.line(now, format_args!("connect p{} unknown peer", peer.0));
            self.worker.borrow_mut().handle_connect_failed(now, conn);
            return;
        };
        self.line(now, format_args!("connect p{} {name}:{port}", peer.0));
        let timeout = self.host.spec.connect_timeout;
        let inbox = self.inbox.clone();
        tokio::task::spawn_local(async move {
            let result = match tokio::time::timeout(timeout, TcpStream::connect((name, port))).await
            {
                Ok(result) => result,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
            };
            let _ = inbox.send(Input::Dialed { conn, peer, result }).await;
        });
    }

    /// Moves the bytes the worker holds for `target` into the courier's
    /// queue as one parcel; when the queue is full they stay with the
    /// worker and are offered again after the next input.
    pub(super) fn handoff(&mut self, now: Nanos, target: WorkerId) {
        let knobs = self.host.knobs.get();
        let pair = self.fabric.pair(self.id, target);
        let queued = &self.fabric.queued[pair];
        let courier = self.fabric.couriers.get(pair).and_then(Option::as_ref);
        let task = self.worker.borrow().handoff_buf(target).to_vec();
        if task.is_empty() {
            return;
        }
        let Some(courier) = courier.filter(|_| queued.get() < knobs.handoff_queue_max) else {
            self.line(now, format_args!("handoff-wait w{}", target.0));
            self.lanes_waiting[target.index()] = true;
            return;
        };
        self.worker.borrow_mut().handle_handed_off(target);
        let ms = self
            .handoff_rng
            .random_range(0..=knobs.handoff_delay_ms_max);
        let due = now + Nanos::from_millis(ms);
        let mut parcel = Parcel {
            due,
            source: self.id,
            task,
        };
        if knobs.sabotage == Sabotage::DropHandoffs {
            return;
        }
        if knobs.sabotage == Sabotage::SwapHandoffs {
            match self.held[target.index()].take() {
                None => {
                    self.held[target.index()] = Some(parcel);
                    queued.set(queued.get() + 1);
                    return;
                }
                Some(held) => {
                    let _ = courier.try_send(parcel);
                    parcel = held;
                }
            }
        }
        let n = parcel.task.len();
        match courier.try_send(parcel) {
            Ok(()) => {
                queued.set(queued.get() + 1);
                self.line(now, format_args!("handoff-out w{} {n}B +{ms}ms", target.0));
            }
            // The queue holds the count checked above; a closed one belongs
            // to a stopping host.
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.line(now, format_args!("handoff-lost w{}", target.0));
            }
        }
    }

    /// [`Effect::Journal`]: the records go to the order check first (they
    /// are the engine's input, in its order), then to the log. Without a
    /// [`JournalLog`] the log is memory and every record is durable at
    /// once; with one they are appended and written to the simulated disk
    /// now and synced [`JournalLog::sync_delay_ms`] later, so that a crash
    /// can fall between the write and the sync.
    fn journal(&mut self, now: Nanos) {
        let records = self.worker.borrow().journal_buf().to_vec();
        self.host.recorder.borrow_mut().journaled(&records);
        self.worker.borrow_mut().handle_journaled(records.len());
        let Some(log) = self.host.spec.journal.clone() else {
            let mut rest = &records[..];
            while let Some((head, body)) = rest.split_first_chunk::<4>() {
                let len = (u32::from_be_bytes(*head) as usize).min(body.len());
                rest = &body[len..];
                self.journal_seq += 1;
            }
            self.line(now, format_args!("journal durable {}", self.journal_seq));
            self.worker
                .borrow_mut()
                .handle_durable(now, self.journal_seq);
            return;
        };
        let written = {
            let mut slot = log.slot.borrow_mut();
            match slot.as_mut() {
                Some(journal) => append_all(journal, &records).and_then(|()| journal.write()),
                None => Err(crate::storage::StorageError::Broken),
            }
        };
        match written {
            Ok(()) if log.sync_delay_ms == 0 => self.sync_journal(now),
            Ok(()) => {
                let at = now + Nanos::from_millis(log.sync_delay_ms);
                self.sync_at = Some(self.sync_at.map_or(at, |t| t.min(at)));
            }
            Err(e) => self.journal_failed(now, &e),
        }
    }

    /// Syncs what the log has written, and releases what became durable.
    pub(super) fn sync_journal(&mut self, now: Nanos) {
        self.sync_at = None;
        let Some(log) = self.host.spec.journal.clone() else {
            return;
        };
        let synced = match log.slot.borrow_mut().as_mut() {
            Some(journal) => journal.sync(),
            None => Err(crate::storage::StorageError::Broken),
        };
        match synced {
            Ok(durable) => {
                self.host.recorder.borrow_mut().durable(durable);
                self.line(now, format_args!("journal durable {durable}"));
                self.worker.borrow_mut().handle_durable(now, durable);
            }
            Err(e) => self.journal_failed(now, &e),
        }
    }

    fn journal_failed(&mut self, now: Nanos, e: &crate::storage::StorageError) {
        self.line(now, format_args!("journal failed: {e}"));
        self.host.recorder.borrow_mut().journal_failed(now);
        self.worker.borrow_mut().handle_journal_failed(now);
    }

    /// Carries out every effect the worker has, until it has none.
    pub(super) fn drain(&mut self, now: Nanos) {
        loop {
            let effect = self.worker.borrow_mut().poll_effect();
            let Some(effect) = effect else {
                break;
            };
            match effect {
                Effect::Transmit { conn } => self.transmit(now, conn),
                Effect::Close { conn } => self.close(now, conn),
                Effect::Connect { conn, peer } => self.connect(now, conn, peer),
                Effect::Handoff { target } => self.handoff(now, target),
                Effect::PauseInput { conn } => self.pause(now, conn),
                Effect::ResumeInput { conn } => self.resume(now, conn),
                Effect::PauseGroup { group } => self.pause_group(now, group),
                Effect::ResumeGroup { group } => self.resume_group(now, group),
                Effect::Journal => self.journal(now),
                other => unreachable!("fep-sim knows no {other:?}"),
            }
        }
    }

    /// The worker is done: close what it left open and stop.
    pub(super) fn finish(&mut self) {
        let now = sim_now();
        self.line(now, format_args!("done"));
        let open: Vec<ConnId> = self.conns.iter().flatten().map(|io| io.id).collect();
        for conn in open {
            self.close(now, conn);
        }
        self.drain(now);
        self.host.done.set(self.host.done.get() + 1);
    }
}

/// Appends `records` (`len:u32` then the record, each) to `journal`; a full
/// pending buffer is written out first.
fn append_all(
    journal: &mut crate::storage::SimJournal,
    records: &[u8],
) -> Result<(), crate::storage::StorageError> {
    let mut rest = records;
    while let Some((head, body)) = rest.split_first_chunk::<4>() {
        let len = (u32::from_be_bytes(*head) as usize).min(body.len());
        let record = &body[..len];
        match journal.append(record) {
            Ok(_) => {}
            Err(crate::storage::StorageError::Full { .. }) => {
                journal.write()?;
                journal.append(record)?;
            }
            Err(e) => return Err(e),
        }
        rest = &body[len..];
    }
    Ok(())
}
