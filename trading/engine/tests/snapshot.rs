//! Snapshots: bytes that are not a consistent state are refused with a
//! typed error, never a panic, and a restore under other settings is
//! refused rather than mixed.

use fep_engine::{Config, Engine, Event, NewOrder, RestoreError, Side, Tif};
use proptest::prelude::*;

fn config() -> Config {
    Config {
        instruments: 2,
        accounts: 4,
        cash: 10_000,
        units: 100,
        orders_max: 16,
        levels_max: 8,
    }
}

/// An engine with resting orders on both sides of both books, some fills
/// and raised marks.
fn busy_engine() -> Engine {
    let mut engine = Engine::new(config()).unwrap();
    let mut events: Vec<Event> = Vec::new();
    for (id, (account, instrument, side, price, qty)) in [
        (1, 1, Side::Buy, 10, 5),
        (2, 1, Side::Buy, 10, 3),
        (3, 1, Side::Sell, 12, 4),
        (4, 2, Side::Sell, 7, 6),
        (1, 2, Side::Buy, 8, 2),
        (2, 1, Side::Sell, 9, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let o = NewOrder {
            account,
            cl_ord_id: id as u64 + 1,
            instrument,
            side,
            tif: Tif::Day,
            price,
            qty,
        };
        engine.new_order(&o, &mut events);
    }
    engine
}

fn snapshot(engine: &Engine) -> Vec<u8> {
    let mut bytes = Vec::new();
    engine.snapshot(&mut bytes);
    bytes
}

#[test]
fn a_snapshot_restores_to_the_same_bytes_and_ids() {
    let engine = busy_engine();
    let bytes = snapshot(&engine);
    let restored = Engine::restore(config(), &bytes).unwrap();
    assert_eq!(snapshot(&restored), bytes);
    assert_eq!(restored.next_order_id(), engine.next_order_id());
    assert_eq!(restored.next_exec_id(), engine.next_exec_id());
    assert_eq!(restored.next_exec_id(), 3, "the test book did trade");
    assert_eq!(restored.balance(1, 0), engine.balance(1, 0));
    assert_eq!(restored.mark(4), Some(4));
}

#[test]
fn a_restore_under_other_settings_is_refused() {
    let bytes = snapshot(&busy_engine());
    let other = Config {
        cash: 10_001,
        ..config()
    };
    match Engine::restore(other, &bytes) {
        Err(RestoreError::ConfigMismatch { recorded }) => assert_eq!(recorded, config()),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn truncated_and_overlong_snapshots_are_refused() {
    let bytes = snapshot(&busy_engine());
    for len in [0, 7, 8, 30, bytes.len() - 1] {
        let err = Engine::restore(config(), &bytes[..len]).expect_err("too short");
        assert!(
            matches!(
                err,
                RestoreError::Truncated { .. } | RestoreError::NotASnapshot
            ),
            "{len}: {err}"
        );
    }
    let mut long = bytes.clone();
    long.push(0);
    let err = Engine::restore(config(), &long).expect_err("too long");
    assert_eq!(
        err,
        RestoreError::TrailingBytes {
            offset: bytes.len()
        }
    );
}

#[test]
fn a_snapshot_whose_locks_disagree_with_its_orders_is_refused() {
    let bytes = snapshot(&busy_engine());
    // The first balance cell (account 1's cash) follows the magic, the
    // settings, two ids and four marks; its lock is the cell's second i64.
    let locked_at = 8 + fep_engine::CONFIG_ENCODED_LEN + 16 + 4 * 8 + 8;
    let mut bad = bytes.clone();
    bad[locked_at + 7] ^= 1;
    let err = Engine::restore(config(), &bad).expect_err("a wrong lock");
    assert!(err.to_string().contains("locks differ"), "{err}");
}

#[test]
fn a_snapshot_that_creates_cash_is_refused() {
    let bytes = snapshot(&busy_engine());
    let total_at = 8 + fep_engine::CONFIG_ENCODED_LEN + 16 + 4 * 8;
    let mut bad = bytes.clone();
    bad[total_at + 6] ^= 1;
    let err = Engine::restore(config(), &bad).expect_err("cash from nowhere");
    assert!(err.to_string().contains("do not sum"), "{err}");
}

proptest! {
    #[test]
    fn corrupted_snapshots_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6)) {
        let mut bytes = snapshot(&busy_engine());
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        // Either a typed error, or (a flip that keeps every invariant, such
        // as in a mark) an engine that snapshots to exactly these bytes.
        if let Ok(engine) = Engine::restore(config(), &bytes) {
            prop_assert_eq!(snapshot(&engine), bytes);
        }
    }
}
