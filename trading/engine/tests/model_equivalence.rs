//! The engine against the reference model (`fep_engine::reference`) over random
//! command streams: the same events for every command, field for field,
//! and the same state after a snapshot and restore at a random point.

use fep_engine::reference::Model;
use fep_engine::{
    BalanceQuery, BookQuery, Cancel, Command, Config, Engine, Event, NewOrder, Replace, Side, Tif,
};
use proptest::prelude::*;

const ACCOUNTS: u32 = 3;
const INSTRUMENTS: u32 = 2;

/// A replace's quantity relative to the order's open quantity, so the
/// priority rule's edges (same, one less, one more) come up often.
#[derive(Clone, Copy, Debug)]
enum Qty {
    Same,
    Less,
    More,
    Given(u64),
}

/// One request, in terms that are turned into a command against the
/// current state (so cancels and replaces usually name an open order).
#[derive(Clone, Debug)]
enum Op {
    New {
        account: u32,
        instrument: u32,
        side: Side,
        tif: Tif,
        price: i64,
        qty: u64,
        id: i64,
    },
    Cancel {
        pick: usize,
        stray: bool,
    },
    Replace {
        pick: usize,
        stray: bool,
        price: Option<i64>,
        qty: Qty,
        id: i64,
    },
    Book {
        instrument: u32,
        depth: u16,
    },
    Balance {
        account: u32,
        asset: u32,
    },
}

fn configs() -> impl Strategy<Value = Config> {
    (4u32..=16, 2u32..=6, 100i64..=3_000, 5i64..=60).prop_map(|(orders, levels, cash, units)| {
        Config {
            instruments: INSTRUMENTS,
            accounts: ACCOUNTS,
            cash,
            units,
            orders_max: orders,
            levels_max: levels,
        }
    })
}

fn accounts() -> impl Strategy<Value = u32> {
    prop_oneof![20 => 1..=ACCOUNTS, 1 => Just(0), 1 => Just(ACCOUNTS + 1)]
}

fn prices() -> impl Strategy<Value = i64> {
    prop_oneof![40 => 1i64..=12, 1 => Just(0), 1 => -3i64..0, 1 => Just(i64::MAX / 2), 1 => Just(i64::MAX)]
}

fn qtys() -> impl Strategy<Value = u64> {
    prop_oneof![40 => 1u64..=12, 1 => Just(0), 1 => Just(1_000_000_000), 1 => Just(1_000_000_001)]
}

/// An offset from the step's fresh id: mostly fresh, sometimes a repeat
/// or an old id, sometimes 0.
fn ids() -> impl Strategy<Value = i64> {
    prop_oneof![12 => Just(1i64), 3 => -4i64..=0, 1 => Just(i64::MIN / 2)]
}

/// `None` keeps the order's price.
fn replace_prices() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![2 => Just(None), 3 => prices().prop_map(Some)]
}

fn replace_qtys() -> impl Strategy<Value = Qty> {
    prop_oneof![
        2 => Just(Qty::Same),
        1 => Just(Qty::Less),
        1 => Just(Qty::More),
        3 => qtys().prop_map(Qty::Given),
    ]
}

fn ops() -> impl Strategy<Value = Op> {
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let tif = prop_oneof![4 => Just(Tif::Day), 1 => Just(Tif::Ioc)];
    let instrument = prop_oneof![20 => 1..=INSTRUMENTS, 1 => Just(0), 1 => Just(INSTRUMENTS + 1)];
    prop_oneof![
        8 => (accounts(), instrument.clone(), side, tif, prices(), qtys(), ids()).prop_map(
            |(account, instrument, side, tif, price, qty, id)| Op::New {
                account, instrument, side, tif, price, qty, id
            }
        ),
        3 => (any::<usize>(), prop::bool::weighted(0.1))
            .prop_map(|(pick, stray)| Op::Cancel { pick, stray }),
        6 => (any::<usize>(), prop::bool::weighted(0.1), replace_prices(), replace_qtys(), ids())
            .prop_map(|(pick, stray, price, qty, id)| Op::Replace { pick, stray, price, qty, id }),
        1 => (instrument, 0u16..=4).prop_map(|(instrument, depth)| Op::Book { instrument, depth }),
        1 => (accounts(), 0..=INSTRUMENTS + 1)
            .prop_map(|(account, asset)| Op::Balance { account, asset }),
    ]
}

/// Turns op number `step` into a command, naming one of `open` orders
/// when it cancels or replaces.
fn command(step: usize, op: &Op, open: &[(u32, u64, i64, u64)]) -> Command {
    let fresh = |id: i64| (2 * step as i64 + id).max(0) as u64;
    let name = |pick: usize, stray: bool| {
        if stray || open.is_empty() {
            ((pick % 4) as u32, (pick / 4 % (2 * step + 2)) as u64, 5, 5)
        } else {
            open[pick % open.len()]
        }
    };
    match *op {
        Op::New {
            account,
            instrument,
            side,
            tif,
            price,
            qty,
            id,
        } => Command::NewOrder(NewOrder {
            account,
            cl_ord_id: fresh(id),
            instrument,
            side,
            tif,
            price,
            qty,
        }),
        Op::Cancel { pick, stray } => {
            let (account, orig_cl_ord_id, _, _) = name(pick, stray);
            Command::Cancel(Cancel {
                account,
                cl_ord_id: fresh(1),
                orig_cl_ord_id,
            })
        }
        Op::Replace {
            pick,
            stray,
            price,
            qty,
            id,
        } => {
            let (account, orig_cl_ord_id, open_price, open_qty) = name(pick, stray);
            let qty = match qty {
                Qty::Same => open_qty,
                Qty::Less => open_qty - 1,
                Qty::More => open_qty + 1,
                Qty::Given(q) => q,
            };
            let price = price.unwrap_or(open_price);
            Command::Replace(Replace {
                account,
                cl_ord_id: fresh(id),
                orig_cl_ord_id,
                price,
                qty,
            })
        }
        Op::Book { instrument, depth } => Command::BookQuery(BookQuery { instrument, depth }),
        Op::Balance { account, asset } => Command::BalanceQuery(BalanceQuery { account, asset }),
    }
}

/// Every book and every balance, as events.
fn whole_state(mut handle: impl FnMut(&Command) -> Vec<Event>) -> Vec<Event> {
    let mut events = Vec::new();
    for instrument in 1..=INSTRUMENTS {
        events.extend(handle(&Command::BookQuery(BookQuery {
            instrument,
            depth: 100,
        })));
    }
    for account in 1..=ACCOUNTS {
        for asset in 0..=INSTRUMENTS {
            events.extend(handle(&Command::BalanceQuery(BalanceQuery {
                account,
                asset,
            })));
        }
    }
    events
}

fn engine_events(engine: &mut Engine, command: &Command) -> Vec<Event> {
    let mut events = Vec::new();
    engine.handle(command, &mut events);
    events
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_gives_the_reference_models_events_field_for_field(
        config in configs(),
        ops in prop::collection::vec(ops(), 1..250),
    ) {
        let mut engine = Engine::new(config).unwrap();
        let mut model = Model::new(config);
        for (step, op) in ops.iter().enumerate() {
            let command = command(step, op, &model.open_orders());
            let journaled = engine.must_journal(&command);
            let expect = model.handle(&command);
            let got = engine_events(&mut engine, &command);
            prop_assert_eq!(&got, &expect, "step {} {:?}", step, command);
            let changed_mark = matches!(command, Command::NewOrder(_) | Command::Replace(_))
                && !matches!(
                    got[0],
                    Event::Rejected { code: fep_engine::RejectCode::InvalidOrder | fep_engine::RejectCode::DuplicateId, .. }
                );
            let is_cancel = matches!(command, Command::Cancel(_));
            prop_assert_eq!(journaled, changed_mark || is_cancel, "must_journal at step {}", step);
        }
        let got = whole_state(|c| engine_events(&mut engine, c));
        prop_assert_eq!(got, whole_state(|c| model.handle(c)));
    }

    #[test]
    fn a_restored_snapshot_behaves_exactly_like_the_original(
        config in configs(),
        ops in prop::collection::vec(ops(), 1..200),
        split in any::<prop::sample::Index>(),
    ) {
        let split = split.index(ops.len());
        let mut original = Engine::new(config).unwrap();
        let mut model = Model::new(config);
        let mut commands = Vec::new();
        for (step, op) in ops.iter().enumerate() {
            let command = command(step, op, &model.open_orders());
            model.handle(&command);
            commands.push(command);
        }
        for command in &commands[..split] {
            engine_events(&mut original, command);
        }
        let mut bytes = Vec::new();
        original.snapshot(&mut bytes);
        let mut restored = Engine::restore(config, &bytes).unwrap();
        let mut again = Vec::new();
        restored.snapshot(&mut again);
        prop_assert_eq!(&bytes, &again, "the restored state encodes the same");
        prop_assert_eq!(original.next_order_id(), restored.next_order_id());
        prop_assert_eq!(original.open_orders(), restored.open_orders());
        for command in &commands[split..] {
            let a = engine_events(&mut original, command);
            let b = engine_events(&mut restored, command);
            prop_assert_eq!(a, b, "{:?}", command);
        }
    }
}
