//! One test per rule of the contract's order entry, each a short script of
//! requests and the exact events they must give.

use fep_engine::{
    reason, BalanceQuery, BookQuery, Cancel, CancelReason, Command, Config, Engine, Event,
    Liquidity, NewOrder, RejectCode, Replace, Side, Tif,
};

const CASH: i64 = 1_000_000;
const UNITS: i64 = 1_000;

fn config() -> Config {
    Config {
        instruments: 2,
        accounts: 3,
        cash: CASH,
        units: UNITS,
        orders_max: 8,
        levels_max: 4,
    }
}

fn engine() -> Engine {
    Engine::new(config()).expect("valid settings")
}

fn run(engine: &mut Engine, command: Command) -> Vec<Event> {
    let mut events = Vec::new();
    engine.handle(&command, &mut events);
    events
}

fn order(account: u32, cl_ord_id: u64, side: Side, price: i64, qty: u64) -> NewOrder {
    NewOrder {
        account,
        cl_ord_id,
        instrument: 1,
        side,
        tif: Tif::Day,
        price,
        qty,
    }
}

fn new(engine: &mut Engine, o: NewOrder) -> Vec<Event> {
    run(engine, Command::NewOrder(o))
}

fn replace(
    engine: &mut Engine,
    account: u32,
    cl: u64,
    orig: u64,
    price: i64,
    qty: u64,
) -> Vec<Event> {
    let r = Replace {
        account,
        cl_ord_id: cl,
        orig_cl_ord_id: orig,
        price,
        qty,
    };
    run(engine, Command::Replace(r))
}

fn cancel(engine: &mut Engine, account: u32, orig: u64) -> Vec<Event> {
    run(
        engine,
        Command::Cancel(Cancel {
            account,
            cl_ord_id: 0,
            orig_cl_ord_id: orig,
        }),
    )
}

fn rejected(code: RejectCode, reason: &'static str) -> Vec<Event> {
    vec![Event::Rejected { code, reason }]
}

fn code_of(events: &[Event]) -> Option<RejectCode> {
    match events {
        [Event::Rejected { code, .. }] => Some(*code),
        _ => None,
    }
}

fn balance(engine: &Engine, account: u32, asset: u32) -> (i64, i64) {
    engine
        .balance(account, asset)
        .expect("known account and asset")
}

fn levels(engine: &mut Engine, instrument: u32) -> Vec<Event> {
    run(
        engine,
        Command::BookQuery(BookQuery {
            instrument,
            depth: 10,
        }),
    )
}

#[test]
fn an_order_that_does_not_cross_is_accepted_and_rests() {
    let mut e = engine();
    let events = new(&mut e, order(1, 5, Side::Buy, 100, 7));
    assert_eq!(
        events,
        vec![Event::Accepted {
            account: 1,
            order_id: 1,
            cl_ord_id: 5,
            instrument: 1,
            side: Side::Buy,
            tif: Tif::Day,
            price: 100,
            qty: 7
        }]
    );
    assert_eq!(
        balance(&e, 1, 0),
        (CASH, 700),
        "a buy locks price x qty cash"
    );
    assert_eq!(e.open_orders(), 1);
}

#[test]
fn invalid_orders_are_refused_in_the_contract_order_without_raising_the_mark() {
    let mut e = engine();
    let cases = [
        (
            NewOrder {
                account: 0,
                ..order(1, 1, Side::Buy, 0, 0)
            },
            reason::UNKNOWN_ACCOUNT,
        ),
        (
            NewOrder {
                account: 4,
                ..order(1, 1, Side::Buy, 1, 1)
            },
            reason::UNKNOWN_ACCOUNT,
        ),
        (
            NewOrder {
                instrument: 0,
                ..order(1, 1, Side::Buy, 0, 1)
            },
            reason::UNKNOWN_INSTRUMENT,
        ),
        (
            NewOrder {
                instrument: 3,
                ..order(1, 1, Side::Buy, 1, 1)
            },
            reason::UNKNOWN_INSTRUMENT,
        ),
        (order(1, 1, Side::Buy, 0, 0), reason::PRICE_NOT_POSITIVE),
        (order(1, 1, Side::Sell, -5, 1), reason::PRICE_NOT_POSITIVE),
        (order(1, 1, Side::Buy, 1, 0), reason::QTY_OUT_OF_RANGE),
        (
            order(1, 1, Side::Buy, 1, 1_000_000_001),
            reason::QTY_OUT_OF_RANGE,
        ),
        (
            order(1, 1, Side::Buy, i64::MAX / 2 + 1, 2),
            reason::NOTIONAL_OVERFLOW,
        ),
        // INVALID comes before DUPLICATE: cl_ord_id 0 with a bad price.
        (order(1, 0, Side::Buy, 0, 1), reason::PRICE_NOT_POSITIVE),
    ];
    for (o, why) in cases {
        assert_eq!(
            new(&mut e, o),
            rejected(RejectCode::InvalidOrder, why),
            "{o:?}"
        );
    }
    assert_eq!(e.mark(1), Some(0), "no invalid order raised the mark");
    let at_limit = order(1, 1, Side::Sell, i64::MAX / 1_000, 1_000);
    assert_eq!(
        code_of(&new(&mut e, at_limit)),
        None,
        "price x qty = the limit is valid"
    );
}

#[test]
fn cl_ord_id_zero_is_always_a_duplicate() {
    let mut e = engine();
    let events = new(&mut e, order(1, 0, Side::Buy, 10, 1));
    assert_eq!(
        events,
        rejected(RejectCode::DuplicateId, reason::DUPLICATE_ID)
    );
    let events = replace(&mut e, 1, 0, 0, 10, 1);
    assert_eq!(
        events,
        rejected(RejectCode::DuplicateId, reason::DUPLICATE_ID)
    );
}

#[test]
fn the_mark_rises_even_when_the_order_is_then_refused_for_balance() {
    let mut e = engine();
    let too_big = order(1, 10, Side::Buy, CASH, 2);
    let events = new(&mut e, too_big);
    assert_eq!(
        events,
        rejected(RejectCode::InsufficientBalance, reason::INSUFFICIENT_CASH)
    );
    assert_eq!(e.mark(1), Some(10));
    assert_eq!(
        code_of(&new(&mut e, order(1, 10, Side::Buy, 1, 1))),
        Some(RejectCode::DuplicateId)
    );
    assert_eq!(
        code_of(&new(&mut e, order(1, 9, Side::Buy, 1, 1))),
        Some(RejectCode::DuplicateId)
    );
    assert_eq!(code_of(&new(&mut e, order(1, 11, Side::Buy, 1, 1))), None);
    assert_eq!(e.mark(2), Some(0), "marks are per account");
}

#[test]
fn a_sell_needs_free_units_and_a_replace_counts_its_own_lock_as_free() {
    let mut e = engine();
    let events = new(&mut e, order(1, 1, Side::Sell, 10, UNITS as u64 + 1));
    assert_eq!(
        events,
        rejected(RejectCode::InsufficientBalance, reason::INSUFFICIENT_UNITS)
    );
    assert_eq!(
        code_of(&new(&mut e, order(1, 2, Side::Sell, 10, UNITS as u64))),
        None
    );
    // The whole inventory is locked by order 2; its replace may still use it.
    assert_eq!(code_of(&replace(&mut e, 1, 3, 2, 11, UNITS as u64)), None);
    let events = replace(&mut e, 1, 4, 3, 11, UNITS as u64 + 1);
    assert_eq!(
        events,
        rejected(RejectCode::InsufficientBalance, reason::INSUFFICIENT_UNITS)
    );
    assert_eq!(
        balance(&e, 1, 1),
        (UNITS, UNITS),
        "the refused replace changed nothing"
    );
}

#[test]
fn fills_go_best_price_first_then_oldest_first_at_the_resting_price() {
    let mut e = engine();
    new(&mut e, order(1, 1, Side::Sell, 102, 5)); // order 1
    new(&mut e, order(2, 1, Side::Sell, 101, 5)); // order 2
    new(&mut e, order(3, 1, Side::Sell, 101, 5)); // order 3
    let events = new(&mut e, order(1, 2, Side::Buy, 103, 12)); // order 4
    let fill =
        |account, order_id, cl_ord_id, exec_id, price, qty, leaves, liquidity| Event::Executed {
            account,
            order_id,
            cl_ord_id,
            exec_id,
            price,
            qty,
            leaves,
            liquidity,
        };
    use Liquidity::{Maker, Taker};
    assert_eq!(
        events[1..],
        [
            fill(2, 2, 1, 1, 101, 5, 0, Maker),
            fill(1, 4, 2, 1, 101, 5, 7, Taker),
            fill(3, 3, 1, 2, 101, 5, 0, Maker),
            fill(1, 4, 2, 2, 101, 5, 2, Taker),
            fill(1, 1, 1, 3, 102, 2, 3, Maker),
            fill(1, 4, 2, 3, 102, 2, 0, Taker),
        ]
    );
    // Account 1 bought 12 for 5*101*2 + 2*102 = 1214 and sold itself 2 at 102.
    assert_eq!(
        balance(&e, 1, 0),
        (CASH - 1_214 + 204, 0),
        "the buy's lock is gone"
    );
    assert_eq!(
        balance(&e, 1, 1),
        (UNITS + 12 - 2, 3),
        "3 units still offered"
    );
    assert_eq!(balance(&e, 2, 0), (CASH + 505, 0));
    assert_eq!(balance(&e, 2, 1), (UNITS - 5, 0));
    assert_eq!(e.next_exec_id(), 4);
}

#[test]
fn a_buy_filled_below_its_price_releases_the_difference() {
    let mut e = engine();
    new(&mut e, order(2, 1, Side::Sell, 90, 4));
    new(&mut e, order(1, 1, Side::Buy, 100, 10));
    // 4 filled at 90: paid 360; 6 rest at 100, locking 600.
    assert_eq!(balance(&e, 1, 0), (CASH - 360, 600));
}

#[test]
fn an_ioc_cancels_its_rest_and_releases_its_lock() {
    let mut e = engine();
    new(&mut e, order(2, 1, Side::Sell, 50, 3));
    let ioc = NewOrder {
        tif: Tif::Ioc,
        ..order(1, 1, Side::Buy, 60, 10)
    };
    let events = new(&mut e, ioc);
    assert_eq!(
        events.len(),
        4,
        "accepted, maker, taker, rest canceled: {events:?}"
    );
    assert_eq!(
        events[3],
        Event::Canceled {
            account: 1,
            order_id: 2,
            cl_ord_id: 1,
            canceled_qty: 7,
            reason: CancelReason::IocRest
        }
    );
    assert_eq!(balance(&e, 1, 0), (CASH - 150, 0));
    assert_eq!(e.open_orders(), 0);
    let filled = NewOrder {
        tif: Tif::Ioc,
        ..order(1, 2, Side::Sell, 1, 1)
    };
    assert_eq!(
        new(&mut e, filled).len(),
        2,
        "an IOC with nothing to match: accepted, canceled"
    );
}

#[test]
fn a_cancel_releases_the_lock_and_the_name() {
    let mut e = engine();
    new(&mut e, order(1, 7, Side::Buy, 10, 3));
    let events = cancel(&mut e, 1, 7);
    let expect = Event::Canceled {
        account: 1,
        order_id: 1,
        cl_ord_id: 7,
        canceled_qty: 3,
        reason: CancelReason::Requested,
    };
    assert_eq!(events, vec![expect]);
    assert_eq!(balance(&e, 1, 0), (CASH, 0));
    assert_eq!(
        cancel(&mut e, 1, 7),
        rejected(RejectCode::UnknownOrder, reason::UNKNOWN_ORDER)
    );
    assert_eq!(
        code_of(&cancel(&mut e, 9, 7)),
        Some(RejectCode::UnknownOrder),
        "unknown account"
    );
    assert_eq!(
        levels(&mut e, 1),
        vec![Event::Book {
            instrument: 1,
            bids: 0,
            asks: 0
        }]
    );
}

#[test]
fn an_order_is_named_by_its_last_replace_and_only_within_its_account() {
    let mut e = engine();
    new(&mut e, order(1, 1, Side::Buy, 10, 3));
    assert_eq!(
        code_of(&cancel(&mut e, 2, 1)),
        Some(RejectCode::UnknownOrder)
    );
    replace(&mut e, 1, 2, 1, 11, 3);
    assert_eq!(
        code_of(&cancel(&mut e, 1, 1)),
        Some(RejectCode::UnknownOrder),
        "the old name"
    );
    let events = replace(&mut e, 1, 3, 1, 11, 3);
    assert_eq!(
        events,
        rejected(RejectCode::UnknownOrder, reason::UNKNOWN_ORDER)
    );
    assert_eq!(
        e.mark(1),
        Some(3),
        "the unknown-order replace still raised the mark"
    );
    assert_eq!(code_of(&cancel(&mut e, 1, 2)), None);
}

#[test]
fn a_replace_keeps_priority_only_at_the_same_price_and_no_more_quantity() {
    let mut e = engine();
    new(&mut e, order(1, 1, Side::Sell, 100, 5)); // order 1, first in line
    new(&mut e, order(2, 1, Side::Sell, 100, 5)); // order 2
    replace(&mut e, 1, 2, 1, 100, 4); // smaller: keeps its place
    let events = new(&mut e, order(3, 1, Side::Buy, 100, 1));
    assert!(
        matches!(
            events[1],
            Event::Executed {
                order_id: 1,
                leaves: 3,
                ..
            }
        ),
        "{events:?}"
    );
    replace(&mut e, 1, 3, 2, 100, 5); // larger: to the back
    let events = new(&mut e, order(3, 2, Side::Buy, 100, 1));
    assert!(
        matches!(events[1], Event::Executed { order_id: 2, .. }),
        "{events:?}"
    );
    let sells = levels(&mut e, 1);
    assert_eq!(
        sells[1],
        Event::Level {
            price: 100,
            qty: 9,
            orders: 2
        }
    );
}

#[test]
fn a_replace_that_crosses_trades_at_once_after_its_answer() {
    let mut e = engine();
    new(&mut e, order(2, 1, Side::Sell, 105, 2)); // order 1
    new(&mut e, order(1, 1, Side::Buy, 100, 5)); // order 2
    let events = replace(&mut e, 1, 2, 1, 106, 5);
    assert_eq!(
        events[0],
        Event::Replaced {
            account: 1,
            order_id: 2,
            cl_ord_id: 2,
            price: 106,
            qty: 5
        }
    );
    assert!(matches!(
        events[1],
        Event::Executed {
            order_id: 1,
            price: 105,
            qty: 2,
            ..
        }
    ));
    assert!(matches!(
        events[2],
        Event::Executed {
            order_id: 2,
            cl_ord_id: 2,
            leaves: 3,
            ..
        }
    ));
    // 2 bought at 105 (210 paid); 3 rest at 106 locking 318.
    assert_eq!(balance(&e, 1, 0), (CASH - 210, 318));
}

#[test]
fn order_and_exec_ids_are_exchange_wide_and_count_only_accepted_orders() {
    let mut e = engine();
    new(&mut e, order(1, 1, Side::Buy, 0, 1)); // invalid: no id
    new(&mut e, order(2, 1, Side::Sell, 10, 1));
    let events = new(
        &mut e,
        NewOrder {
            instrument: 2,
            ..order(3, 1, Side::Sell, 10, 1)
        },
    );
    assert!(matches!(events[0], Event::Accepted { order_id: 2, .. }));
    assert_eq!((e.next_order_id(), e.next_exec_id()), (3, 1));
}

#[test]
fn a_full_pool_or_level_table_is_a_clear_reject_and_changes_nothing_but_the_mark() {
    let mut e = engine();
    for (i, price) in (1..=4).enumerate() {
        assert_eq!(
            code_of(&new(&mut e, order(1, i as u64 + 1, Side::Buy, price, 1))),
            None
        );
    }
    let events = new(&mut e, order(1, 5, Side::Buy, 5, 1));
    assert_eq!(events, rejected(RejectCode::BookFull, reason::LEVELS_FULL));
    assert_eq!(
        code_of(&new(&mut e, order(1, 6, Side::Buy, 4, 1))),
        None,
        "an existing level"
    );
    assert_eq!(
        code_of(&replace(&mut e, 1, 7, 6, 9, 1)),
        Some(RejectCode::BookFull)
    );
    for id in 8..=10 {
        assert_eq!(code_of(&new(&mut e, order(1, id, Side::Sell, 50, 1))), None);
    }
    let events = new(&mut e, order(1, 11, Side::Sell, 50, 1));
    assert_eq!(
        events,
        rejected(RejectCode::BookFull, reason::ORDER_POOL_FULL)
    );
    let ioc = NewOrder {
        tif: Tif::Ioc,
        ..order(2, 1, Side::Sell, 1, 1)
    };
    assert_eq!(
        code_of(&new(&mut e, ioc)),
        None,
        "an IOC never needs a slot"
    );
    assert_eq!(e.open_orders(), 7, "the IOC took one of the 8 resting buys");
    assert_eq!(e.mark(1), Some(11));
}

#[test]
fn a_book_query_lists_bids_then_asks_best_first_up_to_the_depth() {
    let mut e = engine();
    for (i, (side, price)) in [
        (Side::Buy, 10),
        (Side::Buy, 12),
        (Side::Buy, 11),
        (Side::Sell, 15),
        (Side::Sell, 14),
    ]
    .into_iter()
    .enumerate()
    {
        new(&mut e, order(1, i as u64 + 1, side, price, 2));
    }
    new(&mut e, order(2, 1, Side::Buy, 12, 1));
    let events = run(
        &mut e,
        Command::BookQuery(BookQuery {
            instrument: 1,
            depth: 2,
        }),
    );
    let level = |price, qty, orders| Event::Level { price, qty, orders };
    assert_eq!(
        events,
        vec![
            Event::Book {
                instrument: 1,
                bids: 2,
                asks: 2
            },
            level(12, 3, 2),
            level(11, 2, 1),
            level(14, 2, 1),
            level(15, 2, 1),
        ]
    );
    let unknown = run(
        &mut e,
        Command::BookQuery(BookQuery {
            instrument: 3,
            depth: 2,
        }),
    );
    assert_eq!(
        unknown,
        rejected(RejectCode::InvalidOrder, reason::UNKNOWN_INSTRUMENT)
    );
}

#[test]
fn a_balance_query_answers_known_cells_and_refuses_the_rest() {
    let mut e = engine();
    let q = |account, asset| Command::BalanceQuery(BalanceQuery { account, asset });
    let events = run(&mut e, q(3, 2));
    assert_eq!(
        events,
        vec![Event::Balance {
            account: 3,
            asset: 2,
            total: UNITS,
            locked: 0
        }]
    );
    assert_eq!(
        run(&mut e, q(4, 0)),
        rejected(RejectCode::InvalidOrder, reason::UNKNOWN_ACCOUNT)
    );
    assert_eq!(
        run(&mut e, q(1, 3)),
        rejected(RejectCode::InvalidOrder, reason::UNKNOWN_ASSET)
    );
}

#[test]
fn the_start_refuses_settings_under_which_a_balance_could_overflow() {
    let cash = Config {
        accounts: 4,
        cash: i64::MAX / 3,
        ..config()
    };
    let err = Engine::new(cash).expect_err("4 x MAX/3 overflows");
    assert!(err.to_string().contains("does not fit in an i64"), "{err}");
    let units = Config {
        accounts: 2,
        units: i64::MAX / 2 + 1,
        ..config()
    };
    assert!(Engine::new(units).is_err());
    assert!(Engine::new(Config {
        accounts: 2,
        cash: i64::MAX / 2,
        ..config()
    })
    .is_ok());
    assert!(Engine::new(Config {
        orders_max: 0,
        ..config()
    })
    .is_err());
}

#[test]
fn must_journal_names_what_the_contract_journals() {
    let mut e = engine();
    new(&mut e, order(1, 5, Side::Buy, 10, 1));
    let cmd = |o| Command::NewOrder(o);
    assert!(
        !e.must_journal(&cmd(order(1, 5, Side::Buy, 10, 1))),
        "a duplicate"
    );
    assert!(
        !e.must_journal(&cmd(order(1, 6, Side::Buy, 0, 1))),
        "an invalid order"
    );
    assert!(
        e.must_journal(&cmd(order(1, 6, Side::Buy, CASH, 2))),
        "refused later, still journaled"
    );
    assert!(
        !e.must_journal(&cmd(order(9, 6, Side::Buy, 1, 1))),
        "an unknown account"
    );
    let r = Replace {
        account: 1,
        cl_ord_id: 6,
        orig_cl_ord_id: 99,
        price: 1,
        qty: 1,
    };
    assert!(
        e.must_journal(&Command::Replace(r)),
        "an unknown order raises the mark"
    );
    let c = Cancel {
        account: 3,
        cl_ord_id: 0,
        orig_cl_ord_id: 1,
    };
    assert!(e.must_journal(&Command::Cancel(c)), "every cancel");
    assert!(!e.must_journal(&Command::BookQuery(BookQuery {
        instrument: 1,
        depth: 1
    })));
}
