//! Order entry through the gateway: stamps and routes like pings, first
//! answers closing the in-flight entry, later messages routed by `route`,
//! across workers, and cancel on disconnect.

mod support;

use fep_core::wire::{RejectMsg, OP_REJECT};
use fep_core::{ErrorCode, Nanos};
use fep_load::client::ClientConfig;
use fep_load::harness::{Harness, HarnessConfig, NodeRef};
use fep_trading::gateway::{GatewayConfig, RouteTag, Routing};
use fep_trading::order::{self, BookQuery, OrderMsg, SIDE_BUY, SIDE_SELL, TIF_DAY, TIF_IOC};

use support::{cancel, connect, header, msg, new_order};

fn harness(gateway: GatewayConfig) -> Harness {
    let client = ClientConfig {
        connections: 1,
        warmup: 0,
        count: 1,
        ..Default::default()
    };
    Harness::new(HarnessConfig {
        gateway: Some(gateway),
        client,
        ..Default::default()
    })
}

fn book(h: &mut Harness, via: NodeRef) -> Vec<(i64, u64)> {
    let mut raw = connect(h, via);
    let mut q = Vec::new();
    OrderMsg::BookQuery(BookQuery {
        h: header(1, 0),
        instrument: 1,
        depth: 10,
    })
    .encode(&mut q);
    raw.send(h, &q);
    let frames = raw.take(h);
    let OrderMsg::BookSnapshot(snap) = msg(&frames[0]) else {
        panic!("{frames:?}");
    };
    snap.bids()
        .chain(snap.asks())
        .map(|l| (l.price, l.qty))
        .collect()
}

#[test]
fn an_order_through_the_gateway_is_stamped_and_routed_like_a_ping() {
    let mut h = harness(GatewayConfig::default());
    let g = NodeRef::Gateway(0);
    let (mut maker, mut taker) = (connect(&mut h, g), connect(&mut h, g));
    maker.send(&mut h, &new_order(3, 0, 1, SIDE_SELL, TIF_DAY, 100, 5));
    let frames = maker.take(&h);
    let OrderMsg::OrderAccepted(acc) = msg(&frames[0]) else {
        panic!("{frames:?}");
    };
    let [t1, t2, t3, t4] = [acc.h.t1, acc.h.t2, acc.h.t3, acc.h.t4];
    assert!(
        t1 == Nanos(11) && t1 < t2 && t2 < t3 && t3 < t4,
        "{:?}",
        acc.h
    );
    assert_ne!(acc.h.route, 0, "the gateway's tag");
    assert_eq!(RouteTag::from_bits(acc.h.route).origin.0, 0);

    taker.send(&mut h, &new_order(8, 0, 2, SIDE_BUY, TIF_IOC, 101, 7));
    let to_taker = taker.take(&h);
    let kinds: Vec<u16> = to_taker.iter().map(|f| f.0).collect();
    assert_eq!(
        kinds,
        [
            order::OP_ORDER_ACCEPTED,
            order::OP_ORDER_EXECUTED,
            order::OP_ORDER_CANCELED
        ]
    );
    for f in &to_taker {
        let hd = msg(f).header();
        assert_eq!((hd.cl_ord_id, hd.t1), (8, Nanos(11)));
        assert_ne!(
            hd.t4,
            Nanos::ZERO,
            "messages about the request are stamped t4"
        );
    }
    let to_maker = maker.take(&h);
    assert_eq!(
        to_maker.len(),
        1,
        "the maker's fill, routed by its order's route"
    );
    let OrderMsg::OrderExecuted(fill) = msg(&to_maker[0]) else {
        panic!("{to_maker:?}");
    };
    assert_eq!((fill.h.cl_ord_id, fill.qty, fill.leaves), (3, 5, 0));
    assert_eq!(fill.h.route, acc.h.route);
    assert_eq!(
        (fill.h.t1, fill.h.t2, fill.h.t4),
        (Nanos::ZERO, Nanos::ZERO, Nanos::ZERO),
        "a maker's message carries no stamps but t3"
    );
    let stats = h.gateway(0).service().stats();
    assert_eq!(
        h.gateway(0).service().inflight(),
        0,
        "first answers closed every entry"
    );
    assert_eq!(stats.orders, 2);
}

#[test]
fn a_client_that_leaves_has_its_open_orders_canceled() {
    let mut h = harness(GatewayConfig::default());
    let g = NodeRef::Gateway(0);
    let mut a = connect(&mut h, g);
    a.send(&mut h, &new_order(1, 0, 1, SIDE_BUY, TIF_DAY, 90, 2));
    a.send(&mut h, &new_order(2, 0, 1, SIDE_BUY, TIF_DAY, 91, 3));
    // One is canceled by the client itself first: only the other is left.
    a.send(&mut h, &cancel(3, 1, 1));
    assert_eq!(a.take(&h).len(), 3);
    assert_eq!(book(&mut h, g), [(91, 3)]);
    h.close_raw(a.id);
    h.settle();
    assert_eq!(book(&mut h, g), [], "canceled on disconnect");
    let stats = h.gateway(0).service().stats();
    assert_eq!(stats.disconnect_cancels, 1);
    assert_eq!(h.gateway(0).service().inflight(), 0);
}

#[test]
fn an_order_accepted_after_its_client_left_is_canceled_too() {
    let mut h = harness(GatewayConfig::default());
    let g = NodeRef::Gateway(0);
    let a = connect(&mut h, g);
    // The order is still on its way when the client goes: the cancels sent
    // at the close cannot name it; its late OrderAccepted must.
    h.send_raw(a.id, &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 130, 4));
    h.close_raw(a.id);
    h.settle();
    assert_eq!(book(&mut h, g), [], "canceled once accepted");
    assert_eq!(h.gateway(0).service().stats().disconnect_cancels, 1);
}

#[test]
fn a_draining_gateway_cancels_its_clients_open_orders_before_it_is_done() {
    let mut h = harness(GatewayConfig::default());
    let g = NodeRef::Gateway(0);
    let mut a = connect(&mut h, g);
    a.send(&mut h, &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 120, 4));
    a.send(&mut h, &new_order(2, 0, 1, SIDE_BUY, TIF_DAY, 90, 2));
    assert_eq!(a.take(&h).len(), 2);
    // A third is on its way to the exchange when the drain begins: it is
    // answered, then canceled as it opens.
    h.send_raw(a.id, &new_order(3, 0, 1, SIDE_SELL, TIF_DAY, 130, 1));
    h.run_until(|h| h.gateway(0).service().inflight() > 0);
    h.shutdown(g);
    assert!(!h.gateway(0).is_done(), "its cancels are not answered yet");
    h.settle();
    let frames = a.take(&h);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(matches!(msg(&frames[0]), OrderMsg::OrderAccepted(_)));
    assert!(!h.raw(a.id).closed, "the client stays until the drain ends");
    assert_eq!(book(&mut h, NodeRef::Exchange), [], "every order canceled");
    assert_eq!(h.gateway(0).service().stats().disconnect_cancels, 3);
    assert!(h.gateway(0).is_done());
}

#[test]
fn a_draining_gateway_without_cancel_on_disconnect_leaves_the_orders() {
    let mut h = harness(GatewayConfig {
        cancel_on_disconnect: false,
        ..GatewayConfig::default()
    });
    let g = NodeRef::Gateway(0);
    let mut a = connect(&mut h, g);
    a.send(&mut h, &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 120, 4));
    assert_eq!(a.take(&h).len(), 1);
    h.shutdown(g);
    h.settle();
    assert!(h.gateway(0).is_done());
    assert_eq!(book(&mut h, NodeRef::Exchange), [(120, 4)]);
}

#[test]
fn cancel_on_disconnect_can_be_turned_off() {
    let mut h = harness(GatewayConfig {
        cancel_on_disconnect: false,
        ..GatewayConfig::default()
    });
    let g = NodeRef::Gateway(0);
    let a = connect(&mut h, g);
    a.send(&mut h, &new_order(1, 0, 1, SIDE_SELL, TIF_DAY, 120, 4));
    h.close_raw(a.id);
    h.settle();
    assert_eq!(book(&mut h, g), [(120, 4)]);
}

#[test]
fn orders_cross_workers_both_ways_under_handoff_routing() {
    let mut h = harness(GatewayConfig {
        workers: 2,
        routing: Routing::Handoff,
        ..GatewayConfig::default()
    });
    // Sessions alternate targets: open enough on worker 0 to get one routed
    // through worker 1's upstream.
    let mut clients: Vec<_> = (0..4)
        .map(|_| connect(&mut h, NodeRef::Gateway(0)))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let side = if i % 2 == 0 { SIDE_SELL } else { SIDE_BUY };
        let account = i as u32 + 1;
        c.send(&mut h, &new_order(1, 0, account, side, TIF_DAY, 100, 1));
    }
    let mut targets = Vec::new();
    let mut fills = 0;
    for c in &mut clients {
        let frames = c.take(&h);
        let first = msg(&frames[0]);
        assert!(matches!(first, OrderMsg::OrderAccepted(_)), "{frames:?}");
        targets.push(RouteTag::from_bits(first.header().route).target.0);
        fills += frames
            .iter()
            .filter(|f| f.0 == order::OP_ORDER_EXECUTED)
            .count();
    }
    assert!(targets.contains(&0) && targets.contains(&1), "{targets:?}");
    assert_eq!(fills, 4, "two crosses, a maker and a taker message each");
    assert_eq!(h.gateway(0).service().inflight(), 0);
}

#[test]
fn a_client_sending_an_exchange_message_is_unexpected() {
    let mut h = harness(GatewayConfig::default());
    let mut a = connect(&mut h, NodeRef::Gateway(0));
    let mut frame = Vec::new();
    OrderMsg::Balance(order::Balance {
        h: header(1, 0),
        account: 1,
        asset: 0,
        total: 1,
        locked: 0,
    })
    .encode(&mut frame);
    a.send(&mut h, &frame);
    let frames = a.take(&h);
    let err = fep_core::wire::ErrorMsg::decode(&frames[0].1).unwrap();
    assert_eq!(err.code, ErrorCode::Unexpected);
}

#[test]
fn an_upstream_reject_of_an_order_reaches_its_client() {
    let mut h = harness(GatewayConfig::default());
    let mut a = connect(&mut h, NodeRef::Gateway(0));
    a.send(&mut h, &new_order(0, 0, 1, SIDE_BUY, TIF_DAY, 10, 1));
    let frames = a.take(&h);
    assert_eq!(frames[0].0, OP_REJECT);
    let r = RejectMsg::decode(&frames[0].1).unwrap();
    assert_eq!((r.code, r.seq), (ErrorCode::DuplicateId, 0));
    assert_eq!(h.gateway(0).service().inflight(), 0);
}
