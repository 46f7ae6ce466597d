//! The way back: pongs, first answers and rejects matched against the
//! upstream's in-flight FIFO, later messages routed by `route`, credits
//! returned, and the open orders tracked from what the exchange answers.

use fep_core::frame::{encode_frame, FrameWriter};
use fep_core::wire::{RejectMsg, OP_REJECT};
use fep_core::{ConnId, Context, ErrorCode, Fault, Nanos, Phase};

use crate::msg::{offset, patch_u64, PerfPing, OP_PERF_PONG};
use crate::order::{self, OrderMsg};
use crate::risk::{ClientId, Reservation};

use super::{
    answers, client_of, is_stamped, risk_notional, Gateway, InDoubt, Link, Pend, Pending, RouteTag,
    OP_ROUTED_FIRST, OP_ROUTED_REJECT,
};

impl Gateway {
    /// A ping this worker handed to another came back (answered there, or
    /// refused): its bytes of credit return.
    pub(super) fn came_back(&mut self, cx: &mut Context<'_, Self>, tag: RouteTag, len: usize) {
        debug_assert_eq!(tag.origin, self.worker);
        let via = &mut self.via_bytes[tag.target.index()];
        assert!(
            *via >= len,
            "an answer from {:?} for nothing handed to it",
            tag.target
        );
        *via -= len;
        self.update_via(cx, tag.target);
    }

    /// Sends `Reject{code}` for a request (holding `len` bytes of credit)
    /// to its client, on whichever worker owns it. `in_doubt`: the request
    /// may have reached the exchange (an order in flight at an upstream
    /// loss), so its worker keeps its reservation and cancels it later.
    pub(super) fn answer_reject(
        &mut self,
        cx: &mut Context<'_, Self>,
        route: u64,
        seq: u64,
        len: usize,
        code: ErrorCode,
        in_doubt: bool,
    ) {
        let tag = RouteTag::from_bits(route);
        if tag.origin == self.worker {
            self.deliver_reject(cx, tag.conn, seq, code, in_doubt);
            return;
        }
        let len = u32::try_from(len).expect("a frame length fits u32");
        self.stats.handoffs += 1;
        let handed = cx.handoff(tag.origin, 29, |out| {
            let mut w = FrameWriter::new(out, OP_ROUTED_REJECT);
            w.put_u64(route)
                .put_u64(seq)
                .put_u16(code.to_u16())
                .put_u32(len)
                .put_u8(u8::from(in_doubt));
            w.finish();
        });
        assert!(
            handed,
            "the origin's credit keeps the lane within its bound"
        );
    }

    /// Settles the oldest request in flight of this worker's client `conn`:
    /// its [`Pend`], or `None` if its client went.
    pub(super) fn settle(&mut self, cx: &mut Context<'_, Self>, conn: ConnId) -> Option<Pend> {
        let live = cx.state(conn).is_some_and(|s| s.phase == Phase::Handshaked);
        match cx.data_mut(conn) {
            Some(peer) if live && peer.inflight > 0 => {
                peer.inflight -= 1;
                self.inflight_total -= 1;
                let pend = peer.pending.pop_front();
                debug_assert!(pend.is_some(), "one pend per request in flight");
                pend
            }
            _ => {
                self.stats.orphans += 1;
                None
            }
        }
    }

    pub(super) fn deliver_reject(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        seq: u64,
        code: ErrorCode,
        in_doubt: bool,
    ) {
        if let Some(pend) = self.settle(cx, conn) {
            let client = client_of(cx, conn);
            if in_doubt {
                // It may rest at the exchange: its exposure stays counted
                // until the gateway's cancel of it is answered.
                let doubt = InDoubt {
                    client: Some(client),
                    account: pend.account,
                    name: seq,
                    reserved: pend.reserved,
                    lane: self.lane_of(conn),
                };
                if self.hold(doubt) {
                    self.stats.in_doubt += 1;
                }
            } else {
                // Refused upstream or here: what its check reserved goes
                // back.
                self.risk.release(client, pend.reserved);
            }
            self.stats.rejected(code);
            let reason = match code {
                ErrorCode::UpstreamUnavailable if in_doubt => {
                    "upstream lost with the order in flight; the gateway cancels it on reconnect"
                }
                ErrorCode::UpstreamUnavailable => "no live upstream",
                ErrorCode::Overloaded => "upstream in-flight bound reached",
                ErrorCode::ShuttingDown => "exchange is draining",
                _ => "refused upstream",
            };
            cx.reject(conn, code, seq, reason);
        }
    }

    /// Delivers a pong its upstream's worker read at `read_at`.
    pub(super) fn deliver_pong(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
        read_at: Nanos,
    ) {
        if self.settle(cx, conn).is_some() {
            self.stats.pongs += 1;
            let now = cx.now();
            self.stats.answer_leg.record((now - read_at).as_u64());
            cx.forward(conn, OP_PERF_PONG, payload, &[(offset::T4, now.as_u64())]);
        }
    }

    pub(super) fn on_pong(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let pong = PerfPing::decode(OP_PERF_PONG, payload)?;
        // Check everything before taking the entry: a pong that fails a
        // check cuts the upstream, and the entry must still be in the FIFO
        // then, to be rejected with the others.
        let lane = Gateway::lane_at(cx, conn);
        let oldest = self.oldest(lane, OP_PERF_PONG, pong.seq)?;
        if oldest.route != pong.route {
            return Err(Fault::Unsolicited {
                opcode: OP_PERF_PONG,
                what: "pong route was altered",
            });
        }
        if !answers(oldest.opcode, OP_PERF_PONG) {
            return Err(Fault::Unsolicited {
                opcode: OP_PERF_PONG,
                what: "answer is not of its request's kind",
            });
        }
        // The pad comes back unchanged, so the pong is as long as its ping:
        // the origin's credit counts on it.
        if 6 + payload.len() != oldest.len as usize {
            return Err(Fault::Unsolicited {
                opcode: OP_PERF_PONG,
                what: "pong length differs from its ping",
            });
        }
        self.upstreams[lane].pop_oldest();
        debug_assert!(matches!(self.upstreams[lane].link, Link::Up(up) if up == conn));
        let now = cx.now();
        self.stats
            .upstream_leg
            .record((now - oldest.sent_at).as_u64());
        let tag = RouteTag::from_bits(pong.route);
        if tag.origin == self.worker {
            self.deliver_pong(cx, tag.conn, payload, now);
        } else {
            self.stats.handoffs += 1;
            let handed = cx.handoff(tag.origin, 6 + payload.len(), |out| {
                let start = out.len();
                encode_frame(out, OP_PERF_PONG, payload);
                // In the lane `t4` carries the read's time (the origin
                // stamps its own when it delivers): the answer leg.
                patch_u64(&mut out[start..], offset::T4, now.as_u64());
            });
            assert!(
                handed,
                "the origin's credit keeps the lane within its bound"
            );
        }
        Ok(())
    }

    /// The oldest request in flight on upstream `lane`, if `seq` answers
    /// it. It stays in the FIFO: the caller pops it once the whole answer
    /// checks out.
    pub(super) fn oldest(&self, lane: usize, opcode: u16, seq: u64) -> Result<Pending, Fault> {
        match self.upstreams[lane].fifo.front() {
            None => Err(Fault::Unsolicited {
                opcode,
                what: "answer with no ping in flight",
            }),
            Some(p) if p.seq != seq => Err(Fault::Unsolicited {
                opcode,
                what: "answer is not for the oldest ping in flight",
            }),
            Some(p) => Ok(*p),
        }
    }

    pub(super) fn on_upstream_reject(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        p: &[u8],
    ) -> Result<(), Fault> {
        let reject = RejectMsg::decode(p)?;
        let lane = Gateway::lane_at(cx, conn);
        let oldest = self.oldest(lane, OP_REJECT, reject.seq)?;
        self.upstreams[lane].pop_oldest();
        if oldest.internal {
            // The gateway's own cancel of an order that had closed
            // meanwhile (or never reached the exchange): no longer open.
            self.release_doubt(oldest.doubt);
            return Ok(());
        }
        self.stats
            .upstream_leg
            .record((cx.now() - oldest.sent_at).as_u64());
        let len = oldest.len as usize;
        self.answer_reject(cx, oldest.route, oldest.seq, len, reject.code, false);
        Ok(())
    }

    /// An order-entry message from the exchange: a request's first answer
    /// closes its in-flight entry and goes back to its client; a later
    /// message (a fill, an IOC's rest) goes to the client its `route` names.
    pub(super) fn on_answer(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
    ) -> Result<(), Fault> {
        // Checked whole before anything moves: a bad answer cuts the
        // upstream with its entries still in the FIFO.
        let msg = OrderMsg::decode(opcode, payload)?;
        let h = msg.header();
        let tag = RouteTag::from_bits(h.route);
        if !order::is_first_answer(opcode, payload) {
            if tag.origin.0 >= self.config.workers {
                return Err(Fault::Unsolicited {
                    opcode,
                    what: "a later message's route names no worker",
                });
            }
            self.route_later(cx, tag, opcode, payload);
            return Ok(());
        }
        let lane = Gateway::lane_at(cx, conn);
        let oldest = self.oldest(lane, opcode, h.cl_ord_id)?;
        if oldest.route != h.route {
            return Err(Fault::Unsolicited {
                opcode,
                what: "answer route was altered",
            });
        }
        if !answers(oldest.opcode, opcode) {
            return Err(Fault::Unsolicited {
                opcode,
                what: "answer is not of its request's kind",
            });
        }
        // The request's credit holds the largest answer the contract allows
        // it (a snapshot of at most 100 levels a side): a longer one is the
        // exchange's fault, and would overrun the lane the credit bounds.
        if !oldest.internal && 6 + payload.len() > oldest.len as usize {
            return Err(Fault::Unsolicited {
                opcode,
                what: "answer longer than its request allows",
            });
        }
        self.upstreams[lane].pop_oldest();
        if oldest.internal {
            if let OrderMsg::OrderCanceled(m) = msg {
                self.close_canceled(cx, m.order_id);
            }
            self.release_doubt(oldest.doubt);
            return Ok(());
        }
        let now = cx.now();
        self.stats
            .upstream_leg
            .record((now - oldest.sent_at).as_u64());
        if tag.origin == self.worker {
            self.deliver_order_msg(cx, tag.conn, opcode, payload, Some(now));
        } else {
            self.stats.handoffs += 1;
            let stamped = is_stamped(payload);
            let handed = cx.handoff(tag.origin, 12 + payload.len(), |out| {
                let start = out.len();
                let mut w = FrameWriter::new(out, OP_ROUTED_FIRST);
                w.put_u32(oldest.len).put_u16(opcode).put_slice(payload);
                w.finish();
                if stamped {
                    // As for a pong: `t4` carries the read's time in the lane.
                    let at = start + 12 + offset::T4 - offset::SEQ;
                    patch_u64(&mut out[at..], 0, now.as_u64());
                }
            });
            assert!(
                handed,
                "the origin's credit keeps the lane within its bound"
            );
        }
        Ok(())
    }

    /// A later message for the client `tag` names, on whichever worker.
    pub(super) fn route_later(
        &mut self,
        cx: &mut Context<'_, Self>,
        tag: RouteTag,
        opcode: u16,
        payload: &[u8],
    ) {
        if tag.origin == self.worker {
            self.deliver_order_msg(cx, tag.conn, opcode, payload, None);
            return;
        }
        // Outside any credit: shed rather than pass the lane's bound.
        let room = cx.handoff_backlog(tag.origin) + 6 + payload.len()
            <= cx.config().handoff_backlog_max / 2;
        let handed = room
            && cx.handoff(tag.origin, 6 + payload.len(), |out| {
                encode_frame(out, opcode, payload);
            });
        if handed {
            self.stats.handoffs += 1;
        } else {
            self.stats.later_dropped += 1;
        }
    }

    /// Delivers an order-entry message to this worker's client `conn`,
    /// stamping `t4` on what answers a request (a maker's message has no
    /// stamps but `t3`), and learns the client's open orders from it.
    /// `first_read_at`: for a request's first answer, when its upstream's
    /// worker read it.
    pub(super) fn deliver_order_msg(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
        first_read_at: Option<Nanos>,
    ) {
        let pend = if first_read_at.is_some() {
            let Some(pend) = self.settle(cx, conn) else {
                self.cancel_late(cx, conn, opcode, payload);
                return;
            };
            Some(pend)
        } else {
            None
        };
        let live = cx.state(conn).is_some_and(|s| s.phase == Phase::Handshaked);
        if !live {
            self.stats.later_dropped += 1;
            self.cancel_late(cx, conn, opcode, payload);
            return;
        }
        let client = client_of(cx, conn);
        let opened = self.opened_on_drain(opcode, payload);
        self.track(conn, client, opcode, payload, pend);
        if let Some(order_id) = opened {
            self.cancel_opened_on_drain(cx, client, order_id);
        }
        self.stats.order_answers += 1;
        let stamped = is_stamped(payload);
        let now = cx.now();
        if let (Some(read_at), true) = (first_read_at, stamped) {
            self.stats.answer_leg.record((now - read_at).as_u64());
        }
        let t4 = now.as_u64();
        cx.send(conn, 6 + payload.len(), |out| {
            let start = out.len();
            encode_frame(out, opcode, payload);
            if stamped {
                patch_u64(&mut out[start..], offset::T4, t4);
            }
        });
    }

    /// Updates the open-order view and `client`'s exposure with a message
    /// delivered to `conn` (`pend`: the request it first-answers). Exposure
    /// is settled only from the gateway's own record of an order, so an
    /// exchange's message can never remove more than was counted.
    pub(super) fn track(
        &mut self,
        conn: ConnId,
        client: ClientId,
        opcode: u16,
        payload: &[u8],
        pend: Option<Pend>,
    ) {
        let Some(orders) = self.open_orders.as_mut() else {
            return;
        };
        let Ok(msg) = OrderMsg::decode(opcode, payload) else {
            unreachable!("checked where it arrived");
        };
        let reserved = pend.map_or(Reservation::default(), |p| p.reserved);
        match msg {
            OrderMsg::OrderAccepted(m) => {
                let tracked = orders.open(
                    conn,
                    m.order_id,
                    m.account,
                    m.h.cl_ord_id,
                    m.instrument,
                    m.price,
                    m.qty,
                );
                if tracked.is_err() {
                    // Untracked, it will never be settled: give it back now.
                    self.risk.release(client, reserved);
                }
            }
            OrderMsg::OrderReplaced(m) => {
                let new = risk_notional(m.price, m.qty);
                match orders.open(
                    conn,
                    m.order_id,
                    m.account,
                    m.h.cl_ord_id,
                    0,
                    m.price,
                    m.qty,
                ) {
                    Ok(before) => {
                        let held = before.map_or(0, |b| risk_notional(b.price, b.open));
                        self.risk.on_replaced(client, reserved, held, new);
                        if before.is_none() {
                            // Renamed by a connection of another worker (or
                            // after this worker let it go): tracked here from
                            // now on, it must hold a count of its own, which
                            // its close will take off. The old worker's stale
                            // entry keeps its count until its connection
                            // closes (cautious meanwhile); without this, a
                            // fill closing it here took a count never added,
                            // and the gateway panicked "open orders would go
                            // negative".
                            self.risk.on_open(client, 0);
                        }
                    }
                    Err(()) => self.risk.release(client, reserved),
                }
            }
            OrderMsg::OrderExecuted(m) => {
                if let Some(before) = orders.fill(m.order_id, m.leaves) {
                    // From the gateway's record: a closed order gives back
                    // all it held, an open one what was filled, never more.
                    let closed = m.leaves == 0;
                    let qty = if closed {
                        before.open
                    } else {
                        m.qty.min(before.open)
                    };
                    self.risk
                        .on_reduce(client, risk_notional(before.price, qty), closed);
                    // A fill carries no instrument: the order's own is known.
                    if before.instrument != 0 {
                        self.risk.on_trade(before.instrument, m.price);
                    }
                }
            }
            OrderMsg::OrderCanceled(m) => {
                if let Some(before) = orders.close(m.order_id) {
                    self.risk
                        .on_reduce(client, risk_notional(before.price, before.open), true);
                }
            }
            _ => {}
        }
    }
}
