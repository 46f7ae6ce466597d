//! The risk module against a model, over generated sequences of requests
//! and exchange answers: every decision is the model's, exposure always
//! equals the model's sum, and no limit is ever passed. Also: no
//! configuration text, however broken, makes the parser panic.

use fep_core::Nanos;
use fep_trading::risk::{
    notional, Check, Exposure, OrderTerms, ReplaceTerms, Reservation, Resting, RiskConfig,
    RiskHandle, Side,
};
use proptest::prelude::*;

const MAX_QTY: u64 = 50;
const MAX_NOTIONAL: u64 = 2_000;
const MAX_OPEN_ORDERS: u64 = 8;
const MAX_OPEN_NOTIONAL: u64 = 5_000;

const CONFIG: &str = "max_qty = 50\nmax_notional = 2000\nmax_open_orders = 8\n\
                      max_open_notional = 5000\n\
                      [clients.a]\ntoken = \"ta\"\naccounts = [1]\n";

#[derive(Clone, Debug)]
enum Op {
    /// A new order; the exchange will answer it at a later `Answer`.
    New { price: i64, qty: u64 },
    /// The exchange answers the oldest pending new order.
    Answer { accept: bool },
    /// A fill of `pick`'s open order, for up to `qty`.
    Fill { pick: usize, qty: u64 },
    /// A cancel of `pick`'s open order.
    Cancel { pick: usize },
    /// A replace of `pick`'s open order, answered at once.
    Replace {
        pick: usize,
        price: i64,
        qty: u64,
        accept: bool,
    },
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (1i64..120, 1u64..70).prop_map(|(price, qty)| Op::New { price, qty }),
        2 => any::<bool>().prop_map(|accept| Op::Answer { accept }),
        2 => (any::<usize>(), 1u64..30).prop_map(|(pick, qty)| Op::Fill { pick, qty }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => (any::<usize>(), 1i64..120, 1u64..70, any::<bool>())
            .prop_map(|(pick, price, qty, accept)| Op::Replace { pick, price, qty, accept }),
    ];
    prop::collection::vec(op, 1..200)
}

/// What the model knows: orders waiting for an answer, and open orders.
#[derive(Default)]
struct Model {
    pending: Vec<(Reservation, i64, u64)>,
    open: Vec<(i64, u64)>,
}

impl Model {
    fn exposure(&self) -> Exposure {
        let pending: u64 = self.pending.iter().map(|(r, _, _)| r.notional).sum();
        let open: u64 = self.open.iter().map(|&(p, q)| notional(p, q) as u64).sum();
        Exposure {
            open_orders: (self.pending.len() + self.open.len()) as u64,
            open_notional: pending + open,
        }
    }
}

proptest! {
    #[test]
    fn exposure_matches_the_model_and_never_passes_a_limit(ops in ops()) {
        let handle = RiskHandle::new(RiskConfig::parse(CONFIG).unwrap());
        let mut risk = handle.risk();
        let a = risk.client_by_token("ta").unwrap();
        let mut model = Model::default();
        let now = Nanos(1);
        for op in ops {
            match op {
                Op::New { price, qty } => {
                    let n = notional(price, qty) as u64;
                    let before = model.exposure();
                    let expect = if qty > MAX_QTY {
                        Some(Check::MaxQty)
                    } else if n > MAX_NOTIONAL {
                        Some(Check::MaxNotional)
                    } else if before.open_orders + 1 > MAX_OPEN_ORDERS {
                        Some(Check::MaxOpenOrders)
                    } else if before.open_notional + n > MAX_OPEN_NOTIONAL {
                        Some(Check::MaxOpenNotional)
                    } else {
                        None
                    };
                    let order = OrderTerms { account: 1, instrument: 1, side: Some(Side::Buy), price, qty };
                    match risk.check_new(now, a, &order) {
                        Ok(r) => {
                            prop_assert_eq!(expect, None);
                            model.pending.push((r, price, qty));
                        }
                        Err(e) => prop_assert_eq!(expect, Some(e.check())),
                    }
                }
                Op::Answer { accept } => {
                    if model.pending.is_empty() {
                        continue;
                    }
                    let (r, price, qty) = model.pending.remove(0);
                    if accept {
                        model.open.push((price, qty));
                    } else {
                        risk.release(a, r);
                    }
                }
                Op::Fill { pick, qty } => {
                    if model.open.is_empty() {
                        continue;
                    }
                    let i = pick % model.open.len();
                    let (price, open) = model.open[i];
                    let qty = qty.min(open);
                    let leaves = open - qty;
                    risk.on_fill(a, price, qty, leaves);
                    if leaves == 0 {
                        model.open.remove(i);
                    } else {
                        model.open[i].1 = leaves;
                    }
                }
                Op::Cancel { pick } => {
                    if model.open.is_empty() {
                        continue;
                    }
                    let (price, open) = model.open.remove(pick % model.open.len());
                    risk.on_canceled(a, price, open);
                }
                Op::Replace { pick, price, qty, accept } => {
                    if model.open.is_empty() {
                        continue;
                    }
                    let i = pick % model.open.len();
                    let (old_price, open) = model.open[i];
                    let held = notional(old_price, open) as u64;
                    let n = notional(price, qty) as u64;
                    let increase = n.saturating_sub(held);
                    let expect = if qty > MAX_QTY {
                        Some(Check::MaxQty)
                    } else if n > MAX_NOTIONAL {
                        Some(Check::MaxNotional)
                    } else if model.exposure().open_notional + increase > MAX_OPEN_NOTIONAL {
                        Some(Check::MaxOpenNotional)
                    } else {
                        None
                    };
                    let current = Resting { price: old_price, open };
                    let replace = ReplaceTerms {
                        account: 1, price, qty, current: Some(current), instrument: None, side: None,
                    };
                    match risk.check_replace(now, a, &replace) {
                        Ok(r) => {
                            prop_assert_eq!(expect, None);
                            prop_assert_eq!(r.notional, increase);
                            if accept {
                                risk.on_replaced(a, r, held, n);
                                model.open[i] = (price, qty);
                            } else {
                                risk.release(a, r);
                            }
                        }
                        Err(e) => prop_assert_eq!(expect, Some(e.check())),
                    }
                }
            }
            let seen = risk.exposure(a);
            prop_assert_eq!(seen, model.exposure());
            prop_assert!(seen.open_orders <= MAX_OPEN_ORDERS);
            prop_assert!(seen.open_notional <= MAX_OPEN_NOTIONAL);
        }
    }

    #[test]
    fn no_configuration_text_makes_the_parser_panic(text in "\\PC{0,400}") {
        let _ = RiskConfig::parse(&text);
    }

    #[test]
    fn no_mangled_example_makes_the_parser_panic(cut in 0usize..2000, junk in "[ =\\[\\]\"a-z0-9_.,\\n-]{0,12}") {
        let example = include_str!("../../docs/risk.example.toml");
        let at = cut % example.len();
        let at = (0..=at).rev().find(|&i| example.is_char_boundary(i)).unwrap_or(0);
        let text = format!("{}{}{}", &example[..at], junk, &example[at..]);
        if let Err(e) = RiskConfig::parse(&text) {
            prop_assert!(!e.lines().is_empty());
            for line in e.lines() {
                prop_assert!(!line.contains('\n'));
            }
        }
    }
}
