//! The risk checks' behaviour: each check at, just below and just above its
//! limit; the throttle on passed-in time; kill switches; entitlements by
//! every request; exposure through open/reduce sequences; two workers
//! sharing one client's limits; reload good and bad.

use fep_core::Nanos;
use fep_trading::risk::{
    notional, Check, ClientId, Exposure, OrderTerms, ReasonBuf, Refusal, ReplaceTerms, Reservation,
    Resting, Risk, RiskConfig, RiskHandle, Side,
};

const T0: Nanos = Nanos(1_000_000_000);

/// Alice owns accounts 1–9, Bob 10–19; the limits are round numbers so that
/// "at", "below" and "above" read plainly.
fn config(extra_top: &str, extra_alice: &str) -> String {
    format!(
        "{extra_top}\n\
         [reference_prices]\n1 = 1000\n\
         [clients.alice]\ntoken = \"ta\"\naccounts = [\"1-9\"]\n{extra_alice}\n\
         [clients.bob]\ntoken = \"tb\"\naccounts = [\"10-19\"]\n"
    )
}

fn handle(text: &str) -> RiskHandle {
    RiskHandle::new(RiskConfig::parse(text).unwrap_or_else(|e| panic!("{e}")))
}

fn worker(text: &str) -> (Risk, ClientId, ClientId) {
    let mut risk = handle(text).risk();
    let alice = risk.client_by_token("ta").unwrap();
    let bob = risk.client_by_token("tb").unwrap();
    (risk, alice, bob)
}

fn buy(account: u32, instrument: u32, price: i64, qty: u64) -> OrderTerms {
    OrderTerms {
        account,
        instrument,
        side: Some(Side::Buy),
        price,
        qty,
    }
}

/// The check that refused, or `None` when the order passed.
fn refused(r: Result<Reservation, Refusal>) -> Option<Check> {
    r.err().map(|e| e.check())
}

fn reason(r: Refusal) -> String {
    r.reason(&mut ReasonBuf::new()).to_owned()
}

#[test]
fn a_worker_can_take_its_risk_view_to_its_thread() {
    fn send<T: Send>() {}
    fn share<T: Send + Sync>() {}
    send::<Risk>();
    share::<RiskHandle>();
}

#[test]
fn tokens_identify_clients_and_a_wrong_token_identifies_none() {
    let (mut risk, alice, bob) = worker(&config("", ""));
    assert_ne!(alice, bob);
    assert_eq!(risk.client_name(alice), Some("alice"));
    assert_eq!(risk.client_by_token("tA"), None);
    assert_eq!(risk.client_by_token(""), None);
    assert_eq!(risk.client_by_token("ta "), None);
}

#[test]
fn the_open_configuration_admits_every_account_with_no_limits() {
    let mut any = RiskHandle::new(RiskConfig::open(None)).risk();
    let c = any.client_by_token("whatever").unwrap();
    assert_eq!(any.client_by_token(""), Some(c));
    let big = buy(u32::MAX, 7, i64::MAX, 1);
    assert!(any.check_new(T0, c, &big).is_ok());
    // Account 0 is no exchange's, and that is the exchange's to say.
    assert!(any.check_new(T0, c, &buy(0, 7, 100, 1)).is_ok());
    assert!(any.check_cancel(c, 0).is_ok());
    assert!(any.check_balance_query(c, 0).is_ok());
    let mut one = RiskHandle::new(RiskConfig::open(Some("s".into()))).risk();
    assert!(one.client_by_token("s").is_some());
    assert_eq!(one.client_by_token("x"), None);
}

#[test]
fn max_qty_passes_at_and_below_and_refuses_above() {
    let (mut risk, alice, _) = worker(&config("", "max_qty = 1000"));
    assert!(risk.check_new(T0, alice, &buy(1, 1, 1000, 999)).is_ok());
    assert!(risk.check_new(T0, alice, &buy(1, 1, 1000, 1000)).is_ok());
    let e = risk
        .check_new(T0, alice, &buy(1, 1, 1000, 1001))
        .unwrap_err();
    assert_eq!(reason(e), "max_qty: 1001 > 1000");
}

#[test]
fn max_notional_passes_at_and_below_and_refuses_above() {
    let (mut risk, alice, _) = worker(&config("", "max_notional = 100000"));
    assert!(risk.check_new(T0, alice, &buy(1, 2, 1000, 99)).is_ok());
    assert!(risk.check_new(T0, alice, &buy(1, 2, 1000, 100)).is_ok());
    assert!(risk.check_new(T0, alice, &buy(1, 2, 99_999, 1)).is_ok());
    let e = risk
        .check_new(T0, alice, &buy(1, 2, 100_001, 1))
        .unwrap_err();
    assert_eq!(reason(e), "max_notional: 100001 > 100000");
    // A negative price counts by its size.
    let e = risk
        .check_new(T0, alice, &buy(1, 2, -100_001, 1))
        .unwrap_err();
    assert_eq!(e.check(), Check::MaxNotional);
}

#[test]
fn a_notional_beyond_the_counters_is_refused_even_without_a_limit() {
    let (mut risk, alice, _) = worker(&config("", ""));
    let e = risk
        .check_new(T0, alice, &buy(1, 2, i64::MAX, u64::MAX))
        .unwrap_err();
    assert_eq!(e.check(), Check::MaxNotional);
    assert_eq!(risk.exposure(alice), Exposure::default());
}

#[test]
fn the_collar_in_bps_passes_at_its_edges_and_refuses_past_them() {
    // Reference 1000 (configured), 500 bps: 950 ..= 1050.
    let (mut risk, alice, _) = worker(&config("", "price_collar_bps = 500"));
    for p in [950, 951, 1000, 1049, 1050] {
        assert!(risk.check_new(T0, alice, &buy(1, 1, p, 1)).is_ok(), "{p}");
    }
    for p in [949, 1051] {
        let e = risk.check_new(T0, alice, &buy(1, 1, p, 1)).unwrap_err();
        assert_eq!(e.check(), Check::PriceCollar, "{p}");
    }
    let mut sell = buy(1, 1, 1051, 1);
    sell.side = Some(Side::Sell);
    let e = risk.check_new(T0, alice, &sell).unwrap_err();
    assert_eq!(
        reason(e),
        "price_collar: sell 1051 outside 950..=1050 (reference 1000)"
    );
}

#[test]
fn the_collar_in_ticks_follows_the_last_trade_and_is_off_without_a_reference() {
    let (mut risk, alice, _) = worker(&config("", "price_collar_ticks = 10"));
    assert!(risk.check_new(T0, alice, &buy(1, 1, 1010, 1)).is_ok());
    assert!(risk.check_new(T0, alice, &buy(1, 1, 1011, 1)).is_err());
    risk.on_trade(1, 2000);
    assert_eq!(risk.reference(1), Some(2000));
    assert!(risk.check_new(T0, alice, &buy(1, 1, 1010, 1)).is_err());
    assert!(risk.check_new(T0, alice, &buy(1, 1, 1990, 1)).is_ok());
    assert!(risk.check_new(T0, alice, &buy(1, 1, 1989, 1)).is_err());
    // Instrument 2 has no reference: no collar.
    assert_eq!(risk.reference(2), None);
    assert!(risk.check_new(T0, alice, &buy(1, 2, 1, 1)).is_ok());
    // A non-positive trade price is no reference.
    risk.on_trade(2, 0);
    assert_eq!(risk.reference(2), None);
}

#[test]
fn only_listed_instruments_pass() {
    let (mut risk, alice, bob) = worker(&config("", "instruments = [1, \"3-4\"]"));
    for i in [1, 3, 4] {
        assert!(risk.check_new(T0, alice, &buy(1, i, 5, 1)).is_ok(), "{i}");
    }
    for i in [0, 2, 5] {
        let e = risk.check_new(T0, alice, &buy(1, i, 5, 1)).unwrap_err();
        assert_eq!(reason(e), format!("instrument: {i} not allowed"));
    }
    assert!(
        risk.check_new(T0, bob, &buy(10, 2, 5, 1)).is_ok(),
        "bob has no list"
    );
}

#[test]
fn max_open_orders_counts_every_open_order_and_frees_one_when_it_closes() {
    let (mut risk, alice, _) = worker(&config("", "max_open_orders = 3"));
    for _ in 0..3 {
        let _ = risk.check_new(T0, alice, &buy(1, 2, 10, 1)).unwrap();
    }
    let e = risk.check_new(T0, alice, &buy(1, 2, 10, 1)).unwrap_err();
    assert_eq!(reason(e), "max_open_orders: 4 > 3");
    risk.on_reduce(alice, 10, true);
    assert!(risk.check_new(T0, alice, &buy(1, 2, 10, 1)).is_ok());
}

#[test]
fn max_open_notional_passes_at_the_limit_and_a_refusal_rolls_back_the_order_count() {
    let (mut risk, alice, _) = worker(&config("", "max_open_notional = 1000"));
    let _ = risk.check_new(T0, alice, &buy(1, 2, 100, 9)).unwrap();
    let _ = risk.check_new(T0, alice, &buy(1, 2, 100, 1)).unwrap();
    let before = risk.exposure(alice);
    assert_eq!(
        before,
        Exposure {
            open_orders: 2,
            open_notional: 1000
        }
    );
    let e = risk.check_new(T0, alice, &buy(1, 2, 1, 1)).unwrap_err();
    assert_eq!(reason(e), "max_open_notional: 1001 > 1000");
    assert_eq!(risk.exposure(alice), before, "nothing stays reserved");
}

#[test]
fn the_throttle_allows_a_burst_then_refills_on_passed_in_time() {
    // 10/s: one message per 100 ms; a burst of 3.
    let (mut risk, alice, bob) = worker(&config("", "rate_per_s = 10\nburst = 3"));
    let o = buy(1, 2, 10, 1);
    for _ in 0..3 {
        assert!(risk.check_new(T0, alice, &o).is_ok());
    }
    let e = risk.check_new(T0, alice, &o).unwrap_err();
    assert_eq!(reason(e), "throttle: over 10/s, burst 3");
    let t = |ms: u64| T0 + Nanos::from_millis(ms);
    assert_eq!(
        refused(risk.check_new(t(99), alice, &o)),
        Some(Check::Throttle)
    );
    assert!(risk.check_new(t(100), alice, &o).is_ok(), "one refilled");
    assert_eq!(
        refused(risk.check_new(t(100), alice, &o)),
        Some(Check::Throttle)
    );
    // A long pause refills the burst, no more.
    for _ in 0..3 {
        assert!(risk.check_new(t(10_000), alice, &o).is_ok());
    }
    assert_eq!(
        refused(risk.check_new(t(10_000), alice, &o)),
        Some(Check::Throttle)
    );
    // Bob has no throttle, and cancels are never throttled.
    assert!(risk.check_new(t(10_000), bob, &buy(10, 2, 10, 1)).is_ok());
    assert!(risk.check_cancel(alice, 1).is_ok());
}

#[test]
fn a_client_kill_switch_refuses_orders_and_replaces_but_not_cancels() {
    let (mut risk, alice, bob) = worker(&config("", "kill_switch = true"));
    let e = risk.check_new(T0, alice, &buy(1, 2, 10, 1)).unwrap_err();
    assert_eq!(reason(e), "kill_switch: client");
    let replace = ReplaceTerms {
        account: 1,
        price: 10,
        qty: 1,
        current: None,
        instrument: None,
        side: None,
    };
    assert_eq!(
        refused(risk.check_replace(T0, alice, &replace)),
        Some(Check::KillSwitch)
    );
    assert!(risk.check_cancel(alice, 1).is_ok());
    assert!(risk.check_balance_query(alice, 1).is_ok());
    assert!(
        risk.check_new(T0, bob, &buy(10, 2, 10, 1)).is_ok(),
        "bob trades"
    );
}

#[test]
fn the_global_kill_switch_refuses_every_client_but_cancels_pass() {
    let (mut risk, alice, bob) = worker(&config("kill_switch = true", ""));
    let e = risk.check_new(T0, bob, &buy(10, 2, 10, 1)).unwrap_err();
    assert_eq!(reason(e), "kill_switch: global");
    assert_eq!(
        refused(risk.check_new(T0, alice, &buy(1, 2, 10, 1))),
        Some(Check::KillSwitch)
    );
    assert!(risk.check_cancel(alice, 1).is_ok());
    assert!(risk.check_cancel(bob, 10).is_ok());
}

#[test]
fn checks_run_in_the_documented_order() {
    let (mut risk, alice, _) = worker(&config(
        "kill_switch = true",
        "max_qty = 1\ninstruments = [1]\nprice_collar_ticks = 1",
    ));
    // Everything is wrong: the account is named first.
    let bad = buy(10, 2, 5000, 2);
    assert_eq!(
        refused(risk.check_new(T0, alice, &bad)),
        Some(Check::Account)
    );
    let bad = buy(1, 2, 5000, 2);
    assert_eq!(
        refused(risk.check_new(T0, alice, &bad)),
        Some(Check::KillSwitch)
    );
    let (mut risk, alice, _) = worker(&config(
        "",
        "max_qty = 1\nmax_notional = 10\ninstruments = [1]\nprice_collar_ticks = 1",
    ));
    assert_eq!(
        refused(risk.check_new(T0, alice, &buy(1, 2, 5000, 2))),
        Some(Check::Instrument)
    );
    assert_eq!(
        refused(risk.check_new(T0, alice, &buy(1, 1, 5000, 2))),
        Some(Check::MaxQty)
    );
    assert_eq!(
        refused(risk.check_new(T0, alice, &buy(1, 1, 5000, 1))),
        Some(Check::MaxNotional)
    );
    assert_eq!(
        refused(risk.check_new(T0, alice, &buy(1, 1, 9, 1))),
        Some(Check::PriceCollar)
    );
}

#[test]
fn a_client_never_reaches_another_clients_accounts_by_any_request() {
    let (mut risk, alice, bob) = worker(&config("", ""));
    for account in [0, 10, 19, 20, u32::MAX] {
        let e = risk
            .check_new(T0, alice, &buy(account, 1, 1000, 1))
            .unwrap_err();
        assert_eq!(reason(e), format!("account: {account} not entitled"));
        let replace = ReplaceTerms {
            account,
            price: 1000,
            qty: 1,
            current: None,
            instrument: None,
            side: None,
        };
        assert_eq!(
            refused(risk.check_replace(T0, alice, &replace)),
            Some(Check::Account)
        );
        assert_eq!(
            risk.check_cancel(alice, account).unwrap_err().check(),
            Check::Account
        );
        assert_eq!(
            risk.check_balance_query(alice, account)
                .unwrap_err()
                .check(),
            Check::Account
        );
    }
    for account in [1, 9] {
        assert_eq!(
            risk.check_cancel(bob, account).unwrap_err().check(),
            Check::Account
        );
        assert!(risk.check_cancel(alice, account).is_ok());
        assert!(risk.check_balance_query(alice, account).is_ok());
    }
    assert_eq!(
        risk.exposure(alice),
        Exposure::default(),
        "refusals reserve nothing"
    );
}

#[test]
fn exposure_follows_fills_and_cancels_to_zero() {
    let (mut risk, alice, _) = worker(&config("", ""));
    let order = buy(1, 2, 100, 10);
    let r = risk.check_new(T0, alice, &order).unwrap();
    assert_eq!(
        r,
        Reservation {
            orders: 1,
            notional: 1000
        }
    );
    // Two partial fills (the second at a better price: exposure is settled
    // at the order's own limit), then the rest canceled.
    risk.on_fill(alice, 100, 3, 7);
    risk.on_fill(alice, 100, 2, 5);
    assert_eq!(
        risk.exposure(alice),
        Exposure {
            open_orders: 1,
            open_notional: 500
        }
    );
    risk.on_canceled(alice, 100, 5);
    assert_eq!(risk.exposure(alice), Exposure::default());
    // Filled in full: closed by its last fill.
    let _ = risk.check_new(T0, alice, &order).unwrap();
    risk.on_fill(alice, 100, 10, 0);
    assert_eq!(risk.exposure(alice), Exposure::default());
    // Refused by the exchange: released.
    let r = risk.check_new(T0, alice, &order).unwrap();
    risk.release(alice, r);
    assert_eq!(risk.exposure(alice), Exposure::default());
    // An order the gateway learns of without a check.
    risk.on_open(alice, 70);
    assert_eq!(
        risk.exposure(alice),
        Exposure {
            open_orders: 1,
            open_notional: 70
        }
    );
}

#[test]
fn a_replace_reserves_only_its_increase_and_settles_to_the_new_notional() {
    let (mut risk, alice, _) = worker(&config("", "max_open_notional = 2000"));
    let _ = risk.check_new(T0, alice, &buy(1, 2, 100, 10)).unwrap(); // 1000 open
    let resting = Resting {
        price: 100,
        open: 10,
    };
    let current = Some(resting);
    // Up to 1500: reserves 500; 2600 would pass the credit limit.
    let up = ReplaceTerms {
        account: 1,
        price: 100,
        qty: 15,
        current,
        instrument: Some(2),
        side: Some(Side::Buy),
    };
    let too_far = ReplaceTerms { qty: 26, ..up };
    let e = risk.check_replace(T0, alice, &too_far).unwrap_err();
    assert_eq!(reason(e), "max_open_notional: 2600 > 2000");
    let r = risk.check_replace(T0, alice, &up).unwrap();
    assert_eq!(
        r,
        Reservation {
            orders: 0,
            notional: 500
        }
    );
    assert_eq!(risk.exposure(alice).open_notional, 1500);
    risk.on_replaced(alice, r, 1000, 1500);
    assert_eq!(
        risk.exposure(alice),
        Exposure {
            open_orders: 1,
            open_notional: 1500
        }
    );
    // Down to 300 at a new price: reserves nothing, settles down.
    let down = ReplaceTerms {
        account: 1,
        price: 30,
        qty: 10,
        current: Some(Resting {
            open: 15,
            ..resting
        }),
        instrument: Some(2),
        side: Some(Side::Buy),
    };
    let r = risk.check_replace(T0, alice, &down).unwrap();
    assert_eq!(r, Reservation::default());
    risk.on_replaced(alice, r, 1500, 300);
    assert_eq!(
        risk.exposure(alice),
        Exposure {
            open_orders: 1,
            open_notional: 300
        }
    );
    // A replace the exchange refuses gives its reservation back.
    let now_resting = Some(Resting {
        price: 30,
        open: 10,
    });
    let again = ReplaceTerms {
        qty: 20,
        current: now_resting,
        ..down
    };
    let r = risk.check_replace(T0, alice, &again).unwrap();
    assert_eq!(r.notional, 300, "600 - 300 held");
    risk.release(alice, r);
    assert_eq!(risk.exposure(alice).open_notional, 300);
}

#[test]
fn a_replace_is_collared_and_sized_like_a_new_order() {
    let (mut risk, alice, _) = worker(&config("", "price_collar_ticks = 10\nmax_qty = 5"));
    let current = Some(Resting {
        price: 1000,
        open: 1,
    });
    let r = ReplaceTerms {
        account: 1,
        price: 1011,
        qty: 1,
        current,
        instrument: Some(1),
        side: Some(Side::Sell),
    };
    assert_eq!(
        refused(risk.check_replace(T0, alice, &r)),
        Some(Check::PriceCollar)
    );
    let r = ReplaceTerms {
        price: 1010,
        qty: 6,
        ..r
    };
    assert_eq!(
        refused(risk.check_replace(T0, alice, &r)),
        Some(Check::MaxQty)
    );
    let r = ReplaceTerms { qty: 5, ..r };
    assert!(risk.check_replace(T0, alice, &r).is_ok());
}

#[test]
fn a_replace_of_an_order_whose_instrument_is_unknown_skips_instrument_and_collar() {
    let (mut risk, alice, _) = worker(&config("", "instruments = [2]\nprice_collar_ticks = 1"));
    let blind = ReplaceTerms {
        account: 1,
        price: 5000,
        qty: 1,
        current: None,
        instrument: None,
        side: None,
    };
    let r = risk.check_replace(T0, alice, &blind).unwrap();
    assert_eq!(
        r.notional, 5000,
        "the whole new notional, with no current order"
    );
    let known = ReplaceTerms {
        instrument: Some(1),
        ..blind
    };
    assert_eq!(
        refused(risk.check_replace(T0, alice, &known)),
        Some(Check::Instrument)
    );
    let listed = ReplaceTerms {
        instrument: Some(2),
        ..blind
    };
    assert!(
        risk.check_replace(T0, alice, &listed).is_ok(),
        "no reference for 2"
    );
    let collared = ReplaceTerms {
        instrument: Some(1),
        ..blind
    };
    let (mut risk, alice, _) = worker(&config("", "price_collar_ticks = 1"));
    let e = risk.check_replace(T0, alice, &collared).unwrap_err();
    assert_eq!(
        reason(e),
        "price_collar: 5000 outside 999..=1001 (reference 1000)",
        "no side known, none shown"
    );
}

#[test]
#[should_panic(expected = "would go negative")]
fn reducing_more_than_is_open_is_a_broken_invariant() {
    let (mut risk, alice, _) = worker(&config("", ""));
    let _ = risk.check_new(T0, alice, &buy(1, 2, 10, 1)).unwrap();
    risk.on_reduce(alice, 11, true);
}

#[test]
fn two_workers_share_one_clients_limits() {
    let h = handle(&config(
        "",
        "max_open_orders = 2\nrate_per_s = 1\nburst = 4",
    ));
    let (mut w1, mut w2) = (h.risk(), h.risk());
    let alice = w1.client_by_token("ta").unwrap();
    assert_eq!(w2.client_by_token("ta"), Some(alice));
    let o = buy(1, 2, 10, 1);
    let _ = w1.check_new(T0, alice, &o).unwrap();
    let _ = w2.check_new(T0, alice, &o).unwrap();
    assert_eq!(
        refused(w1.check_new(T0, alice, &o)),
        Some(Check::MaxOpenOrders)
    );
    assert_eq!(w2.exposure(alice).open_orders, 2);
    // A fill seen on worker 1 frees room on worker 2.
    w1.on_reduce(alice, 10, true);
    assert!(w2.check_new(T0, alice, &o).is_ok());
    // The bucket is shared too: four messages so far (the refused one
    // counts), so it is empty for both.
    assert_eq!(refused(w1.check_new(T0, alice, &o)), Some(Check::Throttle));
    assert_eq!(refused(w2.check_new(T0, alice, &o)), Some(Check::Throttle));
    // And the last trade seen by one is the other's reference.
    w1.on_trade(5, 777);
    assert_eq!(w2.reference(5), Some(777));
}

#[test]
fn racing_workers_never_pass_the_open_order_limit_together() {
    let h = handle(&config(
        "",
        "max_open_orders = 1000\nmax_open_notional = 1500",
    ));
    let alice = h.risk().client_by_token("ta").unwrap();
    let passed: u64 = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let mut w = h.risk();
                s.spawn(move || {
                    (0..5_000)
                        .filter(|_| w.check_new(T0, alice, &buy(1, 2, 1, 1)).is_ok())
                        .count() as u64
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).sum()
    });
    assert_eq!(passed, 1000);
    assert_eq!(
        h.risk().exposure(alice),
        Exposure {
            open_orders: 1000,
            open_notional: 1000
        }
    );
}

#[test]
fn a_good_reload_changes_limits_for_every_worker_and_keeps_exposure() {
    let h = handle(&config("", "max_qty = 10"));
    let mut w = h.risk();
    let alice = w.client_by_token("ta").unwrap();
    let _ = w.check_new(T0, alice, &buy(1, 2, 10, 10)).unwrap();
    assert_eq!(
        refused(w.check_new(T0, alice, &buy(1, 2, 10, 11))),
        Some(Check::MaxQty)
    );
    // Alice gets a new token and a higher limit; bob is gone; carol is new.
    let next = "max_qty = 20\n[clients.carol]\ntoken = \"tc\"\naccounts = [10]\n\
                [clients.alice]\ntoken = \"ta2\"\naccounts = [\"1-9\"]\n";
    h.reload(RiskConfig::parse(next).unwrap()).unwrap();
    assert!(
        w.check_new(T0, alice, &buy(1, 2, 10, 11)).is_ok(),
        "new limit"
    );
    assert_eq!(
        w.exposure(alice),
        Exposure {
            open_orders: 2,
            open_notional: 210
        }
    );
    assert_eq!(w.client_by_token("ta"), None);
    assert_eq!(w.client_by_token("ta2"), Some(alice), "same slot by name");
    let carol = w.client_by_token("tc").unwrap();
    assert_ne!(carol, alice);
    assert_eq!(w.exposure(carol), Exposure::default());
    assert!(h.describe().contains("(alice, carol)"), "{}", h.describe());
}

#[test]
fn a_client_removed_by_reload_is_refused_but_its_exposure_settles() {
    let h = handle(&config("", ""));
    let mut w = h.risk();
    let bob = w.client_by_token("tb").unwrap();
    let _ = w.check_new(T0, bob, &buy(10, 2, 10, 1)).unwrap();
    h.reload(RiskConfig::parse("[clients.alice]\ntoken = \"ta\"\naccounts = [1]\n").unwrap())
        .unwrap();
    assert_eq!(
        refused(w.check_new(T0, bob, &buy(10, 2, 10, 1))),
        Some(Check::Account)
    );
    assert_eq!(w.check_cancel(bob, 10).unwrap_err().check(), Check::Account);
    w.on_reduce(bob, 10, true);
    assert_eq!(w.exposure(bob), Exposure::default());
    assert_eq!(w.client_name(bob), None);
}

#[test]
fn a_bad_reload_file_leaves_the_limits_unchanged_and_says_why() {
    let h = handle(&config("", "max_qty = 10"));
    let mut w = h.risk();
    let alice = w.client_by_token("ta").unwrap();
    // What a gateway does on SIGHUP: parse, and reload only a good file.
    let bad = "max_qty = 0\n[clients.alice]\ntoken = \"ta\"\naccounts = [1]\nmax_qyt = 5\n";
    let lines = match RiskConfig::parse(bad) {
        Ok(c) => {
            h.reload(c).unwrap();
            Vec::new()
        }
        Err(e) => e.lines().to_vec(),
    };
    assert_eq!(
        lines,
        [
            "max_qty: must be at least 1",
            "clients.alice.max_qyt: unknown key (did you mean max_qty?)"
        ]
    );
    assert!(w.check_new(T0, alice, &buy(1, 2, 10, 10)).is_ok());
    assert_eq!(
        refused(w.check_new(T0, alice, &buy(1, 2, 10, 11))),
        Some(Check::MaxQty)
    );
    assert_eq!(
        h.config(),
        RiskConfig::parse(&config("", "max_qty = 10")).unwrap()
    );
}

#[test]
fn reload_text_keeps_the_old_limits_on_a_bad_file_and_applies_a_good_one() {
    let h = handle(&config("", "max_qty = 10"));
    let mut w = h.risk();
    let alice = w.client_by_token("ta").unwrap();
    let e = h.reload_text("max_qty = \"ten\"\n").unwrap_err();
    assert_eq!(
        e.lines(),
        [
            "max_qty: invalid type: string \"ten\", expected u64",
            "clients: no client configured (add a [clients.NAME] section)",
        ]
    );
    assert_eq!(
        refused(w.check_new(T0, alice, &buy(1, 2, 1, 11))),
        Some(Check::MaxQty)
    );
    let line = h.reload_text(&config("", "max_qty = 20")).unwrap();
    assert!(line.starts_with("risk: 2 client(s)"), "{line}");
    assert!(w.check_new(T0, alice, &buy(1, 2, 1, 11)).is_ok());
}

#[test]
fn throttle_state_carries_over_a_reload() {
    let h = handle(&config("", "rate_per_s = 1\nburst = 1"));
    let mut w = h.risk();
    let alice = w.client_by_token("ta").unwrap();
    let o = buy(1, 2, 10, 1);
    assert!(w.check_new(T0, alice, &o).is_ok());
    h.reload(RiskConfig::parse(&config("", "rate_per_s = 1\nburst = 1\nmax_qty = 5")).unwrap())
        .unwrap();
    assert_eq!(
        refused(w.check_new(T0, alice, &o)),
        Some(Check::Throttle),
        "bucket kept"
    );
    assert!(w.check_new(T0 + Nanos::from_secs(1), alice, &o).is_ok());
}

#[test]
fn notional_is_exact_for_every_price_and_quantity() {
    assert_eq!(notional(-3, 4), 12);
    assert_eq!(notional(0, u64::MAX), 0);
    assert_eq!(
        notional(i64::MIN, u64::MAX),
        (1u128 << 63) * u128::from(u64::MAX)
    );
}
