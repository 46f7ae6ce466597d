//! The way up: a client's hand-shake, its pings and order-entry requests,
//! the pre-trade checks, admission against the bounds, and forwarding
//! (stamped with `route`/`t2`) to the upstream, here or through another
//! worker.

use fep_core::frame::encode_frame;
use fep_core::{ConnId, Context, ErrorCode, Fault, Nanos};

use crate::msg::{offset, patch_u64, PerfPing, RoleHelloReq, OP_PERF_PING};
use crate::open_orders::OpenOrders;
use crate::order::{self, OrderMsg};
use crate::risk::{self, OrderTerms, Refusal, ReplaceTerms, Reservation};
use crate::Role;

use super::{client_of, credit_of, Gateway, InDoubt, Link, Pend, Pending, RouteTag};

impl Gateway {
    pub(super) fn on_client_hello(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        p: &[u8],
    ) -> Result<(), Fault> {
        let hello = RoleHelloReq::decode(p)?;
        // Role and version first, then whose token it is.
        self.admission.check(&hello)?;
        let Some(client) = self.risk.client_by_token(hello.token) else {
            return Err(Fault::RoleRefused {
                what: "wrong token",
            });
        };
        self.admission.accept(cx, conn, p, Role::Gateway)?;
        cx.data_mut(conn).expect("just hand-shaked").client = Some(client);
        Ok(())
    }

    pub(super) fn on_ping(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let seq = PerfPing::decode(OP_PERF_PING, payload)?.seq;
        let pend = Pend::default();
        self.admit(
            cx,
            conn,
            OP_PERF_PING,
            seq,
            payload,
            6 + payload.len(),
            pend,
        );
        Ok(())
    }

    /// An order-entry request from a client: checked whole, then on its way
    /// like a ping.
    pub(super) fn on_request(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let msg = OrderMsg::decode(opcode, payload)?;
        let cl_ord_id = msg.header().cl_ord_id;
        if opcode == order::OP_NEW_ORDER
            && self.open_orders.as_ref().is_some_and(OpenOrders::is_full)
        {
            self.stats.rejected(ErrorCode::Overloaded);
            let why = "gateway's open-order table is full";
            cx.reject(conn, ErrorCode::Overloaded, cl_ord_id, why);
            return Ok(());
        }
        let pend = match self.check_risk(cx, conn, &msg) {
            Ok(pend) => pend,
            Err(refusal) => {
                self.stats.rejected(ErrorCode::RiskLimit);
                self.stats.risk_refusals[refusal.check().index()] += 1;
                let why = refusal.reason(&mut self.reason);
                cx.reject(conn, ErrorCode::RiskLimit, cl_ord_id, why);
                return Ok(());
            }
        };
        self.stats.orders += 1;
        let credit = credit_of(opcode, payload);
        if !self.admit(cx, conn, opcode, cl_ord_id, payload, credit, pend) {
            self.risk.release(client_of(cx, conn), pend.reserved);
        }
        Ok(())
    }

    /// The pre-trade checks of a request from `conn`'s client: what it
    /// reserves, or why it is refused (it then never reaches the exchange).
    /// Cancels and queries are checked for the account alone.
    pub(super) fn check_risk(
        &mut self,
        cx: &Context<'_, Self>,
        conn: ConnId,
        msg: &OrderMsg<'_>,
    ) -> Result<Pend, Refusal> {
        let client = client_of(cx, conn);
        let now = cx.now();
        let account = match *msg {
            OrderMsg::NewOrder(m) => m.account,
            OrderMsg::ReplaceOrder(m) => m.account,
            _ => 0,
        };
        let reserved = match *msg {
            OrderMsg::NewOrder(m) => {
                let terms = OrderTerms {
                    account: m.account,
                    instrument: m.instrument,
                    side: risk::Side::from_u8(m.side),
                    price: m.price,
                    qty: m.qty,
                };
                self.risk.check_new(now, client, &terms)?
            }
            OrderMsg::ReplaceOrder(m) => {
                // The order is named by (account, cl_ord_id), which the
                // open-order view does not index: the whole new notional is
                // reserved, and settled against what was held on the answer.
                let terms = ReplaceTerms {
                    account: m.account,
                    price: m.price,
                    qty: m.qty,
                    current: None,
                    instrument: None,
                    side: None,
                };
                self.risk.check_replace(now, client, &terms)?
            }
            OrderMsg::CancelOrder(m) => {
                self.risk.check_cancel(client, m.account)?;
                Reservation::default()
            }
            OrderMsg::BalanceQuery(m) => {
                self.risk.check_balance_query(client, m.account)?;
                Reservation::default()
            }
            _ => Reservation::default(),
        };
        Ok(Pend { reserved, account })
    }

    /// Takes a client request (`opcode`, `seq`, whole `payload`) on its way
    /// to its upstream, holding `credit` bytes with a remote one until its
    /// first answer is back, and `pend` until its connection's worker
    /// settles it; or rejects it at once (`false`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn admit(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        seq: u64,
        payload: &[u8],
        credit: usize,
        pend: Pend,
    ) -> bool {
        if self.draining {
            self.stats.rejected(ErrorCode::ShuttingDown);
            cx.reject(conn, ErrorCode::ShuttingDown, seq, "gateway is draining");
            return false;
        }
        let peer = cx.data_mut(conn).expect("handler runs on a live session");
        let target = peer.target;
        if peer.inflight >= self.config.inflight_per_session_max {
            self.stats.rejected(ErrorCode::Overloaded);
            cx.reject(
                conn,
                ErrorCode::Overloaded,
                seq,
                "too many requests in flight on this session",
            );
            return false;
        }
        let len = 6 + payload.len();
        if target != self.worker
            && self.via_bytes[target.index()] + credit > self.config.handoff_inflight_bytes_max
        {
            // Only a driver that ignores pauses gets here.
            self.stats.rejected(ErrorCode::Overloaded);
            cx.reject(
                conn,
                ErrorCode::Overloaded,
                seq,
                "credit with the upstream's worker spent",
            );
            return false;
        }
        peer.inflight += 1;
        peer.pending.push_back(pend);
        self.inflight_total += 1;
        if opcode == OP_PERF_PING {
            self.stats.pings += 1;
        }
        let route = RouteTag {
            origin: self.worker,
            target,
            conn,
        }
        .to_bits();
        let read_at = cx.now();
        if target == self.worker {
            self.forward(cx, opcode, route, seq, payload, read_at);
        } else {
            self.via_bytes[target.index()] += credit;
            self.stats.handoffs += 1;
            let handed = cx.handoff(target, len, |out| {
                let start = out.len();
                encode_frame(out, opcode, payload);
                patch_u64(&mut out[start..], offset::ROUTE, route);
                // In the lane `t2` carries the read's time (the target
                // stamps its own when it forwards): the request leg.
                patch_u64(&mut out[start..], offset::T2, read_at.as_u64());
            });
            assert!(handed, "the credit keeps the lane within its bound");
            self.update_via(cx, target);
        }
        true
    }

    /// Writes a request (a ping or an order-entry request, read from its
    /// client at `read_at`) to this worker's upstream, stamping `route` and
    /// `t2`, or rejects it.
    pub(super) fn forward(
        &mut self,
        cx: &mut Context<'_, Self>,
        opcode: u16,
        route: u64,
        seq: u64,
        payload: &[u8],
        read_at: Nanos,
    ) {
        let len = 6 + payload.len();
        // The credit this request holds with its origin (same rule there).
        let credit = if opcode == OP_PERF_PING {
            len
        } else {
            credit_of(opcode, payload)
        };
        let lane = usize::from(self.lane_of(RouteTag::from_bits(route).conn));
        let Link::Up(upstream) = self.upstreams[lane].link else {
            return self.answer_reject(
                cx,
                route,
                seq,
                credit,
                ErrorCode::UpstreamUnavailable,
                false,
            );
        };
        if self.upstreams[lane].fifo.len() >= self.config.upstream_inflight_max {
            return self.answer_reject(cx, route, seq, credit, ErrorCode::Overloaded, false);
        }
        // Past the output bound the engine would cut the upstream, and with
        // it every client's pings in flight: shed this one instead. (Clients
        // are paused well before, at the high-water mark; other workers
        // hear of it a moment later.)
        let backlog = cx.session(upstream).map_or(0, |s| s.backlog());
        if backlog + len > cx.config().output_backlog_max {
            return self.answer_reject(cx, route, seq, credit, ErrorCode::Overloaded, false);
        }
        let now = cx.now();
        let t2 = now.as_u64();
        let sent = cx.forward(
            upstream,
            opcode,
            payload,
            &[(offset::ROUTE, route), (offset::T2, t2)],
        );
        if sent {
            self.stats.forwarded += 1;
            self.stats.request_leg.record((now - read_at).as_u64());
            let len = u32::try_from(credit).expect("a credit fits u32");
            self.upstreams[lane].fifo.push_back(Pending {
                route,
                seq,
                len,
                internal: false,
                doubt: InDoubt::default(),
                opcode,
                sent_at: now,
            });
            if cx.session(upstream).is_some_and(|s| s.output_high()) {
                self.upstreams[lane].congested = true;
                self.announce_congestion(cx);
            }
        } else {
            self.answer_reject(
                cx,
                route,
                seq,
                credit,
                ErrorCode::UpstreamUnavailable,
                false,
            );
        }
    }
}
