//! Entitlements and pre-trade checks in the gateway, through the in-memory
//! wiring: refused requests never reach the exchange, and exposure follows
//! the exchange's answers (fills, cancels, cancel on disconnect).

mod support;

use fep_core::wire::{ErrorMsg, RejectMsg, OP_ERROR, OP_REJECT};
use fep_core::ErrorCode;
use fep_load::client::ClientConfig;
use fep_load::harness::{Harness, HarnessConfig, NodeRef};
use fep_trading::gateway::GatewayConfig;
use fep_trading::order::{self, SIDE_BUY, SIDE_SELL, TIF_DAY};
use fep_trading::risk::{Check, RiskConfig, RiskHandle};

use support::{cancel, connect_with, new_order, Raw};

const G: NodeRef = NodeRef::Gateway(0);

const CONFIG: &str = r#"
max_qty = 100
max_open_orders = 2
[clients.alice]
token = "alice"
accounts = [1, 2]
[clients.bob]
token = "bob"
accounts = [3]
kill_switch = true
[clients.carol]
token = "carol"
accounts = [4]
"#;

fn harness() -> (Harness, RiskHandle) {
    let handle = RiskHandle::new(RiskConfig::parse(CONFIG).expect("valid"));
    let gateway = GatewayConfig {
        risk: Some(handle.clone()),
        ..GatewayConfig::default()
    };
    let client = ClientConfig {
        connections: 1,
        warmup: 0,
        count: 1,
        ..Default::default()
    };
    let h = Harness::new(HarnessConfig {
        gateway: Some(gateway),
        client,
        ..Default::default()
    });
    (h, handle)
}

fn reject(frames: &[(u16, Vec<u8>)]) -> (ErrorCode, String) {
    assert_eq!(frames[0].0, OP_REJECT, "{frames:?}");
    let r = RejectMsg::decode(&frames[0].1).unwrap();
    (r.code, r.reason.to_string())
}

fn exchange_requests(h: &Harness) -> u64 {
    h.exchange().service().stats().requests
}

#[test]
fn an_unknown_token_is_refused_at_the_hand_shake() {
    let (mut h, _) = harness();
    let mut r = Raw::from_id(h.open_raw(G));
    let mut hello = Vec::new();
    fep_trading::msg::RoleHelloReq::new(fep_trading::Role::Client, "nobody").encode(&mut hello);
    r.send(&mut h, &hello);
    let frames = r.take(&h);
    assert_eq!(frames[0].0, OP_ERROR);
    assert_eq!(
        ErrorMsg::decode(&frames[0].1).unwrap().code,
        ErrorCode::RoleRefused
    );
    assert!(h.raw(r.id).closed);
}

#[test]
fn a_client_never_reaches_another_clients_account_by_any_request() {
    let (mut h, _) = harness();
    let mut alice = connect_with(&mut h, G, "alice");
    let before = exchange_requests(&h);
    let mut requests = vec![
        new_order(1, 0, 3, SIDE_BUY, TIF_DAY, 10, 1),
        cancel(2, 3, 1),
    ];
    let mut replace = Vec::new();
    order::OrderMsg::ReplaceOrder(order::ReplaceOrder {
        h: support::header(3, 0),
        account: 3,
        orig_cl_ord_id: 1,
        price: 11,
        qty: 1,
    })
    .encode(&mut replace);
    requests.push(replace);
    let mut query = Vec::new();
    order::OrderMsg::BalanceQuery(order::BalanceQuery {
        h: support::header(4, 0),
        account: 3,
        asset: 0,
    })
    .encode(&mut query);
    requests.push(query);
    for r in &requests {
        alice.send(&mut h, r);
        let (code, reason) = reject(&alice.take(&h));
        assert_eq!(code, ErrorCode::RiskLimit);
        assert!(reason.starts_with("account"), "{reason}");
    }
    assert_eq!(exchange_requests(&h), before, "none reached the exchange");
    let stats = h.gateway(0).service().stats();
    assert_eq!(stats.risk_refusals[Check::Account.index()], 4);
}

#[test]
fn an_order_at_its_limit_passes_and_one_above_is_refused_before_the_exchange() {
    let (mut h, _) = harness();
    let mut alice = connect_with(&mut h, G, "alice");
    alice.send(&mut h, &new_order(1, 0, 1, SIDE_BUY, TIF_DAY, 10, 100));
    assert_eq!(alice.take(&h)[0].0, order::OP_ORDER_ACCEPTED);
    let before = exchange_requests(&h);
    alice.send(&mut h, &new_order(2, 0, 1, SIDE_BUY, TIF_DAY, 10, 101));
    let (code, reason) = reject(&alice.take(&h));
    assert_eq!(code, ErrorCode::RiskLimit);
    assert_eq!(reason, "max_qty: 101 > 100");
    assert_eq!(exchange_requests(&h), before);
}

#[test]
fn a_kill_switched_client_cannot_trade_but_can_cancel() {
    let (mut h, _) = harness();
    let mut bob = connect_with(&mut h, G, "bob");
    bob.send(&mut h, &new_order(1, 0, 3, SIDE_SELL, TIF_DAY, 10, 1));
    let (code, reason) = reject(&bob.take(&h));
    assert_eq!(code, ErrorCode::RiskLimit);
    assert!(reason.starts_with("kill_switch"), "{reason}");
    bob.send(&mut h, &cancel(2, 3, 1));
    // Passed the gateway: the exchange answers it knows no such order.
    let (code, _) = reject(&bob.take(&h));
    assert_eq!(code, ErrorCode::UnknownOrder);
}

#[test]
fn open_order_exposure_follows_fills_cancels_and_a_departure() {
    let (mut h, handle) = harness();
    let mut alice = connect_with(&mut h, G, "alice");
    let mut risk = handle.risk();
    let client = risk.client_by_token("alice").unwrap();
    alice.send(&mut h, &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 50, 10));
    alice.send(&mut h, &new_order(2, 0, 1, SIDE_SELL, TIF_DAY, 60, 10));
    alice.take(&h);
    assert_eq!(risk.exposure(client).open_orders, 2);
    assert_eq!(risk.exposure(client).open_notional, 1100);
    // At max_open_orders = 2 a third is refused.
    alice.send(&mut h, &new_order(3, 0, 1, SIDE_SELL, TIF_DAY, 70, 1));
    let (_, reason) = reject(&alice.take(&h));
    assert!(reason.starts_with("max_open_orders"), "{reason}");
    // Carol's IOC buy fills 4 of the first order.
    let mut carol = connect_with(&mut h, G, "carol");
    carol.send(&mut h, &new_order(1, 0, 4, SIDE_BUY, 2, 50, 4));
    assert_eq!(carol.take(&h).len(), 2, "accepted, then filled whole");
    alice.take(&h);
    let carols = risk.client_by_token("carol").unwrap();
    assert_eq!(
        risk.exposure(carols).open_orders,
        0,
        "an IOC leaves nothing open"
    );
    assert_eq!(risk.exposure(client).open_orders, 2);
    assert_eq!(risk.exposure(client).open_notional, 1100 - 200);
    // A cancel of the second gives back all it held.
    alice.send(&mut h, &cancel(5, 1, 2));
    alice.take(&h);
    assert_eq!(risk.exposure(client).open_orders, 1);
    assert_eq!(risk.exposure(client).open_notional, 300);
    // Leaving cancels the rest, and the exposure with it.
    h.close_raw(alice.id);
    h.settle();
    assert_eq!(risk.exposure(client).open_orders, 0);
    assert_eq!(risk.exposure(client).open_notional, 0);
}
