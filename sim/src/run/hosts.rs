//! The run's hosts: the exchange (journaled and recovering in the order
//! scenarios), the gateway and the clients, with their settings.

use std::cell::RefCell;

use rand::Rng;
use std::rc::Rc;
use std::time::Duration;

use fep_core::{Nanos, WorkerConfig};
use fep_load::client::{Client, ClientConfig, Load, Workload};
use fep_load::flow::FlowConfig;
use fep_trading::exchange::{Exchange, ExchangeConfig};
use fep_trading::gateway::Gateway;

use crate::driver::{Buggify, Host, HostSpec, JournalLog, Knobs, Sabotage};
use crate::trace::SharedRecorder;

use super::{
    pings_of, Hosts, RunConfig, CONNECT_TIMEOUT_MS, EXCHANGE_PORT, GATEWAY_HEARTBEAT_MS,
    GATEWAY_PORT,
};

pub(super) fn base_knobs(sabotage: Sabotage, short_reads: bool) -> Knobs {
    let buggify = Buggify {
        short_read: if short_reads {
            BUGGIFY_ON.short_read
        } else {
            0.0
        },
        ..Buggify::OFF
    };
    Knobs {
        sabotage,
        buggify,
        ..Knobs::default()
    }
}

pub(super) const BUGGIFY_ON: Buggify = Buggify {
    short_read: 0.2,
    spurious_wake: 0.1,
    delayed_write: 0.1,
    delayed_write_ms_max: 3,
};

/// The exchange's engine in the o-scenarios: few instruments and accounts,
/// so that orders meet and accounts trade often, and room for every order a
/// run can rest (a full book would be refused `OVERLOADED`, which no fault
/// would explain).
pub fn order_engine() -> fep_engine::Config {
    fep_engine::Config {
        instruments: 4,
        accounts: 64,
        cash: 1_000_000_000,
        units: 1_000_000,
        orders_max: 1 << 14,
        levels_max: 1 << 10,
    }
}

/// The order flow of client `k` in an o-scenario: the load generator's mix
/// (`loadgen --workload orders`) on [`order_engine`], its lanes after those
/// of the clients before it so that no two connections share an account,
/// a small book (`resting_target`) and a narrow band so that a short run
/// soon leaves the filling phase and crosses.
pub fn order_flow(config: &RunConfig, k: u16) -> FlowConfig {
    let engine = order_engine();
    FlowConfig {
        instruments: engine.instruments,
        accounts: engine.accounts,
        connections: config.connections,
        lane_first: u32::from(k) * config.connections,
        lanes: u32::from(config.clients) * config.connections,
        seed: config.seed,
        resting_target: 48,
        mid_start: 1_000,
        band: 20,
        qty_max: 20,
        ..FlowConfig::default()
    }
}

/// The storage faults of one o-scenario run, drawn from its seed (each on
/// in about half the seeds, as TigerBeetle's VOPR swarms its options),
/// composed with the network fault plan. turmoil's filesystem applies
/// them for the whole run: a crash (the `crash` fault) drops what was
/// written and not synced, and tears a pending write to a prefix of whole
/// blocks; reads come back corrupt now and then (the journal's checksums
/// catch it; the storage layer reads again).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StorageKnobs {
    /// Torn writes keep a prefix of whole blocks of this size.
    pub block_size: u64,
    /// Probability that a read returns corrupted bytes.
    pub corruption_probability: f64,
    /// Simulated ms between a batch's write and its sync (0: at once).
    pub sync_delay_ms: u64,
    /// Probability that a file operation fails. A failed write or sync
    /// breaks the journal: the exchange acknowledges nothing more and
    /// refuses `SHUTTING_DOWN` until the harness restarts it
    /// ([`JOURNAL_RESTART_MS`] later), which recovers on the same
    /// directory (and may fail again).
    pub io_error_probability: f64,
}

/// How long an exchange whose journal failed runs on, refusing, before
/// the harness restarts it (an operator's restart).
pub const JOURNAL_RESTART_MS: u64 = 10;

impl StorageKnobs {
    /// The knobs of `seed`.
    pub fn swarm(seed: u64) -> StorageKnobs {
        let mut rng = crate::seed::rng(seed, "harness", "storage", 0);
        StorageKnobs {
            block_size: [1, 512, 4096][rng.random_range(0..3)],
            corruption_probability: if rng.random_bool(0.5) { 0.01 } else { 0.0 },
            sync_delay_ms: rng.random_range(0..3),
            io_error_probability: if rng.random_bool(0.3) { 0.002 } else { 0.0 },
        }
    }
}

/// The directory of the exchange's journal on its simulated filesystem.
pub const JOURNAL_DIR: &str = "/wal";

/// The exchange's service in an o-scenario: worker 0 recovers the journal
/// in [`JOURNAL_DIR`] (empty at the first start) through the engine, hands
/// the recovered records to the order check, and leaves the journal in
/// `slot` for the driver; a recovery that fails leaves the slot empty (the
/// exchange then refuses what it would journal) and says so.
pub(super) fn recovering_exchange(
    w: fep_core::WorkerId,
    config: &ExchangeConfig,
    slot: &crate::driver::JournalSlot,
    recorder: &SharedRecorder,
) -> Exchange {
    if w != fep_trading::exchange::ENGINE_WORKER {
        return Exchange::new(w, config.clone());
    }
    let engine_config = config.engine;
    let mut settings = Vec::new();
    engine_config.encode(&mut settings);
    let engine = RefCell::new(fep_engine::Engine::new(engine_config).expect("valid settings"));
    let mut records = Vec::new();
    let mut events = Vec::new();
    let opened = crate::storage::SimJournal::open(
        crate::storage::StorageConfig::new(JOURNAL_DIR, settings),
        |_, bytes| {
            *engine.borrow_mut() =
                fep_engine::Engine::restore(engine_config, bytes).expect("our own snapshot");
        },
        |record| {
            records.extend_from_slice(&(record.payload.len() as u32).to_be_bytes());
            records.extend_from_slice(record.payload);
            if let Ok(c) = fep_engine::Command::decode(record.payload) {
                events.clear();
                engine.borrow_mut().handle(&c, &mut events);
            }
        },
    );
    match opened {
        Ok((journal, recovered)) => {
            slot.replace(Some(journal));
            let mut r = recorder.borrow_mut();
            r.line(
                crate::driver::sim_now(),
                format_args!("exchange"),
                format_args!(
                    "recovered {} records (torn tail: {})",
                    recovered.seq_last,
                    recovered.torn.is_some()
                ),
            );
            r.recovered(&records);
            drop(r);
            Exchange::recovered(
                w,
                ExchangeConfig {
                    journal: Some(recovered.seq_last),
                    ..config.clone()
                },
                engine.into_inner(),
            )
        }
        Err(e) => {
            slot.replace(None);
            let mut r = recorder.borrow_mut();
            r.line(
                crate::driver::sim_now(),
                format_args!("exchange"),
                format_args!("recovery failed: {e}"),
            );
            r.recovery_failed(&e.to_string());
            drop(r);
            Exchange::new(w, config.clone())
        }
    }
}

/// The exchange's settings: the ping scenarios run its defaults; the
/// o-scenarios [`order_engine`] with a journal (see [`crate::orders`]:
/// its records are the engine's input order).
pub(super) fn exchange_config(config: &RunConfig) -> ExchangeConfig {
    if !config.scenario.orders() {
        return ExchangeConfig::default();
    }
    ExchangeConfig {
        engine: order_engine(),
        journal: Some(0),
        snapshot_every: 0,
        ..ExchangeConfig::default()
    }
}

/// Every host of a run; each client waits `client_drain_ms` for its last
/// answers.
pub(super) fn build_hosts(
    config: &RunConfig,
    recorder: &SharedRecorder,
    client_drain_ms: u64,
) -> Hosts {
    let seed = config.seed;
    let knobs = base_knobs(Sabotage::None, config.short_reads);
    let exchange_config = exchange_config(config);
    let journal = config.scenario.orders().then(|| JournalLog {
        slot: Rc::default(),
        sync_delay_ms: StorageKnobs::swarm(seed).sync_delay_ms,
    });
    let log = journal.clone();
    let service: Rc<dyn Fn(fep_core::WorkerId) -> Exchange> = match &journal {
        Some(log) => {
            let (slot, recorder) = (log.slot.clone(), recorder.clone());
            Rc::new(move |w| recovering_exchange(w, &exchange_config, &slot, &recorder))
        }
        None => Rc::new(move |w| Exchange::new(w, exchange_config.clone())),
    };
    let exchange = Host::new(
        HostSpec {
            name: "exchange".into(),
            listen_port: Some(EXCHANGE_PORT),
            workers: 1,
            peers: Vec::new(),
            worker_config: WorkerConfig::default(),
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS),
            service,
            journal,
        },
        seed,
        knobs,
        recorder.clone(),
    );
    let workers = config.scenario.workers();
    let gateway_config = config.gateway_config();
    let gateway = Host::new(
        HostSpec {
            name: "gateway".into(),
            listen_port: Some(GATEWAY_PORT),
            workers,
            peers: vec![("exchange".into(), EXCHANGE_PORT)],
            worker_config: WorkerConfig {
                heartbeat_interval: Some(Nanos::from_millis(GATEWAY_HEARTBEAT_MS)),
                ..WorkerConfig::default()
            },
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS),
            service: Rc::new(move |id| Gateway::new(id, gateway_config.clone())),
            journal: None,
        },
        seed,
        base_knobs(config.sabotage, config.short_reads),
        recorder.clone(),
    );
    let clients = (0..config.clients)
        .map(|k| {
            let client_config = ClientConfig {
                connections: config.connections,
                warmup: 0,
                count: pings_of(config, k),
                load: Load::Pipelined {
                    inflight: config.inflight,
                },
                size: config.size,
                token: String::new(),
                drain_timeout: Nanos::from_millis(client_drain_ms),
                trace_max: if k == 0 { config.round_trips } else { 0 },
                workload: if config.scenario.orders() {
                    Workload::Orders(order_flow(config, k))
                } else {
                    Workload::Ping
                },
                ..ClientConfig::default()
            };
            Host::new(
                HostSpec {
                    name: format!("client-{k}"),
                    listen_port: None,
                    workers: 1,
                    peers: vec![("gateway".into(), GATEWAY_PORT)],
                    worker_config: client_worker_config(config),
                    connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS),
                    service: Rc::new(move |_| Client::new(client_config.clone())),
                    journal: None,
                },
                seed,
                knobs,
                recorder.clone(),
            )
        })
        .collect();
    Hosts {
        exchange,
        journal: log,
        gateway,
        clients,
    }
}

/// A load client's worker settings: its output bound holds the window it
/// writes at once (`inflight` frames of `size`), as loadgen's does, so a
/// deep window of large frames is never cut by the client's own bound (s1
/// seed 420972: 64 × 65,539 bytes, past the default 4 MiB, and every
/// client closed its connections before a ping went out).
pub(super) fn client_worker_config(config: &RunConfig) -> WorkerConfig {
    let default = WorkerConfig::default();
    let window = (config.inflight as usize + 1).saturating_mul(config.size);
    WorkerConfig {
        output_backlog_max: default.output_backlog_max.max(window),
        ..default
    }
}
