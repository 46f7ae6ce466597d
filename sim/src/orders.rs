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
    /// A request the journal may hold: (account, `cl_ord_id`).
    Request { account: u32, cl_ord_id: u64 },
}

/// Reads queued at most; past it the oldest is dropped (a run reads far
/// fewer between two journal records).
pub const READS_QUEUED_MAX: usize = 1 << 16;

/// A message the model says the exchange writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expected {
    opcode: u16,
    /// The header's `cl_ord_id`.
    seq: u64,
    fields: OrderFields,
}

/// The order-entry checks of one run (see the module's doc).
#[derive(Debug)]
pub struct OrderCheck {
    exchange: HostIx,
    config: Config,
    model: Model,
    expected: BTreeMap<Key, Expected>,
    /// Orders closed (filled or canceled) in this incarnation.
    closed: BTreeSet<u64>,
    /// Requests the exchange read and has not matched yet, in read order:
    /// where a query falls among the journaled requests.
    reads: VecDeque<Read>,
    /// Queries placed in the engine's order: (route, `cl_ord_id`) → the
    /// model's answer at that point.
    answers: BTreeMap<(u64, u64), Vec<Event>>,
    /// Rejects on the merits the model gave, and the exchange wrote, by code.
    rejects_model: BTreeMap<u16, u64>,
    rejects_wire: BTreeMap<u16, u64>,
    /// Commands the model has run, over all incarnations.
    commands: u64,
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
            closed: BTreeSet::new(),
            reads: VecDeque::new(),
            answers: BTreeMap::new(),
            rejects_model: BTreeMap::new(),
            rejects_wire: BTreeMap::new(),
            commands: 0,
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
        self.commands
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
                Ok(command) => self.command(&command),
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
            Command::NewOrder(o) => Some((o.account, o.cl_ord_id)),
            Command::Cancel(c) => Some((c.account, c.cl_ord_id)),
            Command::Replace(r) => Some((r.account, r.cl_ord_id)),
            Command::BookQuery(_) | Command::BalanceQuery(_) => None,
        };
        let at = named.and_then(|(a, c)| {
            self.reads.iter().position(|r| {
                matches!(*r, Read::Request { account, cl_ord_id } if (account, cl_ord_id) == (a, c))
            })
        });
        if let Some(at) = at {
            self.place_reads(at);
        }
        self.commands += 1;
        for event in self.model.handle(command) {
            if let Event::Rejected { code, .. } = event {
                *self.rejects_model.entry(code.wire()).or_default() += 1;
            }
            if let Some((key, expected)) = expected_of(&event, command) {
                if self.expected.insert(key, expected).is_some() {
                    self.model_agrees
                        .fail(format!("the model produced {key:?} twice"));
                }
            }
        }
    }

    /// The exchange crashed: a new incarnation starts from nothing (no
    /// journal survives a crash in these runs). What the old one owed is
    /// checked, then forgotten.
    pub fn restart(&mut self) {
        self.settle("before the crash");
        self.model = Model::new(self.config);
        self.expected.clear();
        self.closed.clear();
        self.reads.clear();
        self.answers.clear();
        self.rejects_model.clear();
        self.rejects_wire.clear();
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
        if e.host != self.exchange {
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
        let order_id = o.order_id;
        if self.closed.contains(&order_id) {
            self.no_fill_after_close.fail(format!(
                "at {}: opcode {} for order {order_id}, closed before",
                e.at, e.opcode
            ));
        }
        let closes = match e.opcode {
            op::ORDER_EXECUTED => o.leaves == 0,
            op::ORDER_CANCELED => {
                o.reason == CANCEL_REASON_REQUESTED || o.reason == CANCEL_REASON_IOC
            }
            _ => false,
        };
        if closes {
            self.closed.insert(order_id);
        }
        let got = Expected {
            opcode: e.opcode,
            seq: e.seq,
            fields: o,
        };
        match self.expected.remove(&key) {
            Some(want) if want == got => {}
            Some(want) => self.model_agrees.fail(format!(
                "at {}: the exchange wrote {got:?}, the model {want:?}",
                e.at
            )),
            None => self.model_agrees.fail(format!(
                "at {}: the exchange wrote {got:?}, which the model never produced",
                e.at
            )),
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

    /// What the model produced and the exchange has not written.
    fn settle(&mut self, when: &str) {
        if self.unsent_excused {
            return;
        }
        for (key, want) in std::mem::take(&mut self.expected) {
            self.model_agrees
                .fail(format!("{when}: the exchange never wrote {key:?} {want:?}"));
        }
        if self.rejects_model != self.rejects_wire {
            self.model_agrees.fail(format!(
                "{when}: rejects by code, the model {:?}, the exchange {:?}",
                self.rejects_model, self.rejects_wire
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
        if let Some(engine) = engine {
            self.final_state(engine);
        }
        vec![self.model_agrees, self.no_fill_after_close, self.conserved]
    }
}
