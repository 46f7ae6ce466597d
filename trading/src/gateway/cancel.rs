//! Cancel on disconnect and orders in doubt (see "Orders in doubt" and
//! "Drain" in the parent module): the gateway's own `CancelOrder`s, sent
//! at once or held until their upstream session is live.

use fep_core::{ConnId, Context};

use crate::order::{self, OrderMsg};
use crate::risk::{ClientId, Reservation};

use super::{risk_notional, Gateway, InDoubt, Link, Pending, RouteTag, INTERNAL_CONN};

impl Gateway {
    /// Cancels the open orders `conn`'s requests named (cancel on
    /// disconnect), or forgets them when that is off.
    /// With cancel on disconnect, the orders' exposure is given back at
    /// once: each is going away, by the cancel or by a fill on its way.
    /// Without it they stay open at the exchange, and so does their
    /// exposure (the gateway can no longer see them close).
    pub(super) fn cancel_orders_of(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        client: Option<ClientId>,
    ) {
        let Some(mut orders) = self.open_orders.take() else {
            return;
        };
        while let Some(o) = orders.pop_conn(conn) {
            if self.config.cancel_on_disconnect {
                self.cancel_tracked(cx, o, client);
            }
        }
        self.open_orders = Some(orders);
    }

    /// Sends the gateway's cancel of `o`, an order no longer tracked, on
    /// the lane of the connection that named it, and takes what it held
    /// off `client`'s exposure at once.
    pub(super) fn cancel_tracked(
        &mut self,
        cx: &mut Context<'_, Self>,
        o: crate::open_orders::Tracked,
        client: Option<ClientId>,
    ) {
        // Its exposure comes off below, so the cancel holds none.
        let doubt = InDoubt {
            client: None,
            account: o.account,
            name: o.name,
            reserved: Reservation::default(),
            lane: self.lane_of(o.conn),
        };
        if self.send_cancel(cx, doubt) {
            self.stats.disconnect_cancels += 1;
        }
        if let Some(client) = client {
            self.risk
                .on_reduce(client, risk_notional(o.price, o.open), true);
        }
    }

    /// A drain ends every client's session: with cancel on disconnect, the
    /// gateway cancels every order its clients have open before it closes
    /// (the clients stay connected meanwhile, for the answers still owed
    /// to them). What opens later, from a request in flight at the drain's
    /// start, is canceled as it opens ([`Gateway::cancel_opened_on_drain`]).
    /// The drain is done once every cancel is answered
    /// ([`Service::is_done`](fep_core::Service::is_done)).
    pub(super) fn cancel_all_on_drain(&mut self, cx: &mut Context<'_, Self>) {
        if !self.config.cancel_on_disconnect {
            return;
        }
        let Some(mut orders) = self.open_orders.take() else {
            return;
        };
        let mut from = 0;
        while let Some(o) = orders.pop_any(&mut from) {
            let client = cx.session(o.conn).and_then(|s| s.data.client);
            self.cancel_tracked(cx, o, client);
        }
        self.open_orders = Some(orders);
    }

    /// While draining, whether the answer `opcode`/`payload` opens or
    /// renames a resting order (a request in flight when the drain began):
    /// its `order_id`.
    pub(super) fn opened_on_drain(&self, opcode: u16, payload: &[u8]) -> Option<u64> {
        if !self.draining || !self.config.cancel_on_disconnect {
            return None;
        }
        match OrderMsg::decode(opcode, payload) {
            Ok(OrderMsg::OrderAccepted(m)) if m.tif == order::TIF_DAY => Some(m.order_id),
            Ok(OrderMsg::OrderReplaced(m)) => Some(m.order_id),
            _ => None,
        }
    }

    /// Cancels `order_id`, just opened or renamed while draining (and
    /// tracked, with its count, by the delivery), as every other order was
    /// at the drain's start.
    pub(super) fn cancel_opened_on_drain(
        &mut self,
        cx: &mut Context<'_, Self>,
        client: ClientId,
        order_id: u64,
    ) {
        if let Some(o) = self.open_orders.as_mut().and_then(|v| v.close(order_id)) {
            self.cancel_tracked(cx, o, Some(client));
        }
    }

    /// Cancel on disconnect for an order that opened after its client
    /// left: a `NewOrder` or `ReplaceOrder` in flight when the connection
    /// closed is accepted (or renamed) upstream all the same, and the
    /// cancels sent at the close could not name it. Without this it would
    /// rest at the exchange for good, found by the simulator's o-sweeps
    /// with clients that leave.
    pub(super) fn cancel_late(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
    ) {
        if !self.config.cancel_on_disconnect {
            return;
        }
        let (account, name) = match OrderMsg::decode(opcode, payload) {
            Ok(OrderMsg::OrderAccepted(m)) if m.tif == order::TIF_DAY => (m.account, m.h.cl_ord_id),
            Ok(OrderMsg::OrderReplaced(m)) => (m.account, m.h.cl_ord_id),
            _ => return,
        };
        // Its client is gone, and with it the exposure: the cancel holds none.
        let doubt = InDoubt {
            client: None,
            account,
            name,
            reserved: Reservation::default(),
            lane: self.lane_of(conn),
        };
        if self.send_cancel(cx, doubt) {
            self.stats.disconnect_cancels += 1;
        }
    }

    /// Sends the gateway's own `CancelOrder` for an order on its upstream
    /// session, or, if that is not live (or full), holds it
    /// in the session's in-doubt FIFO until it is (the exchange has no
    /// session notion of its own: it keeps the order until canceled).
    /// `true` if sent now.
    pub(super) fn send_cancel(&mut self, cx: &mut Context<'_, Self>, doubt: InDoubt) -> bool {
        if self.try_cancel(cx, doubt) {
            return true;
        }
        self.hold(doubt);
        false
    }

    /// Remembers `doubt` until its upstream session is live; with all
    /// FIFOs full it gives its reservation back (and drops the cancel),
    /// counted. `true` if held.
    pub(super) fn hold(&mut self, doubt: InDoubt) -> bool {
        if self.in_doubt_len < self.config.in_doubt_max {
            self.upstreams[usize::from(doubt.lane)]
                .in_doubt
                .push_back(doubt);
            self.in_doubt_len += 1;
            return true;
        }
        self.stats.in_doubt_overflows += 1;
        self.release_doubt(doubt);
        false
    }

    /// Gives back what an in-doubt entry held: its order is no longer open.
    pub(super) fn release_doubt(&mut self, doubt: InDoubt) {
        if let Some(client) = doubt.client {
            self.risk.release(client, doubt.reserved);
        }
    }

    /// The gateway's own cancel closed order `order_id`: if this worker
    /// still tracks it (a replace left in doubt that did reach the
    /// exchange renamed it), what its record holds comes off its client's
    /// exposure.
    pub(super) fn close_canceled(&mut self, cx: &Context<'_, Self>, order_id: u64) {
        let Some(orders) = self.open_orders.as_mut() else {
            return;
        };
        let Some(before) = orders.close(order_id) else {
            return;
        };
        // Records belong to live connections (a closing one's are popped).
        if let Some(client) = cx.session(before.conn).and_then(|s| s.data.client) {
            self.risk
                .on_reduce(client, risk_notional(before.price, before.open), true);
        }
    }

    /// Sends the gateway's cancels held for want of live upstream session
    /// `lane`, oldest first, while it takes them (room in its in-flight
    /// FIFO and its output bound); the rest wait for its next drain.
    pub(super) fn flush_in_doubt(&mut self, cx: &mut Context<'_, Self>, lane: usize) {
        while let Some(&doubt) = self.upstreams[lane].in_doubt.front() {
            if !self.try_cancel(cx, doubt) {
                return;
            }
            self.upstreams[lane].in_doubt.pop_front();
            self.in_doubt_len -= 1;
            self.stats.in_doubt_cancels += 1;
        }
    }

    /// Writes the gateway's own `CancelOrder` for `doubt` on its upstream
    /// session, if that is live and has room; its answer releases
    /// `doubt.reserved`.
    pub(super) fn try_cancel(&mut self, cx: &mut Context<'_, Self>, doubt: InDoubt) -> bool {
        let lane = usize::from(doubt.lane);
        let Link::Up(upstream) = self.upstreams[lane].link else {
            return false;
        };
        let len = 6 + order::len::CANCEL_ORDER;
        let backlog = cx.session(upstream).map_or(0, |s| s.backlog());
        if self.upstreams[lane].fifo.len() >= self.config.upstream_inflight_max
            || backlog + len > cx.config().output_backlog_max
        {
            return false;
        }
        let cl_ord_id = self.next_internal_id;
        self.next_internal_id += 1;
        let route = RouteTag {
            origin: self.worker,
            target: self.worker,
            conn: INTERNAL_CONN,
        }
        .to_bits();
        let msg = OrderMsg::CancelOrder(order::CancelOrder {
            h: order::Header {
                cl_ord_id,
                route,
                t2: cx.now(),
                ..order::Header::default()
            },
            account: doubt.account,
            orig_cl_ord_id: doubt.name,
        });
        let sent = cx.send(upstream, len, |out| {
            msg.encode(out);
        });
        if sent {
            self.upstreams[lane].fifo.push_back(Pending {
                route,
                seq: cl_ord_id,
                len: 0,
                internal: true,
                doubt,
                opcode: order::OP_CANCEL_ORDER,
                sent_at: cx.now(),
            });
        }
        sent
    }
}
