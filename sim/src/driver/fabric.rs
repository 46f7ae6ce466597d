//! The cross-worker handoff fabric of one host incarnation: one courier
//! per (source, target) pair, FIFO, each batch delivered after a seeded
//! delay; the queue is bounded.

use super::*;

/// Whole frames one worker handed another, as they left its lane.
pub(super) type Batch = Vec<u8>;

/// A handoff in a courier's queue: when it is due, who sent it, what it is.
pub(super) struct Parcel<T> {
    pub(super) due: Nanos,
    pub(super) source: WorkerId,
    pub(super) task: T,
}

/// The handoff fabric of one host incarnation.
pub(super) struct Fabric<T> {
    pub(super) workers: u16,
    /// Each holds at most the `handoff_queue_max` the host started with;
    /// the knob may lower the bound later, never raise it.
    pub(super) couriers: Vec<Option<Sender<Parcel<T>>>>,
    /// Tasks queued per (source, target) pair, not yet delivered.
    pub(super) queued: Vec<Cell<u32>>,
}

impl<T> Fabric<T> {
    pub(super) fn pair(&self, source: WorkerId, target: WorkerId) -> usize {
        source.index() * usize::from(self.workers) + target.index()
    }
}

pub(super) fn start_couriers(
    workers: u16,
    inboxes: &[Inbox<Batch>],
    queue_max: u32,
) -> Fabric<Batch> {
    let n = usize::from(workers);
    let mut couriers = Vec::with_capacity(n * n);
    for source in 0..n {
        for (target, inbox) in inboxes.iter().enumerate() {
            if source == target {
                couriers.push(None);
                continue;
            }
            let (tx, rx) = channel(usize::try_from(queue_max.max(1)).expect("u32 fits usize"));
            tokio::task::spawn_local(courier(rx, inbox.clone()));
            couriers.push(Some(tx));
        }
    }
    Fabric {
        workers,
        couriers,
        queued: (0..n * n).map(|_| Cell::new(0)).collect(),
    }
}

/// One (source, target) queue: FIFO, each parcel held until it is due (and
/// until the parcels ahead of it have gone).
pub(super) async fn courier<T>(mut parcels: Receiver<Parcel<T>>, target: Inbox<T>) {
    while let Some(parcel) = parcels.recv().await {
        let wait = parcel.due.checked_since(sim_now()).unwrap_or(Nanos::ZERO);
        if wait > Nanos::ZERO {
            tokio::time::sleep(Duration::from_nanos(wait.as_u64())).await;
        }
        let input = Input::Handoff {
            source: parcel.source,
            task: parcel.task,
        };
        if target.send(input).await.is_err() {
            return;
        }
    }
}
