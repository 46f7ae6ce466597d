//! A simulated host: what it runs, its incarnations (started, crashed,
//! bounced), its acceptor, and what the harness may look at between steps.

use super::*;

/// What a host runs.
pub struct HostSpec<S: Service> {
    /// The turmoil host name.
    pub name: String,
    /// The port its acceptor listens on, if any.
    pub listen_port: Option<u16>,
    /// Worker tasks.
    pub workers: u16,
    /// Dial targets: [`PeerId`] `i` is `peers[i]` (host name, port).
    pub peers: Vec<(String, u16)>,
    /// Bounds of every worker.
    pub worker_config: WorkerConfig,
    /// A dial that has not completed by then fails.
    pub connect_timeout: Duration,
    /// The service of worker `id` (called again on every restart).
    pub service: Rc<dyn Fn(WorkerId) -> S>,
    /// Where the workers' [`Effect::Journal`] records go: `None`, a log in
    /// memory that is durable at once; otherwise a [`SimJournal`] on
    /// turmoil's filesystem, which the service factory opens (recovering
    /// it) at every start and leaves in the slot.
    ///
    /// [`SimJournal`]: crate::storage::SimJournal
    pub journal: Option<JournalLog>,
}

/// The journal a service factory opened for this incarnation (`None` in
/// the slot: recovery failed, the log is unusable until a restart).
pub type JournalSlot = Rc<RefCell<Option<crate::storage::SimJournal>>>;

/// A host's journal on the simulated filesystem.
#[derive(Clone, Debug, Default)]
pub struct JournalLog {
    /// The open journal.
    pub slot: JournalSlot,
    /// Simulated ms between a batch's write and its sync: a crash may fall
    /// in between (0: the sync follows the write at once).
    pub sync_delay_ms: u64,
}

impl<S: Service> fmt::Debug for HostSpec<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostSpec")
            .field("name", &self.name)
            .field("listen_port", &self.listen_port)
            .field("workers", &self.workers)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

/// A host of the simulation: its spec, and what the harness may look at or
/// steer between steps.
pub struct Host<S: Service> {
    pub(super) inner: Rc<HostInner<S>>,
}

impl<S: Service> Clone for Host<S> {
    fn clone(&self) -> Self {
        Host {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Service> fmt::Debug for Host<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("spec", &self.inner.spec)
            .field("incarnation", &self.inner.incarnation.get())
            .finish_non_exhaustive()
    }
}

pub(super) struct HostInner<S: Service> {
    pub(super) spec: HostSpec<S>,
    pub(super) seed: u64,
    pub(super) ix: HostIx,
    pub(super) recorder: SharedRecorder,
    pub(super) knobs: Cell<Knobs>,
    pub(super) incarnation: Cell<u32>,
    pub(super) workers: RefCell<Vec<Rc<RefCell<Worker<S>>>>>,
    pub(super) done: Cell<u16>,
    /// Workers whose service says it is done, waiting for the others (as
    /// net-real's workers stop only once every worker is done: a worker
    /// that stopped early would drop what another still hands it).
    pub(super) idle: RefCell<Vec<bool>>,
    /// Wakes idle workers when another one becomes idle.
    pub(super) idle_changed: Notify,
    pub(super) control: RefCell<Option<Sender<Control>>>,
    pub(super) reads: Rc<ReadGate>,
}

impl<S: Service> Host<S> {
    /// A host for run `seed`, recording into `recorder`.
    pub fn new(spec: HostSpec<S>, seed: u64, knobs: Knobs, recorder: SharedRecorder) -> Host<S> {
        assert!(spec.workers >= 1, "a host runs at least one worker");
        let ix = recorder.borrow_mut().add_host(&spec.name);
        Host {
            inner: Rc::new(HostInner {
                spec,
                seed,
                ix,
                recorder,
                knobs: Cell::new(knobs),
                incarnation: Cell::new(0),
                workers: RefCell::new(Vec::new()),
                done: Cell::new(0),
                idle: RefCell::new(Vec::new()),
                idle_changed: Notify::new(),
                control: RefCell::new(None),
                reads: Rc::new(ReadGate::default()),
            }),
        }
    }

    /// The host's name.
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// The host's index in the recorder.
    pub fn ix(&self) -> HostIx {
        self.inner.ix
    }

    /// Registers the host's software with `sim` (restartable by `bounce`).
    pub fn install(&self, sim: &mut turmoil::Sim<'_>) {
        let inner = self.inner.clone();
        sim.host(self.inner.spec.name.as_str(), move || {
            software(inner.clone())
        });
    }

    /// The workers of the current incarnation.
    pub fn workers(&self) -> Vec<Rc<RefCell<Worker<S>>>> {
        self.inner.workers.borrow().clone()
    }

    /// Sessions with a connection, of each worker of the current
    /// incarnation (dials still in flight have none yet).
    pub fn sessions(&self) -> Vec<usize> {
        self.inner
            .workers
            .borrow()
            .iter()
            // A dial in flight has a session but no connection yet.
            .map(|w| {
                let w = w.borrow();
                w.sessions_len() - w.dialing_len()
            })
            .collect()
    }

    /// Whether every worker of the current incarnation is done.
    pub fn is_done(&self) -> bool {
        let workers = self.inner.workers.borrow().len();
        workers > 0 && usize::from(self.inner.done.get()) == workers
    }

    /// The harness crashed the host: the incarnation's workers are gone, so
    /// the host is not done (nor anything else) until its software starts
    /// again.
    pub fn crashed(&self) {
        self.inner.workers.borrow_mut().clear();
        self.inner.done.set(0);
        self.inner.idle.borrow_mut().clear();
    }

    /// Times the software started (1 after the first start).
    pub fn incarnation(&self) -> u32 {
        self.inner.incarnation.get()
    }

    /// The driver's settings now.
    pub fn knobs(&self) -> Knobs {
        self.inner.knobs.get()
    }

    /// Changes the driver's settings from now on.
    pub fn set_knobs(&self, knobs: Knobs) {
        self.inner.knobs.set(knobs);
    }

    /// Stops reading every connection of the host (`true`), or reads
    /// them again.
    pub fn stall_reads(&self, stalled: bool) {
        self.inner.reads.set_stalled(stalled);
    }

    /// Sends `control` to the running software (dropped if none runs).
    ///
    /// # Panics
    ///
    /// If `CONTROL_MAX` commands wait untaken: a fault plan issues a
    /// handful per run, so that is a harness bug.
    pub fn control(&self, control: Control) {
        if let Some(tx) = self.inner.control.borrow().as_ref() {
            match tx.try_send(control) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => {
                    panic!("{CONTROL_MAX} control commands wait for {}", self.name())
                }
            }
        }
    }
}

impl<S: Service> HostInner<S> {
    /// Worker `id` is done (or no longer is); true when every worker of
    /// the incarnation is.
    pub(super) fn set_idle(&self, id: WorkerId, idle: bool) -> bool {
        let mut flags = self.idle.borrow_mut();
        if let Some(flag) = flags.get_mut(id.index()) {
            if *flag != idle {
                *flag = idle;
                if idle {
                    self.idle_changed.notify_waiters();
                }
            }
        }
        !flags.is_empty() && flags.iter().all(|f| *f)
    }
}

pub(super) async fn software<S: Service>(host: Rc<HostInner<S>>) -> turmoil::Result {
    let incarnation = host.incarnation.get() + 1;
    host.incarnation.set(incarnation);
    host.done.set(0);
    let spec = &host.spec;
    host.idle.replace(vec![false; usize::from(spec.workers)]);
    let now = sim_now();
    host.recorder.borrow_mut().line(
        now,
        format_args!("{}", spec.name),
        format_args!("start incarnation={incarnation} workers={}", spec.workers),
    );

    let mut inboxes = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..spec.workers {
        let (tx, rx) = channel::<Input<Batch>>(INBOX_MAX);
        inboxes.push(tx);
        receivers.push(rx);
    }
    let queue_max = host.knobs.get().handoff_queue_max;
    let fabric = Rc::new(start_couriers(spec.workers, &inboxes, queue_max));
    let (control_tx, control_rx) = channel(CONTROL_MAX);
    host.control.replace(Some(control_tx));
    tokio::task::spawn_local(forward_control(control_rx, inboxes.clone()));

    let mut workers = Vec::new();
    for (i, inbox) in receivers.into_iter().enumerate() {
        let id = WorkerId(u16::try_from(i).expect("workers fit u16"));
        let worker = Rc::new(RefCell::new(Worker::new(
            id,
            spec.worker_config,
            (spec.service)(id),
        )));
        workers.push(worker.clone());
        let task = WorkerTask {
            host: host.clone(),
            id,
            worker,
            inbox: inboxes[i].clone(),
            fabric: fabric.clone(),
            conns: Vec::new(),
            wake: None,
            fired_at: None,
            buggify_rng: seed::rng(
                host.seed,
                &spec.name,
                "buggify",
                u64::from(incarnation) << 16 | i as u64,
            ),
            handoff_rng: seed::rng(
                host.seed,
                &spec.name,
                "handoff",
                u64::from(incarnation) << 16 | i as u64,
            ),
            held: (0..spec.workers).map(|_| None).collect(),
            lanes_waiting: vec![false; usize::from(spec.workers)],
            groups: Vec::new(),
            journal_seq: 0,
            sync_at: None,
            lent: Vec::new(),
            lending: false,
        };
        tokio::task::spawn_local(task.run(inbox));
    }
    host.workers.replace(workers);

    let Some(port) = spec.listen_port else {
        std::future::pending::<()>().await;
        return Ok(());
    };
    let listener = TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).await?;
    let mut accept_rng = seed::rng(host.seed, &spec.name, "accept", u64::from(incarnation));
    loop {
        let (stream, peer) = listener.accept().await?;
        let target = accept_rng.random_range(0..spec.workers);
        host.recorder.borrow_mut().line(
            sim_now(),
            format_args!("{}", spec.name),
            format_args!("accept {peer} -> w{target}"),
        );
        let _ = inboxes[usize::from(target)]
            .send(Input::Accepted(stream))
            .await;
    }
}

pub(super) async fn forward_control<T>(mut control: Receiver<Control>, inboxes: Vec<Inbox<T>>) {
    while let Some(c) = control.recv().await {
        for inbox in &inboxes {
            let _ = inbox.send(Input::Control(c)).await;
        }
    }
}
