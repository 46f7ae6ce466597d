//! Helpers shared by the order-entry tests: raw connections through the
//! in-memory harness, requests built field by field, frames read back.

#![allow(dead_code)]

use fep_core::frame::Decoder;
use fep_core::Nanos;
use fep_load::harness::{Harness, NodeRef};
use fep_trading::msg::RoleHelloReq;
use fep_trading::order::{CancelOrder, Header, NewOrder, OrderMsg};

/// A raw client connection to `target`, hand-shaked, its ack consumed.
pub fn connect(h: &mut Harness, target: NodeRef) -> Raw {
    connect_with(h, target, "")
}

/// As [`connect`], presenting `token`.
pub fn connect_with(h: &mut Harness, target: NodeRef, token: &str) -> Raw {
    let raw = h.open_raw(target);
    let mut hello = Vec::new();
    RoleHelloReq {
        role: 1,
        version: 1,
        token,
    }
    .encode(&mut hello);
    h.send_raw(raw, &hello);
    h.settle();
    let mut r = Raw { id: raw, seen: 0 };
    r.take(h);
    r
}

/// A raw peer and how much of what it received was read.
#[derive(Debug)]
pub struct Raw {
    /// The harness's index of the peer.
    pub id: u16,
    seen: usize,
}

impl Raw {
    /// A raw peer opened by hand (`Harness::open_raw`), nothing read yet.
    pub fn from_id(id: u16) -> Raw {
        Raw { id, seen: 0 }
    }

    /// Sends `bytes` and lets the wiring settle.
    pub fn send(&self, h: &mut Harness, bytes: &[u8]) {
        h.send_raw(self.id, bytes);
        h.settle();
    }

    /// Every frame received since the last call, as (opcode, payload).
    pub fn take(&mut self, h: &Harness) -> Vec<(u16, Vec<u8>)> {
        let bytes = &h.raw(self.id).received[self.seen..];
        self.seen += bytes.len();
        let mut d = Decoder::new(1 << 20);
        let mut frames = d.frames(bytes);
        let mut out = Vec::new();
        while let Some(f) = frames.next() {
            let f = f.expect("roles send whole frames");
            out.push((f.opcode, f.payload.to_vec()));
        }
        out
    }
}

/// A client's header: `t1` set, nothing else.
pub fn header(cl_ord_id: u64, route: u64) -> Header {
    Header {
        cl_ord_id,
        route,
        t1: Nanos(11),
        ..Header::default()
    }
}

/// A `NewOrder` frame on instrument 1.
#[allow(clippy::too_many_arguments)]
pub fn new_order(
    id: u64,
    route: u64,
    account: u32,
    side: u8,
    tif: u8,
    price: i64,
    qty: u64,
) -> Vec<u8> {
    let mut out = Vec::new();
    OrderMsg::NewOrder(NewOrder {
        h: header(id, route),
        account,
        instrument: 1,
        side,
        tif,
        price,
        qty,
    })
    .encode(&mut out);
    out
}

/// A `CancelOrder` frame.
pub fn cancel(id: u64, account: u32, orig: u64) -> Vec<u8> {
    let mut out = Vec::new();
    OrderMsg::CancelOrder(CancelOrder {
        h: header(id, 0),
        account,
        orig_cl_ord_id: orig,
    })
    .encode(&mut out);
    out
}

/// The frame decoded as an order-entry message.
pub fn msg(frame: &(u16, Vec<u8>)) -> OrderMsg<'_> {
    OrderMsg::decode(frame.0, &frame.1).expect("an order-entry message")
}
