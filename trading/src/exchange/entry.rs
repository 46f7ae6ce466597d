//! Order entry on the engine's worker: a request checked, journaled when
//! the engine says so, matched, and its events turned into the contract's
//! answers for their connections (see "Who hears what" in the parent
//! module).

use fep_core::frame::FrameWriter;
use fep_core::wire::RejectMsg;
use fep_core::{ConnId, Context, ErrorCode, Fault};

use fep_engine::{
    BalanceQuery, BookQuery, Cancel, CancelReason, Command, Event, Liquidity, NewOrder, Replace,
    Side, Tif, COMMAND_ENCODED_LEN_MAX,
};

use crate::msg::read_u64;
use crate::order::{
    self, Balance, BookSnapshot, Header, Level, OrderAccepted, OrderCanceled, OrderExecuted,
    OrderMsg, OrderReplaced,
};

use super::{
    hold_back, Exchange, Matching, Owner, AT_ENGINE_PAUSE, ENGINE_WORKER, HELD_BYTES_MAX,
    NOT_DURABLE_RECORDS_MAX, OP_XCH_REQUEST,
};

/// The header of a maker's message: the naming request's `cl_ord_id` and
/// `route`, the event's time as `t3`, no other stamps.
pub(super) fn maker_header(cl_ord_id: u64, owner: Option<Owner>, t3: fep_core::Nanos) -> Header {
    Header {
        cl_ord_id,
        route: owner.map_or(0, |o| o.route),
        t3,
        ..Header::default()
    }
}

/// The engine command of a request; `Err` with the reason for a side or
/// time in force the engine's types cannot hold (`INVALID_ORDER`).
pub(super) fn command_of(msg: &OrderMsg<'_>) -> Result<Command, &'static str> {
    Ok(match *msg {
        OrderMsg::NewOrder(m) => Command::NewOrder(NewOrder {
            account: m.account,
            cl_ord_id: m.h.cl_ord_id,
            instrument: m.instrument,
            side: Side::from_wire(m.side).ok_or("side must be 1 (buy) or 2 (sell)")?,
            tif: Tif::from_wire(m.tif).ok_or("tif must be 1 (day) or 2 (IOC)")?,
            price: m.price,
            qty: m.qty,
        }),
        OrderMsg::CancelOrder(m) => Command::Cancel(Cancel {
            account: m.account,
            cl_ord_id: m.h.cl_ord_id,
            orig_cl_ord_id: m.orig_cl_ord_id,
        }),
        OrderMsg::ReplaceOrder(m) => Command::Replace(Replace {
            account: m.account,
            cl_ord_id: m.h.cl_ord_id,
            orig_cl_ord_id: m.orig_cl_ord_id,
            price: m.price,
            qty: m.qty,
        }),
        OrderMsg::BookQuery(m) => Command::BookQuery(BookQuery {
            instrument: m.instrument,
            depth: m.depth,
        }),
        OrderMsg::BalanceQuery(m) => Command::BalanceQuery(BalanceQuery {
            account: m.account,
            asset: m.asset,
        }),
        _ => unreachable!("only requests are dispatched here"),
    })
}

impl Exchange {
    pub(super) fn on_order(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
    ) -> Result<(), Fault> {
        // A payload of the wrong length is the connection's MALFORMED,
        // wherever the engine lives.
        let msg = OrderMsg::decode(opcode, payload)?;
        if self.matching.is_none() {
            return self.hand_to_engine(cx, conn, opcode, payload);
        }
        let header = msg.header();
        let from = Owner {
            worker: self.worker,
            conn,
            route: header.route,
        };
        self.order(cx, from, &msg);
        hold_back(cx, conn);
        self.hold_back_for_journal(cx, conn);
        Ok(())
    }

    pub(super) fn hand_to_engine(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let lane_max = cx.config().handoff_backlog_max;
        let room = cx.handoff_backlog(ENGINE_WORKER) + 16 + payload.len() <= lane_max / 2;
        let handed = room
            && cx.handoff(ENGINE_WORKER, 16 + payload.len(), |out| {
                let mut w = FrameWriter::new(out, OP_XCH_REQUEST);
                w.put_u64(conn.to_bits()).put_u16(opcode).put_slice(payload);
                w.finish();
            });
        if !handed {
            // Shed: the request never reached the engine.
            self.stats.rejects += 1;
            let seq = read_u64(payload, 0);
            cx.reject(
                conn,
                ErrorCode::Overloaded,
                seq,
                "exchange engine queue is full",
            );
            return Ok(());
        }
        let mut pause = false;
        if let Some(peer) = cx.data_mut(conn) {
            peer.at_engine += 1;
            if peer.at_engine >= AT_ENGINE_PAUSE {
                peer.paused_for_engine = true;
                pause = true;
            }
        }
        // Again if something else resumed it meanwhile.
        if pause && cx.pause_input(conn) {
            self.stats.engine_pauses += 1;
        }
        Ok(())
    }

    /// Runs one decoded order-entry request from `from` through the engine
    /// and sends what it decided.
    pub(super) fn order(&mut self, cx: &mut Context<'_, Self>, from: Owner, msg: &OrderMsg<'_>) {
        let mut h = msg.header();
        h.t3 = cx.now();
        if self.draining {
            self.stats.rejects += 1;
            return self.reject(
                cx,
                from,
                ErrorCode::ShuttingDown,
                h.cl_ord_id,
                "exchange is draining",
            );
        }
        let command = match command_of(msg) {
            Ok(c) => c,
            Err(why) => {
                self.stats.engine_rejects += 1;
                return self.reject(cx, from, ErrorCode::InvalidOrder, h.cl_ord_id, why);
            }
        };
        if let Some(j) = self.journal.as_deref_mut() {
            let m = self
                .matching
                .as_deref()
                .expect("orders are matched on the engine's worker");
            if j.failed {
                self.stats.journal_rejects += 1;
                return self.reject(
                    cx,
                    from,
                    ErrorCode::ShuttingDown,
                    h.cl_ord_id,
                    "exchange journal failed",
                );
            }
            if m.engine.must_journal(&command) {
                let full = j.seq_last - j.durable >= NOT_DURABLE_RECORDS_MAX
                    || j.held.len() >= HELD_BYTES_MAX;
                if full || !cx.journal(COMMAND_ENCODED_LEN_MAX, |out| command.encode(out)) {
                    self.stats.journal_rejects += 1;
                    return self.reject(
                        cx,
                        from,
                        ErrorCode::Overloaded,
                        h.cl_ord_id,
                        "exchange journal is full",
                    );
                }
                j.seq_last += 1;
                self.stats.journaled += 1;
            }
        }
        self.stats.requests += 1;
        let mut m = self
            .matching
            .take()
            .expect("orders are matched on the engine's worker");
        m.events.clear();
        m.engine.handle(&command, &mut m.events);
        self.answer(cx, from, &h, &mut m);
        if let Some(j) = self.journal.as_deref_mut() {
            if j.snapshot_every > 0 && j.seq_last - j.snapshot_at >= j.snapshot_every {
                // Rare (every `snapshot_every` records): the one allocation
                // and copy of the state (sized from the last one, with room
                // for growth); the file work is the driver's.
                j.snapshot_at = j.seq_last;
                let mut state = Vec::with_capacity(j.snapshot_len_last + j.snapshot_len_last / 4);
                m.engine.snapshot(&mut state);
                j.snapshot_len_last = state.len();
                cx.journal_snapshot(j.seq_last, state);
            }
        }
        self.matching = Some(m);
    }

    pub(super) fn reject(
        &mut self,
        cx: &mut Context<'_, Self>,
        to: Owner,
        code: ErrorCode,
        seq: u64,
        why: &str,
    ) {
        let msg = RejectMsg {
            code,
            seq,
            reason: why,
        };
        self.emit(cx, to, 16 + why.len(), |out| {
            msg.encode(out);
        });
    }

    /// Turns the engine's events for one request into frames, in order.
    pub(super) fn answer(
        &mut self,
        cx: &mut Context<'_, Self>,
        from: Owner,
        h: &Header,
        m: &mut Matching,
    ) {
        let mut i = 0;
        while i < m.events.len() {
            let event = m.events[i];
            i += 1;
            match event {
                Event::Accepted {
                    account,
                    order_id,
                    instrument,
                    side,
                    tif,
                    price,
                    qty,
                    ..
                } => {
                    self.stats.accepted += 1;
                    m.owners.set(order_id, Some(from));
                    let msg = OrderMsg::OrderAccepted(OrderAccepted {
                        h: *h,
                        account,
                        order_id,
                        instrument,
                        side: side.wire(),
                        tif: tif.wire(),
                        price,
                        qty,
                    });
                    self.send_msg(cx, from, &msg);
                }
                Event::Executed {
                    account,
                    order_id,
                    cl_ord_id,
                    exec_id,
                    price,
                    qty,
                    leaves,
                    liquidity,
                } => {
                    let owner = m.owners.get(order_id).flatten();
                    if leaves == 0 {
                        m.owners.remove(order_id);
                    }
                    let (to, header) = match liquidity {
                        Liquidity::Taker => (Some(from), *h),
                        Liquidity::Maker => {
                            self.stats.fills += 1;
                            (owner, maker_header(cl_ord_id, owner, h.t3))
                        }
                    };
                    let Some(to) = to else {
                        self.stats.unowned += 1;
                        continue;
                    };
                    let msg = OrderMsg::OrderExecuted(OrderExecuted {
                        h: header,
                        account,
                        order_id,
                        exec_id,
                        price,
                        qty,
                        leaves,
                        liquidity: liquidity.wire(),
                    });
                    if !self.send_msg(cx, to, &msg) {
                        self.stats.unowned += 1;
                    }
                }
                Event::Canceled {
                    account,
                    order_id,
                    canceled_qty,
                    reason,
                    ..
                } => {
                    m.owners.remove(order_id);
                    let reason = match reason {
                        CancelReason::Requested => order::CANCEL_REASON_REQUESTED,
                        CancelReason::IocRest => order::CANCEL_REASON_IOC,
                    };
                    let msg = OrderMsg::OrderCanceled(OrderCanceled {
                        h: *h,
                        account,
                        order_id,
                        canceled_qty,
                        reason,
                    });
                    self.send_msg(cx, from, &msg);
                }
                Event::Replaced {
                    account,
                    order_id,
                    price,
                    qty,
                    ..
                } => {
                    m.owners.set(order_id, Some(from));
                    let msg = OrderMsg::OrderReplaced(OrderReplaced {
                        h: *h,
                        account,
                        order_id,
                        price,
                        qty,
                    });
                    self.send_msg(cx, from, &msg);
                }
                Event::Rejected { code, reason } => {
                    self.stats.engine_rejects += 1;
                    let code = ErrorCode::from_u16(code.wire());
                    self.reject(cx, from, code, h.cl_ord_id, reason);
                }
                Event::Book {
                    instrument,
                    bids,
                    asks,
                } => {
                    m.levels.clear();
                    let n = usize::from(bids) + usize::from(asks);
                    for e in &m.events[i..i + n] {
                        let Event::Level { price, qty, orders } = *e else {
                            unreachable!("a book is followed by its levels");
                        };
                        m.levels.push(Level { price, qty, orders });
                    }
                    i += n;
                    let (b, a) = m.levels.split_at(usize::from(bids));
                    let size = order::len::BOOK_SNAPSHOT_MIN + 6 + n * order::LEVEL_LEN;
                    self.emit(cx, from, size, |out| {
                        BookSnapshot::encode_with(out, h, instrument, b, a);
                    });
                }
                Event::Level { .. } => unreachable!("levels are read with their book"),
                Event::Balance {
                    account,
                    asset,
                    total,
                    locked,
                } => {
                    let msg = OrderMsg::Balance(Balance {
                        h: *h,
                        account,
                        asset,
                        total,
                        locked,
                    });
                    self.send_msg(cx, from, &msg);
                }
            }
        }
    }

    pub(super) fn send_msg(
        &mut self,
        cx: &mut Context<'_, Self>,
        to: Owner,
        msg: &OrderMsg<'_>,
    ) -> bool {
        // Room for the largest fixed-size answer (an execution).
        self.emit(cx, to, 6 + order::len::ORDER_EXECUTED, |out| {
            msg.encode(out);
        })
    }
}
