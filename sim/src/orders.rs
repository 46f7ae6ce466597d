//! The order-entry invariants of the o-scenarios, checked online: the
//! exchange's messages against [`fep_engine::reference::Model`], event for
//! event.
//!
//! # Where the engine's input order comes from
//!
//! The exchange journals every request that can change the engine's state
//! (PROTOCOL.md, "Durability") *before* matching it, numbered in order, on
//! the one worker that owns the engine: its [`Effect::Journal`] records are
//! exactly the engine's input, in the engine's order. In the o-scenarios
//! the exchange runs with a journal and the simulator's driver hands every
//! record here as it is appended (the journal's own record format is the
//! engine's command encoding, read with `fep_engine::Command::decode`; that
//! is the engine's input, not the wire). Requests the journal leaves out
//! (queries, requests refused `INVALID_ORDER`/`DUPLICATE_ID`) change
//! nothing, so the model's state follows the engine's exactly. This beats a
//! sim-only hook in the exchange: nothing is added to the product for the
//! check, and the same stream is what recovery replays.
//!
//! # What is compared
//!
//! Every journaled command goes through the model; each event it returns
//! becomes the wire message the exchange must write (opcode, header id,
//! fields), keyed by what makes it unique (`order_id`, `exec_id` and side).
//! Every order message the exchange writes (read back by the checker's own
//! decoder, [`crate::oracle`]) must match one, field for field; queries are
//! answered from the model's state at the moment the answer is written.
//! What the exchange may leave unsent (a message to a connection that
//! closed) is excused only in runs whose faults close the gateway's
//! upstream connections. At the end, the exchange's engine holds the same
//! balances as the model, and the totals of every asset are what the
//! accounts started with: fills conserve quantity and cash.
//!
//! [`Effect::Journal`]: fep_core::Effect::Journal

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use fep_core::ConnId;

use fep_engine::reference::Model;
use fep_engine::{
    BalanceQuery, BookQuery, CancelReason, Command, Config, Engine, Event, Liquidity,
};

use crate::check::{Class, Verdict};
use crate::oracle::{op, OrderFields, CANCEL_REASON_IOC, CANCEL_REASON_REQUESTED};
use crate::trace::{Dir, HostIx, WireEvent};

/// What makes one exchange message unique within an incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Accepted { order_id: u64 },
    Executed { exec_id: u64, maker: bool },
    Canceled { order_id: u64 },
    Replaced { order_id: u64, cl_ord_id: u64 },
}

/// A request the exchange read, until the journal places it.
#[derive(Clone, Copy, Debug)]
enum Read {
    /// A query: never journaled, answered from the state at its place.
    Query {
        route: u64,
        seq: u64,
        command: Command,
    },
    /// A request the journal may hold: its opcode, account and
    /// `cl_ord_id`. The opcode matters: a `CancelOrder`'s `cl_ord_id` is
    /// only echoed, so the gateway's cancel of an order can carry the
    /// order's own id, and a client that rejoined can send that id again
    /// in a `NewOrder` the exchange refuses as a duplicate (seed 861110 of
    /// o3: the journaled cancel matched the refused order's read, and a
    /// balance query read between them was answered from the model after
    /// the cancel, where the exchange had answered it before).
    Request {
        opcode: u16,
        account: u32,
        cl_ord_id: u64,
    },
}

/// Reads queued at most; past it the oldest is dropped (a run reads far
/// fewer between two journal records).
pub const READS_QUEUED_MAX: usize = 1 << 16;

/// A message the model says the exchange writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expected {
    /// The journal record that caused it.
    record: u64,
    /// Its place among every message the model produced: the engine's
    /// order. The exchange's writes keep it on each connection, not
    /// across them.
    position: u64,
    opcode: u16,
    /// The header's `cl_ord_id`.
    seq: u64,
    fields: OrderFields,
}

/// One message the exchange wrote about an order: the model's
/// [`Expected::position`] of it (`None` when the model never produced
/// it) and the connection it went out on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Written {
    position: Option<u64>,
    conn: ConnId,
}

/// What the exchange wrote about one order, for "no fill, cancel or
/// replace of a closed order".
///
/// The exchange writes the messages of one released batch connection by
/// connection, so two connections' messages reach the wire in another
/// order than the engine's: a maker's fills on the connection of its
/// order's request may follow its cancel on another (a cancel on
/// disconnect comes from the client's own worker while the order went
/// out through another worker's upstream: o3 seeds 122 and 137). What
/// must hold is the engine's order: nothing about an order comes after
/// the message that closed it by the model's position, and on the
/// connection of the close, where the wire keeps the engine's order,
/// nothing comes after it on the wire either.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// The message that closed the order (a fill with nothing left, a
    /// cancel), once written.
    closed: Option<Written>,
}

impl Seen {
    /// Notes `written` (closing the order when `closes`); says why it is a
    /// message about a closed order, if it is.
    fn after_close(&mut self, written: Written, closes: bool) -> Option<&'static str> {
        let Some(close) = self.closed else {
            if closes {
                self.closed = Some(written);
            }
            return None;
        };
        match (close.position, written.position) {
            _ if close.conn == written.conn => Some("written after its close"),
            (None, _) => Some("closed before by a message the model never produced"),
            (_, None) => Some("closed before, and the model never produced it"),
            (Some(c), Some(p)) if p > c => Some("after its close in the engine's order"),
            _ => None,
        }
    }
}

/// What the order check saw of the exchange's journal in one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Journaled commands run through the model.
    pub commands: u64,
    /// Starts that recovered the journal (the first start included).
    pub recoveries: u32,
    /// Records those recoveries replayed, in all.
    pub records_recovered: u64,
    /// Records recovered that were durable but never reported durable
    /// (written, then the crash came before the sync's answer).
    pub unacknowledged_recovered: u64,
    /// Starts whose recovery failed (an I/O error reading the journal).
    pub recovery_failures: u32,
    /// Times the running journal failed (an I/O error on write or sync).
    pub journal_failures: u32,
}

/// The order-entry checks of one run (see the module's doc).
#[derive(Debug)]
pub struct OrderCheck {
    exchange: HostIx,
    config: Config,
    model: Model,
    expected: BTreeMap<Key, Expected>,
    /// What the exchange wrote about each order in this incarnation, by
    /// `order_id`.
    seen: BTreeMap<u64, Seen>,
    /// The [`Expected::position`] of the model's next message.
    position: u64,
    /// Requests the exchange read and has not matched yet, in read order:
    /// where a query falls among the journaled requests.
    reads: VecDeque<Read>,
    /// Queries placed in the engine's order: (route, `cl_ord_id`) → the
    /// model's answer at that point.
    answers: BTreeMap<(u64, u64), Vec<Event>>,
    /// Rejects on the merits the exchange wrote, by code.
    rejects_wire: BTreeMap<u16, u64>,
    /// Commands the model has run, over all incarnations, and recoveries.
    stats: JournalStats,
    /// The journaled commands of the exchange's current history, in order:
    /// record `i + 1` is `history[i]`.
    history: Vec<Command>,
    /// The exchange journals on a disk that survives a crash (the
    /// storage runs); otherwise it restarts empty.
    storage: bool,
    /// Every record up to here was reported durable (with the in-memory
    /// log, every record at once).
    durable: u64,
    /// `durable` when the exchange last crashed: recovery must give back
    /// at least this much.
    durable_at_crash: u64,
    /// Orders open when the exchange last recovered, by (account, name):
    /// they have no connection, so their makers' messages go unsent
    /// (PROTOCOL.md) until a replace names them again.
    orphans: BTreeSet<(u32, u64)>,
    /// Expected messages that may go unsent (makers' fills of orphans).
    optional: BTreeSet<Key>,
    /// Recovery failed: the exchange runs without its state until the
    /// next restart, and is not compared.
    suspended: bool,
    /// The exchange restarted at least once (its orders lost their
    /// connections, the gateway its upstream).
    restarted: bool,
    cancel_on_disconnect: Verdict,
    /// Rejects on the merits the model gave: (record, code).
    rejected: Vec<(u64, u16)>,
    recovery: Verdict,
    /// Faults in this run may close the gateway's upstream connections, so
    /// messages for them may go unsent.
    unsent_excused: bool,
    model_agrees: Verdict,
    no_fill_after_close: Verdict,
    conserved: Verdict,
}

fn side_wire(side: fep_engine::Side) -> u8 {
    side.wire()
}

/// The wire message of one model event, with its key; `command` is the
/// request that caused it.
fn expected_of(event: &Event, command: &Command) -> Option<(Key, Expected)> {
    Some(match *event {
        Event::Accepted {
            account,
            order_id,
            cl_ord_id,
            instrument,
            side,
            tif,
            price,
            qty,
        } => (
            Key::Accepted { order_id },
            Expected {
                record: 0,
                position: 0,
                opcode: op::ORDER_ACCEPTED,
                seq: cl_ord_id,
                fields: OrderFields {
                    account,
                    order_id,
                    instrument,
                    side: side_wire(side),
                    tif: tif.wire(),
                    price,
                    qty,
                    ..OrderFields::default()
                },
            },
        ),
        Event::Executed {
            account,
            order_id,
            cl_ord_id,
            exec_id,
            price,
            qty,
            leaves,
            liquidity,
        } => (
            Key::Executed {
                exec_id,
                maker: liquidity == Liquidity::Maker,
            },
            Expected {
                record: 0,
                position: 0,
                opcode: op::ORDER_EXECUTED,
                seq: cl_ord_id,
                fields: OrderFields {
                    account,
                    order_id,
                    exec_id,
                    price,
                    qty,
                    leaves,
                    liquidity: liquidity.wire(),
                    ..OrderFields::default()
                },
            },
        ),
        Event::Canceled {
            account,
            order_id,
            cl_ord_id,
            canceled_qty,
            reason,
        } => {
            // A cancel's answer echoes the cancel request's own id; an
            // IOC's rest the order's name.
            let seq = match (reason, command) {
                (CancelReason::Requested, Command::Cancel(c)) => c.cl_ord_id,
                _ => cl_ord_id,
            };
            (
                Key::Canceled { order_id },
                Expected {
                    record: 0,
                    position: 0,
                    opcode: op::ORDER_CANCELED,
                    seq,
                    fields: OrderFields {
                        account,
                        order_id,
                        qty: canceled_qty,
                        reason: reason.wire(),
                        ..OrderFields::default()
                    },
                },
            )
        }
        Event::Replaced {
            account,
            order_id,
            cl_ord_id,
            price,
            qty,
        } => (
            Key::Replaced {
                order_id,
                cl_ord_id,
            },
            Expected {
                record: 0,
                position: 0,
                opcode: op::ORDER_REPLACED,
                seq: cl_ord_id,
                fields: OrderFields {
                    account,
                    order_id,
                    price,
                    qty,
                    ..OrderFields::default()
                },
            },
        ),
        Event::Rejected { .. }
        | Event::Book { .. }
        | Event::Level { .. }
        | Event::Balance { .. } => return None,
    })
}

/// The key a wire message of the exchange is expected under.
fn key_of(e: &WireEvent) -> Option<Key> {
    let o = &e.order;
    Some(match e.opcode {
        op::ORDER_ACCEPTED => Key::Accepted {
            order_id: o.order_id,
        },
        op::ORDER_EXECUTED => Key::Executed {
            exec_id: o.exec_id,
            maker: o.liquidity == crate::oracle::LIQUIDITY_MAKER,
        },
        op::ORDER_CANCELED => Key::Canceled {
            order_id: o.order_id,
        },
        op::ORDER_REPLACED => Key::Replaced {
            order_id: o.order_id,
            cl_ord_id: e.seq,
        },
        _ => return None,
    })
}

impl OrderCheck {
    /// Checks for an exchange host `exchange` whose engine starts from
    /// `config`; `unsent_excused` when the run's faults may close the
    /// gateway's upstream connections.
    pub fn new(exchange: HostIx, config: Config, unsent_excused: bool) -> OrderCheck {
        OrderCheck {
            exchange,
            config,
            model: Model::new(config),
            expected: BTreeMap::new(),
            seen: BTreeMap::new(),
            position: 0,
            reads: VecDeque::new(),
            answers: BTreeMap::new(),
            rejects_wire: BTreeMap::new(),
            stats: JournalStats::default(),
            history: Vec::new(),
            storage: false,
            durable: 0,
            durable_at_crash: 0,
            orphans: BTreeSet::new(),
            optional: BTreeSet::new(),
            suspended: false,
            restarted: false,
            cancel_on_disconnect: Verdict::new(
                "no order left open once every client is gone (cancel on disconnect)",
                Class::Safety,
            ),
            rejected: Vec::new(),
            recovery: Verdict::new(
                "no acknowledged request lost; recovery replays a prefix of the journal",
                Class::Safety,
            ),
            unsent_excused,
            model_agrees: Verdict::new(
                "exchange messages equal the reference model's, event for event",
                Class::Safety,
            ),
            no_fill_after_close: Verdict::new(
                "no fill, cancel or replace of a closed order",
                Class::Safety,
            ),
            conserved: Verdict::new(
                "balances equal the model's; fills conserve quantity and cash",
                Class::Safety,
            ),
        }
    }

    /// The exchange host.
    pub fn exchange(&self) -> HostIx {
        self.exchange
    }

    /// Commands the model has run.
    pub fn commands(&self) -> u64 {
        self.stats.commands
    }

    /// What the check saw of the journal so far.
    pub fn stats(&self) -> JournalStats {
        self.stats
    }

    /// Journal records the exchange appended (each `len:u32` then the
    /// record), in order: the engine's input.
    pub fn journaled(&mut self, records: &[u8]) {
        let mut rest = records;
        while let Some((head, body)) = rest.split_first_chunk::<4>() {
            let len = u32::from_be_bytes(*head) as usize;
            let Some(record) = body.get(..len) else {
                self.model_agrees
                    .fail(format!("a journal record of {len} bytes is cut short"));
                return;
            };
            match Command::decode(record) {
                Ok(command) => {
                    self.history.push(command);
                    if !self.storage {
                        self.durable = self.history.len() as u64;
                    }
                    self.command(&command);
                }
                Err(e) => self
                    .model_agrees
                    .fail(format!("a journal record does not decode: {e}")),
            }
            rest = &body[len..];
        }
    }

    /// One command in the engine's order.
    pub fn command(&mut self, command: &Command) {
        let named = match command {
            Command::NewOrder(o) => Some((op::NEW_ORDER, o.account, o.cl_ord_id)),
            Command::Cancel(c) => Some((op::CANCEL_ORDER, c.account, c.cl_ord_id)),
            Command::Replace(r) => Some((op::REPLACE_ORDER, r.account, r.cl_ord_id)),
            Command::BookQuery(_) | Command::BalanceQuery(_) => None,
        };
        let at = named.and_then(|key| {
            self.reads.iter().position(|r| {
                matches!(*r, Read::Request { opcode, account, cl_ord_id } if (opcode, account, cl_ord_id) == key)
            })
        });
        if let Some(at) = at {
            self.place_reads(at);
        }
        self.stats.commands += 1;
        let record = self.history.len() as u64;
        if let Command::Replace(r) = command {
            // Named again: its makers' messages have a connection now.
            self.orphans.remove(&(r.account, r.orig_cl_ord_id));
        }
        for event in self.model.handle(command) {
            if let Event::Rejected { code, .. } = event {
                self.rejected.push((record, code.wire()));
            }
            if let Some((key, mut expected)) = expected_of(&event, command) {
                expected.record = record;
                expected.position = self.position;
                self.position += 1;
                let maker = matches!(key, Key::Executed { maker: true, .. });
                if maker
                    && self
                        .orphans
                        .contains(&(expected.fields.account, expected.seq))
                {
                    self.optional.insert(key);
                }
                if self.expected.insert(key, expected).is_some() {
                    self.model_agrees
                        .fail(format!("the model produced {key:?} twice"));
                }
            }
        }
    }

    /// The exchange journals on the simulated disk: a restart recovers
    /// ([`OrderCheck::recovered`]) instead of starting empty.
    pub fn durable_log(&mut self) {
        self.storage = true;
    }

    /// The log made every record up to `seq` durable.
    pub fn durable(&mut self, seq: u64) {
        self.durable = self.durable.max(seq);
    }

    /// The exchange crashed: what it owed is forgotten with the
    /// incarnation (answers released but not yet written when the process
    /// died die with it, as a socket's buffer does; durability is checked
    /// by the recovery). Without a durable log the next one starts from
    /// nothing.
    pub fn restart(&mut self) {
        self.restarted = true;
        self.durable_at_crash = self.durable;
        self.expected.clear();
        self.optional.clear();
        self.seen.clear();
        self.reads.clear();
        self.answers.clear();
        self.rejected.clear();
        self.rejects_wire.clear();
        if !self.storage {
            self.model = Model::new(self.config);
            self.history.clear();
            self.durable = 0;
            self.durable_at_crash = 0;
        }
    }

    /// A (re)started exchange recovered `records` (`len:u32` then the
    /// record, each) from its journal: at least every record that was
    /// durable when it crashed, and exactly the journal's first records.
    /// The model becomes their replay.
    pub fn recovered(&mut self, records: &[u8]) {
        let mut commands = Vec::new();
        let mut rest = records;
        while let Some((head, body)) = rest.split_first_chunk::<4>() {
            let len = (u32::from_be_bytes(*head) as usize).min(body.len());
            match Command::decode(&body[..len]) {
                Ok(c) => commands.push(c),
                Err(e) => self
                    .recovery
                    .fail(format!("a recovered record does not decode: {e}")),
            }
            rest = &body[len..];
        }
        let n = commands.len() as u64;
        self.stats.recoveries += 1;
        self.stats.records_recovered += n;
        self.stats.unacknowledged_recovered += n.saturating_sub(self.durable_at_crash);
        if n < self.durable_at_crash {
            self.recovery.fail(format!(
                "an acknowledged request was lost: {} records were durable, {n} recovered",
                self.durable_at_crash
            ));
        }
        if let Some(i) = (0..commands.len()).find(|&i| self.history.get(i) != Some(&commands[i])) {
            self.recovery.fail(format!(
                "recovered record {} is {:?}, the exchange journaled {:?}",
                i + 1,
                commands[i],
                self.history.get(i)
            ));
        }
        self.history = commands;
        self.model = Model::new(self.config);
        for c in &self.history {
            let _ = self.model.handle(c);
        }
        self.orphans = self
            .model
            .open_orders()
            .into_iter()
            .map(|(account, name, _, _)| (account, name))
            .collect();
        self.durable = n;
        self.suspended = false;
    }

    /// The running journal failed: nothing more becomes durable until a
    /// restart.
    pub fn journal_failed(&mut self) {
        self.stats.journal_failures += 1;
    }

    /// A restarted exchange could not recover (an I/O error while reading
    /// its journal): until the next restart it is not compared.
    pub fn recovery_failed(&mut self, _why: &str) {
        self.stats.recovery_failures += 1;
        self.suspended = true;
    }

    /// The reads up to and including `reads[at]` have been handled by the
    /// engine: queries among them are answered from the model as it is
    /// now; requests among them that the journal did not place never
    /// will be (refused before the engine's state).
    fn place_reads(&mut self, at: usize) {
        for read in self.reads.drain(..=at).collect::<Vec<_>>() {
            if let Read::Query {
                route,
                seq,
                command,
            } = read
            {
                let events = self.model.handle(&command);
                self.answers.insert((route, seq), events);
            }
        }
    }

    /// The model's answer to the query `(route, seq)` the exchange is
    /// writing: placed by the journal already, or now (it went out before
    /// any later journaled request: nothing else was matched since).
    fn answer_of(&mut self, route: u64, seq: u64) -> Option<Vec<Event>> {
        if let Some(events) = self.answers.remove(&(route, seq)) {
            return Some(events);
        }
        let at = self.reads.iter().position(
            |r| matches!(*r, Read::Query { route: r0, seq: s0, .. } if (r0, s0) == (route, seq)),
        )?;
        self.place_reads(at);
        self.answers.remove(&(route, seq))
    }

    fn read(&mut self, read: Read) {
        if self.reads.len() == READS_QUEUED_MAX {
            self.reads.pop_front();
        }
        self.reads.push_back(read);
    }

    /// A frame the exchange host wrote or read.
    pub fn event(&mut self, e: &WireEvent) {
        if e.host != self.exchange || self.suspended {
            return;
        }
        let o = e.order;
        match (e.dir, e.opcode) {
            (Dir::In, op::BOOK_QUERY) => self.read(Read::Query {
                route: e.route,
                seq: e.seq,
                command: Command::BookQuery(BookQuery {
                    instrument: o.instrument,
                    depth: o.depth,
                }),
            }),
            (Dir::In, op::BALANCE_QUERY) => self.read(Read::Query {
                route: e.route,
                seq: e.seq,
                command: Command::BalanceQuery(BalanceQuery {
                    account: o.account,
                    asset: o.asset,
                }),
            }),
            (Dir::In, op::NEW_ORDER | op::CANCEL_ORDER | op::REPLACE_ORDER) => {
                self.read(Read::Request {
                    opcode: e.opcode,
                    account: o.account,
                    cl_ord_id: e.seq,
                })
            }
            (Dir::Out, op::BALANCE) => self.balance(e),
            (Dir::Out, op::BOOK_SNAPSHOT) => self.book(e),
            (Dir::Out, op::REJECT) if (11..=14).contains(&e.code) => {
                *self.rejects_wire.entry(e.code).or_default() += 1;
            }
            (Dir::Out, _) => self.order_message(e),
            _ => {}
        }
    }

    fn order_message(&mut self, e: &WireEvent) {
        let Some(key) = key_of(e) else {
            return;
        };
        let o = e.order;
        let got = Expected {
            record: 0,
            position: 0,
            opcode: e.opcode,
            seq: e.seq,
            fields: o,
        };
        let want = self.expected.remove(&key);
        match want {
            Some(want)
                if Expected {
                    record: 0,
                    position: 0,
                    ..want
                } == got => {}
            Some(want) => self.model_agrees.fail(format!(
                "at {}: the exchange wrote {got:?}, the model {want:?}",
                e.at
            )),
            None => self.model_agrees.fail(format!(
                "at {}: the exchange wrote {got:?}, which the model never produced",
                e.at
            )),
        }
        let closes = match e.opcode {
            op::ORDER_EXECUTED => o.leaves == 0,
            op::ORDER_CANCELED => {
                o.reason == CANCEL_REASON_REQUESTED || o.reason == CANCEL_REASON_IOC
            }
            _ => false,
        };
        let written = Written {
            position: want.map(|w| w.position),
            conn: e.conn,
        };
        let seen = self.seen.entry(o.order_id).or_default();
        if let Some(why) = seen.after_close(written, closes) {
            self.no_fill_after_close.fail(format!(
                "at {}: opcode {} for order {} on {:?}: {why}",
                e.at, e.opcode, o.order_id, e.conn
            ));
        }
    }

    fn balance(&mut self, e: &WireEvent) {
        let o = e.order;
        let Some(want) = self.answer_of(e.route, e.seq) else {
            return self.model_agrees.fail(format!(
                "at {}: a Balance for no query the exchange read",
                e.at
            ));
        };
        let agrees = matches!(
            want.as_slice(),
            [Event::Balance { total, locked, .. }] if *total == o.total && *locked == o.locked
        );
        if !agrees {
            self.model_agrees.fail(format!(
                "at {}: Balance of account {} asset {} is {}/{} locked, the model says {want:?}",
                e.at, o.account, o.asset, o.total, o.locked
            ));
        }
    }

    fn book(&mut self, e: &WireEvent) {
        let o = e.order;
        let Some(want) = self.answer_of(e.route, e.seq) else {
            return self.model_agrees.fail(format!(
                "at {}: a BookSnapshot for no query the exchange read",
                e.at
            ));
        };
        let mut levels = Vec::new();
        let mut head = (0, 0);
        for event in want {
            match event {
                Event::Book { bids, asks, .. } => head = (bids, asks),
                Event::Level { price, qty, orders } => {
                    levels.extend_from_slice(&price.to_be_bytes());
                    levels.extend_from_slice(&qty.to_be_bytes());
                    levels.extend_from_slice(&orders.to_be_bytes());
                }
                _ => {}
            }
        }
        let digest = crate::trace::fnv1a64(&levels);
        if head != (o.nbids, o.nasks) || digest != o.levels {
            self.model_agrees.fail(format!(
                "at {}: BookSnapshot of instrument {} has {}+{} levels (digest {:x}), \
                 the model {}+{} (digest {digest:x})",
                e.at, o.instrument, o.nbids, o.nasks, o.levels, head.0, head.1
            ));
        }
    }

    /// What the model produced for durable requests (their answers are
    /// released once durable) and the exchange has not written.
    fn settle(&mut self, when: &str) {
        if self.unsent_excused || self.suspended {
            return;
        }
        let durable = self.durable;
        for (key, want) in std::mem::take(&mut self.expected) {
            if want.record <= durable && !self.optional.contains(&key) {
                self.model_agrees
                    .fail(format!("{when}: the exchange never wrote {key:?} {want:?}"));
            }
        }
        let mut model = BTreeMap::new();
        for &(record, code) in &self.rejected {
            if record <= durable && (code == 11 || code == 14) {
                *model.entry(code).or_insert(0u64) += 1;
            }
        }
        let wire: BTreeMap<u16, u64> = self
            .rejects_wire
            .iter()
            .filter(|(code, _)| **code == 11 || **code == 14)
            .map(|(c, n)| (*c, *n))
            .collect();
        if model != wire {
            self.model_agrees.fail(format!(
                "{when}: rejects by code, the model {model:?}, the exchange {wire:?}"
            ));
        }
    }

    /// The engine the exchange ended with agrees with the model: every
    /// balance, the open orders, and the totals of each asset over all
    /// accounts are what they started at.
    fn final_state(&mut self, engine: &Engine) {
        let c = self.config;
        for asset in 0..=c.instruments {
            let start = if asset == 0 { c.cash } else { c.units };
            let mut sum: i128 = 0;
            for account in 1..=c.accounts {
                let Some((total, locked)) = engine.balance(account, asset) else {
                    self.conserved
                        .fail(format!("the engine has no balance {account}/{asset}"));
                    continue;
                };
                sum += i128::from(total);
                let q = Command::BalanceQuery(BalanceQuery { account, asset });
                let want = self.model.handle(&q);
                let agrees = matches!(
                    want.as_slice(),
                    [Event::Balance { total: t, locked: l, .. }] if *t == total && *l == locked
                );
                if !agrees {
                    self.conserved.fail(format!(
                        "account {account} asset {asset}: the engine holds {total}/{locked} \
                         locked, the model {want:?}"
                    ));
                }
            }
            let want = i128::from(start) * i128::from(c.accounts);
            if sum != want {
                self.conserved.fail(format!(
                    "asset {asset}: the accounts hold {sum} in all, they started with {want}"
                ));
            }
        }
        let open = self.model.open_orders().len();
        if engine.open_orders() as usize != open {
            self.conserved.fail(format!(
                "the engine has {} open orders, the model {open}",
                engine.open_orders()
            ));
        }
    }

    /// The verdicts at the end of the run; `engine` is the exchange's
    /// engine as it ended (`None` if it is down).
    pub fn finish(mut self, engine: Option<&Engine>) -> Vec<Verdict> {
        self.settle("at the end");
        if let Some(engine) = engine.filter(|_| !self.suspended) {
            self.final_state(engine);
        }
        // PROTOCOL.md: the gateway cancels a departing client's open orders.
        // A lost upstream or a restart leaves orders the gateway may no
        // longer know of; the contract says nothing of those.
        let open = self.model.open_orders();
        if !self.unsent_excused && !self.restarted && !self.suspended && !open.is_empty() {
            self.cancel_on_disconnect.fail(format!(
                "{} orders still open, the first (account, name, price, open) {:?}",
                open.len(),
                open[0]
            ));
        }
        vec![
            self.model_agrees,
            self.no_fill_after_close,
            self.conserved,
            self.recovery,
            self.cancel_on_disconnect,
        ]
    }
}
