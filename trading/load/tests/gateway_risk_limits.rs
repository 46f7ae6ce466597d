//! Each pre-trade check through the gateway's state machine, at, just below
//! and just above its limit (a refusal never reaches the exchange and names
//! its check); the throttle on passed-in time; exposure after a partial
//! fill, a replace and an upstream loss.

mod support;

use fep_core::wire::{RejectMsg, OP_REJECT};
use fep_core::{ErrorCode, Nanos};
use fep_load::client::ClientConfig;
use fep_load::harness::{Harness, HarnessConfig, NodeRef};
use fep_trading::gateway::{GatewayConfig, Routing};
use fep_trading::order::{
    self, BookQuery, NewOrder, OrderMsg, ReplaceOrder, SIDE_BUY, SIDE_SELL, TIF_DAY, TIF_IOC,
};
use fep_trading::risk::{Check, ClientId, Risk, RiskConfig, RiskHandle};

use support::{cancel, connect_with, header, msg, Raw};

const G: NodeRef = NodeRef::Gateway(0);

fn harness(config: &str) -> (Harness, RiskHandle) {
    harness_with(config, GatewayConfig::default())
}

fn harness_with(config: &str, gateway: GatewayConfig) -> (Harness, RiskHandle) {
    let handle = RiskHandle::new(RiskConfig::parse(config).expect("valid"));
    let gateway = GatewayConfig {
        risk: Some(handle.clone()),
        ..gateway
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
        step: Nanos::from_micros(10),
        ..Default::default()
    });
    (h, handle)
}

/// `limit` in force for client `alice` (token "alice", accounts 1–9).
fn alone(limit: &str) -> String {
    format!("{limit}\n[clients.alice]\ntoken = \"alice\"\naccounts = [\"1-9\"]\n")
}

/// Carol's (account 4) IOC buy of `qty` at 50 on instrument 1.
fn carol_buys_ioc(qty: u64) -> Vec<u8> {
    let mut out = Vec::new();
    OrderMsg::NewOrder(NewOrder {
        h: header(1, 0),
        account: 4,
        instrument: 1,
        side: SIDE_BUY,
        tif: TIF_IOC,
        price: 50,
        qty,
    })
    .encode(&mut out);
    out
}

/// Alice's replace `id` of her account 1's order `orig` to `qty` at `price`.
fn alice_replaces(id: u64, orig: u64, price: i64, qty: u64) -> Vec<u8> {
    let mut out = Vec::new();
    OrderMsg::ReplaceOrder(ReplaceOrder {
        h: header(id, 0),
        account: 1,
        orig_cl_ord_id: orig,
        price,
        qty,
    })
    .encode(&mut out);
    out
}

/// A day order of alice's account 1.
fn day(id: u64, instrument: u32, side: u8, price: i64, qty: u64) -> Vec<u8> {
    let mut out = Vec::new();
    OrderMsg::NewOrder(NewOrder {
        h: header(id, 0),
        account: 1,
        instrument,
        side,
        tif: TIF_DAY,
        price,
        qty,
    })
    .encode(&mut out);
    out
}

fn requests_at_exchange(h: &Harness) -> u64 {
    h.exchange().service().stats().requests
}

/// The first answer of what was just sent: `Ok(opcode)`, or the reject's
/// code and reason.
fn answer(r: &mut Raw, h: &Harness) -> Result<u16, (ErrorCode, String)> {
    let frames = r.take(h);
    let first = frames.first().expect("an answer");
    if first.0 == OP_REJECT {
        let reject = RejectMsg::decode(&first.1).expect("a reject");
        return Err((reject.code, reject.reason.to_string()));
    }
    Ok(first.0)
}

/// Sends `frame`: accepted and forwarded, or refused by `check` without
/// reaching the exchange.
fn expect(h: &mut Harness, r: &mut Raw, frame: &[u8], refused_by: Option<Check>) {
    let before = requests_at_exchange(h);
    r.send(h, frame);
    match (answer(r, h), refused_by) {
        (Ok(opcode), None) => {
            assert_eq!(opcode, order::OP_ORDER_ACCEPTED);
            assert_eq!(requests_at_exchange(h), before + 1);
        }
        (Err((code, reason)), Some(check)) => {
            assert_eq!(code, ErrorCode::RiskLimit, "{reason}");
            assert!(reason.starts_with(check.name()), "{reason}");
            assert_eq!(requests_at_exchange(h), before, "refused, yet sent on");
        }
        (got, want) => panic!("expected refusal by {want:?}, got {got:?}"),
    }
}

/// One check: its limit, and three orders just below, at and just above it
/// (each sent after the ones before it, so per-client limits accumulate).
struct Case {
    limit: &'static str,
    check: Check,
    below: Vec<u8>,
    at: Vec<u8>,
    above: Vec<u8>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            limit: "max_qty = 100",
            check: Check::MaxQty,
            below: day(1, 1, SIDE_SELL, 10, 99),
            at: day(2, 1, SIDE_SELL, 10, 100),
            above: day(3, 1, SIDE_SELL, 10, 101),
        },
        Case {
            limit: "max_notional = 1000",
            check: Check::MaxNotional,
            below: day(1, 1, SIDE_SELL, 10, 99),
            at: day(2, 1, SIDE_SELL, 10, 100),
            above: day(3, 1, SIDE_SELL, 10, 101),
        },
        Case {
            // 5% of 1,000: [950, 1050].
            limit: "price_collar_bps = 500\n[reference_prices]\n1 = 1000",
            check: Check::PriceCollar,
            below: day(1, 1, SIDE_SELL, 1049, 1),
            at: day(2, 1, SIDE_SELL, 1050, 1),
            above: day(3, 1, SIDE_SELL, 1051, 1),
        },
        Case {
            limit: "price_collar_ticks = 50\n[reference_prices]\n1 = 1000",
            check: Check::PriceCollar,
            below: day(1, 1, SIDE_BUY, 951, 1),
            at: day(2, 1, SIDE_BUY, 950, 1),
            above: day(3, 1, SIDE_BUY, 949, 1),
        },
        Case {
            limit: "instruments = [\"2-3\"]",
            check: Check::Instrument,
            below: day(1, 2, SIDE_SELL, 10, 1),
            at: day(2, 3, SIDE_SELL, 10, 1),
            above: day(3, 4, SIDE_SELL, 10, 1),
        },
        Case {
            limit: "max_open_orders = 2",
            check: Check::MaxOpenOrders,
            below: day(1, 1, SIDE_SELL, 10, 1),
            at: day(2, 1, SIDE_SELL, 10, 1),
            above: day(3, 1, SIDE_SELL, 10, 1),
        },
        Case {
            limit: "max_open_notional = 1000",
            check: Check::MaxOpenNotional,
            below: day(1, 1, SIDE_SELL, 10, 40),
            at: day(2, 1, SIDE_SELL, 10, 60),
            above: day(3, 1, SIDE_SELL, 1, 1),
        },
    ]
}

#[test]
fn each_check_passes_below_and_at_its_limit_and_refuses_just_above() {
    for case in cases() {
        let (mut h, _) = harness(&alone(case.limit));
        let mut alice = connect_with(&mut h, G, "alice");
        expect(&mut h, &mut alice, &case.below, None);
        expect(&mut h, &mut alice, &case.at, None);
        expect(&mut h, &mut alice, &case.above, Some(case.check));
        let refusals = h.gateway(0).service().stats().risk_refusals;
        assert_eq!(refusals[case.check.index()], 1, "{}", case.limit);
        assert_eq!(refusals.iter().sum::<u64>(), 1, "{}", case.limit);
    }
}

#[test]
fn the_throttle_passes_its_burst_refuses_the_next_and_refills_on_passed_in_time() {
    // One message per 100 ms, a burst of 2.
    let (mut h, _) = harness(&alone("rate_per_s = 10\nburst = 2"));
    let mut alice = connect_with(&mut h, G, "alice");
    expect(&mut h, &mut alice, &day(1, 1, SIDE_SELL, 10, 1), None);
    expect(&mut h, &mut alice, &day(2, 1, SIDE_SELL, 10, 1), None);
    expect(
        &mut h,
        &mut alice,
        &day(3, 1, SIDE_SELL, 10, 1),
        Some(Check::Throttle),
    );
    // Cancels are never throttled.
    alice.send(&mut h, &cancel(4, 1, 1));
    assert_eq!(answer(&mut alice, &h), Ok(order::OP_ORDER_CANCELED));
    // 100 ms later one message's worth is back, and only one.
    h.advance(Nanos::from_millis(100));
    expect(&mut h, &mut alice, &day(5, 1, SIDE_SELL, 10, 1), None);
    expect(
        &mut h,
        &mut alice,
        &day(6, 1, SIDE_SELL, 10, 1),
        Some(Check::Throttle),
    );
    // A long quiet spell refills the burst, never more.
    h.advance(Nanos::from_secs(10));
    expect(&mut h, &mut alice, &day(7, 1, SIDE_SELL, 10, 1), None);
    expect(&mut h, &mut alice, &day(8, 1, SIDE_SELL, 10, 1), None);
    expect(
        &mut h,
        &mut alice,
        &day(9, 1, SIDE_SELL, 10, 1),
        Some(Check::Throttle),
    );
}

const TWO_CLIENTS: &str = "\
[clients.alice]\ntoken = \"alice\"\naccounts = [1]\n\
[clients.carol]\ntoken = \"carol\"\naccounts = [4]\n";

/// The gateway of [`TWO_CLIENTS`] with two workers routing as `routing`.
fn two_workers(routing: Routing) -> (Harness, RiskHandle) {
    let gateway = GatewayConfig {
        workers: 2,
        routing,
        ..GatewayConfig::default()
    };
    harness_with(TWO_CLIENTS, gateway)
}

fn exposure(risk: &mut Risk, client: ClientId) -> (u64, u64) {
    let e = risk.exposure(client);
    (e.open_orders, e.open_notional)
}

/// One gateway worker with `TWO_CLIENTS`' limits, and Alice connected to it
/// with a day sell of 10 at 50 accepted: the harness, the risk view,
/// Alice's client id and her connection.
fn alice_resting_a_sell() -> (Harness, Risk, ClientId, Raw) {
    let (mut h, handle) = harness(TWO_CLIENTS);
    let mut risk = handle.risk();
    let client = risk.client_by_token("alice").unwrap();
    let mut alice = connect_with(&mut h, G, "alice");
    alice.send(&mut h, &day(1, 1, SIDE_SELL, 50, 10));
    assert_eq!(answer(&mut alice, &h), Ok(order::OP_ORDER_ACCEPTED));
    (h, risk, client, alice)
}

#[test]
fn exposure_follows_a_partial_fill_a_replace_and_a_departure() {
    let (mut h, mut risk, client, mut alice) = alice_resting_a_sell();
    assert_eq!(exposure(&mut risk, client), (1, 500));
    // Carol's IOC takes 4 of the 10: 6 stay open.
    let mut carol = connect_with(&mut h, G, "carol");
    carol.send(&mut h, &carol_buys_ioc(4));
    carol.take(&h);
    alice.take(&h);
    assert_eq!(exposure(&mut risk, client), (1, 300));
    // A replace to 8 at 60: the new open notional, the increase reserved
    // while it was in flight settled to it.
    let replace = alice_replaces(2, 1, 60, 8);
    alice.send(&mut h, &replace);
    assert_eq!(answer(&mut alice, &h), Ok(order::OP_ORDER_REPLACED));
    assert_eq!(exposure(&mut risk, client), (1, 480));
    // A replace down gives back the difference.
    let down = alice_replaces(3, 2, 60, 5);
    alice.send(&mut h, &down);
    assert_eq!(answer(&mut alice, &h), Ok(order::OP_ORDER_REPLACED));
    assert_eq!(exposure(&mut risk, client), (1, 300));
    // Leaving cancels it: nothing is left.
    h.close_raw(alice.id);
    h.settle();
    assert_eq!(exposure(&mut risk, client), (0, 0));
}

#[test]
fn a_replace_in_flight_when_the_gateway_drains_is_canceled_and_the_exposure_ends_at_zero() {
    let (mut h, mut risk, client, mut alice) = alice_resting_a_sell();
    assert_eq!(exposure(&mut risk, client), (1, 500));
    // The replace reaches the exchange before the drain's cancel, which
    // names the order's old name in vain; the replace's answer renames the
    // order, and the gateway cancels it under its new name.
    let replace = alice_replaces(2, 1, 60, 8);
    h.send_raw(alice.id, &replace);
    h.run_until(|h| h.gateway(0).service().inflight() > 0);
    h.shutdown(G);
    h.settle();
    assert_eq!(answer(&mut alice, &h), Ok(order::OP_ORDER_REPLACED));
    assert!(h.gateway(0).is_done());
    assert_eq!(exposure(&mut risk, client), (0, 0));
    let mut q = connect_with(&mut h, NodeRef::Exchange, "");
    let mut query = Vec::new();
    OrderMsg::BookQuery(BookQuery {
        h: header(1, 0),
        instrument: 1,
        depth: 10,
    })
    .encode(&mut query);
    q.send(&mut h, &query);
    let frames = q.take(&h);
    let OrderMsg::BookSnapshot(snap) = msg(&frames[0]) else {
        panic!("{frames:?}");
    };
    assert_eq!((snap.bids().count(), snap.asks().count()), (0, 0));
}

#[test]
fn an_order_renamed_from_another_workers_connection_then_filled_settles_without_a_panic() {
    let (mut h, handle) = two_workers(Routing::Local);
    let mut risk = handle.risk();
    let client = risk.client_by_token("alice").unwrap();
    let mut a1 = connect_with(&mut h, NodeRef::Gateway(0), "alice");
    let mut a2 = connect_with(&mut h, NodeRef::Gateway(1), "alice");
    a1.send(&mut h, &day(1, 1, SIDE_SELL, 50, 10));
    assert_eq!(answer(&mut a1, &h), Ok(order::OP_ORDER_ACCEPTED));
    // a2, on the other worker, renames a1's order: worker 1 tracks it now,
    // worker 0 keeps a stale entry until a1 leaves (counted twice
    // meanwhile: cautious).
    let replace = alice_replaces(2, 1, 50, 10);
    a2.send(&mut h, &replace);
    assert_eq!(answer(&mut a2, &h), Ok(order::OP_ORDER_REPLACED));
    assert_eq!(exposure(&mut risk, client), (2, 1000));
    h.close_raw(a1.id);
    h.settle();
    assert_eq!(
        exposure(&mut risk, client),
        (1, 500),
        "the stale entry went"
    );
    // Carol fills it whole: worker 1 closes its record. It panicked "open
    // orders would go negative" when the rename had added no count.
    let mut carol = connect_with(&mut h, NodeRef::Gateway(1), "carol");
    carol.send(&mut h, &carol_buys_ioc(10));
    carol.take(&h);
    assert_eq!(exposure(&mut risk, client), (0, 0));
}

#[test]
fn an_upstream_loss_gives_back_what_its_rejected_requests_reserved_and_keeps_the_open_orders() {
    let (mut h, mut risk, client, mut alice) = alice_resting_a_sell();
    // With the upstream gone, the next order is refused, and what its
    // check reserved goes back; the order the exchange holds still counts.
    h.set_exchange_down(true);
    h.settle();
    let requests = requests_at_exchange(&h);
    alice.send(&mut h, &day(2, 1, SIDE_SELL, 70, 10));
    let err = answer(&mut alice, &h).expect_err("rejected");
    assert_eq!(err.0, ErrorCode::UpstreamUnavailable);
    assert_eq!(requests_at_exchange(&h), requests);
    assert_eq!(exposure(&mut risk, client), (1, 500));
    // Back up: the open order is canceled, and nothing is left.
    h.set_exchange_down(false);
    h.run_until(|h| h.gateway(0).is_ready());
    alice.send(&mut h, &cancel(3, 1, 1));
    assert_eq!(answer(&mut alice, &h), Ok(order::OP_ORDER_CANCELED));
    assert_eq!(exposure(&mut risk, client), (0, 0));
}

/// The asks resting on instrument 1 at the exchange, as (price, qty), by a
/// `BookQuery` through the gateway.
fn asks(h: &mut Harness, r: &mut Raw, id: u64) -> Vec<(i64, u64)> {
    let mut query = Vec::new();
    OrderMsg::BookQuery(BookQuery {
        h: header(id, 0),
        instrument: 1,
        depth: 10,
    })
    .encode(&mut query);
    r.send(h, &query);
    let frames = r.take(h);
    let first = frames.first().expect("an answer");
    let OrderMsg::BookSnapshot(book) = msg(first) else {
        panic!("expected a book snapshot, got opcode {}", first.0);
    };
    book.asks().map(|l| (l.price, l.qty)).collect()
}

/// Sends a second order of alice's (sell 10 at 70) and cuts the upstream
/// once it is forwarded: it reaches the exchange and rests there, but its
/// answer is lost.
fn lose_upstream_with_an_order_in_flight(h: &mut Harness, alice: &mut Raw) {
    let forwarded = h.gateway(0).service().stats().forwarded;
    h.send_raw(alice.id, &day(2, 1, SIDE_SELL, 70, 10));
    h.run_until(|h| h.gateway(0).service().stats().forwarded > forwarded);
    h.set_exchange_down(true);
    h.settle();
    let err = answer(alice, h).expect_err("rejected");
    assert_eq!(err.0, ErrorCode::UpstreamUnavailable, "{}", err.1);
}

fn reconnect(h: &mut Harness) {
    h.set_exchange_down(false);
    h.run_until(|h| h.gateway(0).is_ready());
    h.settle();
}

#[test]
fn an_order_in_flight_at_an_upstream_loss_keeps_its_exposure_until_the_reconnect_cancels_it() {
    let (mut h, mut risk, client, mut alice) = alice_resting_a_sell();
    lose_upstream_with_an_order_in_flight(&mut h, &mut alice);
    // The client was told UPSTREAM_UNAVAILABLE, yet the order may rest at
    // the exchange: its exposure stays counted.
    assert_eq!(exposure(&mut risk, client), (2, 1200), "kept in doubt");
    assert_eq!(h.gateway(0).service().stats().in_doubt, 1);
    // Back up: the gateway cancels it, and its answer releases it.
    reconnect(&mut h);
    let stats = h.gateway(0).service().stats();
    assert_eq!(stats.in_doubt_cancels, 1);
    assert_eq!(exposure(&mut risk, client), (1, 500));
    // It had rested at the exchange, and is gone from its book now; the
    // client's own order stays, and nothing reaches the client of it.
    assert_eq!(asks(&mut h, &mut alice, 3), vec![(50, 10)]);
    // Canceling the other settles to zero and no further.
    alice.send(&mut h, &cancel(4, 1, 1));
    assert_eq!(answer(&mut alice, &h), Ok(order::OP_ORDER_CANCELED));
    assert_eq!(exposure(&mut risk, client), (0, 0));
    assert!(asks(&mut h, &mut alice, 5).is_empty());
}

#[test]
fn an_order_in_doubt_stays_in_doubt_across_a_second_loss_before_its_cancel_is_answered() {
    let (mut h, mut risk, client, mut alice) = alice_resting_a_sell();
    lose_upstream_with_an_order_in_flight(&mut h, &mut alice);
    // Back just long enough to send the cancel, then lost again before
    // its answer: the exchange took it, the gateway cannot know.
    h.set_exchange_down(false);
    h.run_until(|h| h.gateway(0).is_ready());
    assert_eq!(h.gateway(0).service().stats().in_doubt_cancels, 1);
    h.set_exchange_down(true);
    h.settle();
    assert_eq!(exposure(&mut risk, client), (2, 1200), "still in doubt");
    // The next reconnect cancels it again (now unknown there) and releases.
    reconnect(&mut h);
    assert_eq!(h.gateway(0).service().stats().in_doubt_cancels, 2);
    assert_eq!(exposure(&mut risk, client), (1, 500));
    assert_eq!(asks(&mut h, &mut alice, 3), vec![(50, 10)]);
}

#[test]
fn a_cancel_on_disconnect_during_an_outage_is_sent_once_the_upstream_is_back() {
    let (mut h, mut risk, client, alice) = alice_resting_a_sell();
    h.set_exchange_down(true);
    h.settle();
    // Alice leaves while the upstream is down: her order's exposure goes
    // at once (it is going away), its cancel waits.
    h.close_raw(alice.id);
    h.settle();
    assert_eq!(exposure(&mut risk, client), (0, 0));
    assert_eq!(h.gateway(0).service().stats().disconnect_cancels, 0);
    reconnect(&mut h);
    assert_eq!(h.gateway(0).service().stats().in_doubt_cancels, 1);
    let mut carol = connect_with(&mut h, G, "carol");
    assert!(asks(&mut h, &mut carol, 1).is_empty(), "canceled there");
    assert_eq!(exposure(&mut risk, client), (0, 0));
}

#[test]
fn orders_in_doubt_under_handoff_routing_are_kept_and_canceled_by_their_clients_worker() {
    let (mut h, handle) = two_workers(Routing::Handoff);
    let mut risk = handle.risk();
    let client = risk.client_by_token("alice").unwrap();
    // Two connections of alice's on worker 0, one routed through worker
    // 1's upstream; an order of each is in flight when the exchange goes.
    let mut a1 = connect_with(&mut h, G, "alice");
    let a2 = connect_with(&mut h, G, "alice");
    let forwarded = |h: &Harness| {
        h.gateway(0).service().stats().forwarded + h.gateway(1).service().stats().forwarded
    };
    h.send_raw(a1.id, &day(1, 1, SIDE_SELL, 50, 10));
    h.send_raw(a2.id, &day(2, 1, SIDE_SELL, 70, 10));
    h.run_until(|h| forwarded(h) >= 2);
    assert!(
        h.gateway(1).service().stats().forwarded >= 1,
        "one went through worker 1"
    );
    h.set_exchange_down(true);
    h.settle();
    assert!(
        h.handoff_count.get(&(1, 0)).is_some_and(|&n| n > 0),
        "worker 1's reject crossed back"
    );
    assert_eq!(h.gateway(0).service().stats().in_doubt, 2);
    assert_eq!(exposure(&mut risk, client), (2, 1200), "both kept");
    h.set_exchange_down(false);
    h.run_until(|h| h.gateway(0).is_ready() && h.gateway(1).is_ready());
    h.settle();
    assert_eq!(h.gateway(0).service().stats().in_doubt_cancels, 2);
    assert_eq!(exposure(&mut risk, client), (0, 0));
    a1.take(&h);
    assert!(asks(&mut h, &mut a1, 3).is_empty(), "both canceled there");
}

#[test]
fn a_replace_in_doubt_that_reached_the_exchange_is_canceled_and_its_order_settled() {
    let (mut h, mut risk, client, mut alice) = alice_resting_a_sell();
    // A replace to 10 at 60 reaches the exchange (which renames the order
    // 2) and the link dies before its answer.
    let replace = alice_replaces(2, 1, 60, 10);
    let forwarded = h.gateway(0).service().stats().forwarded;
    h.send_raw(alice.id, &replace);
    h.run_until(|h| h.gateway(0).service().stats().forwarded > forwarded);
    h.set_exchange_down(true);
    h.settle();
    let err = answer(&mut alice, &h).expect_err("rejected");
    assert_eq!(err.0, ErrorCode::UpstreamUnavailable);
    // The order as last seen and the replace's whole new notional count.
    assert_eq!(exposure(&mut risk, client), (1, 500 + 600));
    // The gateway's cancel by the replace's name finds the order: both
    // what the replace reserved and what the order held come off.
    reconnect(&mut h);
    assert_eq!(exposure(&mut risk, client), (0, 0));
    assert!(asks(&mut h, &mut alice, 3).is_empty());
}

#[test]
fn past_the_in_doubt_bound_an_order_in_flight_at_a_loss_is_released_and_counted() {
    let bounded = GatewayConfig {
        in_doubt_max: 1,
        ..GatewayConfig::default()
    };
    let (mut h, handle) = harness_with(TWO_CLIENTS, bounded);
    let mut risk = handle.risk();
    let client = risk.client_by_token("alice").unwrap();
    let mut alice = connect_with(&mut h, G, "alice");
    // Two orders in flight at the loss, room for one in doubt.
    let forwarded = h.gateway(0).service().stats().forwarded;
    h.send_raw(alice.id, &day(1, 1, SIDE_SELL, 50, 10));
    h.send_raw(alice.id, &day(2, 1, SIDE_SELL, 70, 10));
    h.run_until(|h| h.gateway(0).service().stats().forwarded >= forwarded + 2);
    assert_eq!(exposure(&mut risk, client), (2, 1200));
    h.set_exchange_down(true);
    h.settle();
    let frames = alice.take(&h);
    assert_eq!(frames.len(), 2, "both rejected");
    for f in &frames {
        let reject = RejectMsg::decode(&f.1).expect("a reject");
        assert_eq!(reject.code, ErrorCode::UpstreamUnavailable);
    }
    let stats = h.gateway(0).service().stats();
    assert_eq!((stats.in_doubt, stats.in_doubt_overflows), (1, 1));
    // The first is kept in doubt, the second released as before.
    assert_eq!(exposure(&mut risk, client), (1, 500));
    reconnect(&mut h);
    assert_eq!(exposure(&mut risk, client), (0, 0));
    // Only the one in doubt was canceled: the other still rests there.
    assert_eq!(asks(&mut h, &mut alice, 3), vec![(70, 10)]);
}

#[test]
fn exposure_stays_right_when_orders_and_fills_cross_workers_under_handoff_routing() {
    let (mut h, handle) = two_workers(Routing::Handoff);
    let mut risk = handle.risk();
    let client = risk.client_by_token("alice").unwrap();
    // Two connections of alice's on worker 0: one of them is routed
    // through worker 1's upstream.
    let mut a1 = connect_with(&mut h, G, "alice");
    let mut a2 = connect_with(&mut h, G, "alice");
    a1.send(&mut h, &day(1, 1, SIDE_SELL, 50, 10));
    assert_eq!(answer(&mut a1, &h), Ok(order::OP_ORDER_ACCEPTED));
    a2.send(&mut h, &day(2, 1, SIDE_SELL, 60, 10));
    assert_eq!(answer(&mut a2, &h), Ok(order::OP_ORDER_ACCEPTED));
    assert!(
        h.handoff_count.get(&(0, 1)).is_some_and(|&n| n > 0)
            && h.handoff_count.get(&(1, 0)).is_some_and(|&n| n > 0),
        "requests and answers crossed: {:?}",
        h.handoff_count
    );
    assert_eq!(exposure(&mut risk, client), (2, 1100));
    // Carol, on worker 1, takes 4 of the first: the fill reaches a1 on
    // whichever worker it is read.
    let mut carol = connect_with(&mut h, NodeRef::Gateway(1), "carol");
    carol.send(&mut h, &carol_buys_ioc(4));
    carol.take(&h);
    assert_eq!(exposure(&mut risk, client), (2, 1100 - 200));
    // a2 leaves: its order is canceled and its exposure goes with it.
    h.close_raw(a2.id);
    h.settle();
    assert_eq!(exposure(&mut risk, client), (1, 300));
    a1.take(&h);
    a1.send(&mut h, &cancel(3, 1, 1));
    assert_eq!(answer(&mut a1, &h), Ok(order::OP_ORDER_CANCELED));
    assert_eq!(exposure(&mut risk, client), (0, 0));
}
