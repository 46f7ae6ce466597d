//! The risk checks do not allocate per call: a counting global allocator
//! (allocation-counter) watches a warmed-up worker's `Risk` through every
//! kind of check, refusal and exposure update, reasons rendered included.

use fep_core::Nanos;
use fep_trading::risk::{
    OrderTerms, ReasonBuf, ReplaceTerms, Resting, RiskConfig, RiskHandle, Side,
};

const EVERY_LIMIT: &str = "\
max_qty = 1000\nmax_notional = 10_000_000\nprice_collar_bps = 500\n\
instruments = [1, \"3-9\"]\nmax_open_orders = 1_000_000\n\
max_open_notional = 1_000_000_000_000\nrate_per_s = 1_000_000_000\nburst = 1_000_000\n\
[reference_prices]\n1 = 10_000\n\
[clients.alice]\ntoken = \"ta\"\naccounts = [1, \"10-19\"]\n\
[clients.bob]\ntoken = \"tb\"\naccounts = [\"20-29\"]\n";

fn allocations_in(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

#[test]
fn the_counter_sees_an_allocation() {
    let n = allocations_in(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert!(n >= 1);
}

#[test]
fn checks_refusals_and_exposure_updates_do_not_allocate() {
    let handle = RiskHandle::new(RiskConfig::parse(EVERY_LIMIT).unwrap());
    let mut risk = handle.risk();
    let alice = risk.client_by_token("ta").unwrap();
    let good = OrderTerms {
        account: 12,
        instrument: 1,
        side: Some(Side::Buy),
        price: 10_100,
        qty: 10,
    };
    let bad = [
        OrderTerms {
            account: 20,
            ..good
        },
        OrderTerms {
            instrument: 2,
            ..good
        },
        OrderTerms { qty: 1001, ..good },
        OrderTerms {
            price: 20_000,
            ..good
        },
    ];
    let replace = ReplaceTerms {
        account: 12,
        price: 10_050,
        qty: 12,
        current: Some(Resting {
            price: 10_100,
            open: 10,
        }),
        instrument: Some(1),
        side: Some(Side::Buy),
    };
    let mut buf = ReasonBuf::new();
    let (mut passed, mut refused, mut reason_bytes) = (0u64, 0u64, 0usize);
    let n = allocations_in(|| {
        for i in 0..10_000u64 {
            let now = Nanos(1_000_000 + i * 1_000);
            let r = risk.check_new(now, alice, &good).unwrap();
            let up = risk.check_replace(now, alice, &replace).unwrap();
            risk.on_replaced(alice, up, 101_000, 120_600);
            risk.on_reduce(alice, 120_600, true);
            assert_eq!(r.orders, 1);
            passed += 1;
            for b in &bad {
                if let Err(e) = risk.check_new(now, alice, b) {
                    reason_bytes += e.reason(&mut buf).len();
                    refused += 1;
                }
            }
            assert!(risk.check_cancel(alice, 12).is_ok());
            assert!(risk.check_balance_query(alice, 20).is_err());
            risk.on_trade(1, 10_000 + (i % 7) as i64);
            assert!(risk.client_by_token("tb").is_some());
        }
    });
    assert_eq!(passed, 10_000);
    assert_eq!(refused, 40_000, "every bad order was refused");
    assert!(reason_bytes > 40_000);
    assert_eq!(risk.exposure(alice).open_orders, 0);
    assert_eq!(n, 0, "allocations in 10,000 rounds of checks");
}
