//! The record of a run: a text trace with its digest, what went over the
//! wire frame by frame (handed to the wire check as it happens), and which
//! connections are open.
//!
//! Every host of a simulation writes into one [`Recorder`] (the simulation
//! runs on one thread, so it is shared as `Rc<RefCell<_>>`). The digest is
//! FNV-1a (64 bit, fixed basis) over the trace text, so equal digests mean
//! byte-identical traces, whatever the process, build or machine.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::rc::Rc;

use fep_core::{ConnId, Nanos};

use crate::check::WireCheck;
use crate::orders::OrderCheck;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit, of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(FNV_OFFSET, bytes)
}

fn fnv1a64_extend(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Index of a host, as [`Recorder::add_host`] numbered it.
pub type HostIx = u16;

/// Which way a frame went, seen from the host that observed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Written by this host.
    Out,
    /// Read by this host.
    In,
}

/// One frame seen on a connection, at the moment the driver wrote or read
/// it. Fields that the opcode does not carry are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireEvent {
    /// Simulated time of the write or read.
    pub at: Nanos,
    /// The observing host.
    pub host: HostIx,
    /// The observing worker.
    pub worker: u16,
    /// The connection on the observing host.
    pub conn: ConnId,
    /// Our end of the connection.
    pub local: SocketAddr,
    /// The other end.
    pub peer: SocketAddr,
    /// Direction.
    pub dir: Dir,
    /// The frame's opcode.
    pub opcode: u16,
    /// `seq` of a ping, pong or `Reject`.
    pub seq: u64,
    /// `route` of a ping or pong.
    pub route: u64,
    /// `t1..t4` of a ping or pong.
    pub t: [u64; 4],
    /// FNV-1a of a ping's or pong's pad.
    pub pad: u64,
    /// The code of an `Error` or `Reject`.
    pub code: u16,
    /// The fields of an order-entry message.
    pub order: crate::oracle::OrderFields,
}

/// How a frame came to the worker that handled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Read from the event's connection and handed to its worker.
    Read,
    /// Handed over by another worker of the same host (`conn` is unused).
    Handoff,
}

/// A connection open on some host, as its driver registered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenConn {
    /// The host.
    pub host: HostIx,
    /// The host's incarnation (restarts count up).
    pub incarnation: u32,
    /// The worker owning it.
    pub worker: u16,
    /// The worker's handle.
    pub conn: ConnId,
    /// Our end.
    pub local: SocketAddr,
    /// The other end.
    pub peer: SocketAddr,
}

/// The trace, its digest, the wire events and the open connections of a run.
#[derive(Debug)]
pub struct Recorder {
    hosts: Vec<String>,
    digest: u64,
    lines: u64,
    line: String,
    text: Option<String>,
    /// The wire invariants, fed every frame written or read, in the order
    /// the drivers saw them.
    wire: Option<WireCheck>,
    /// The order-entry invariants (o-scenarios), fed the exchange's journal
    /// records and frames.
    orders: Option<OrderCheck>,
    /// Connections open now.
    pub open: Vec<OpenConn>,
}

/// A recorder shared by the hosts of one simulation.
pub type SharedRecorder = Rc<RefCell<Recorder>>;

impl Recorder {
    /// Connections open on one side only (their peer closed).
    pub fn one_sided(&self) -> impl Iterator<Item = &OpenConn> {
        self.open.iter().filter(|c| {
            !self
                .open
                .iter()
                .any(|o| o.local == c.peer && o.peer == c.local)
        })
    }

    /// An empty recorder; `keep_text` keeps the trace text (for printing),
    /// otherwise only its digest.
    pub fn new(keep_text: bool) -> Recorder {
        Recorder {
            hosts: Vec::new(),
            digest: FNV_OFFSET,
            lines: 0,
            line: String::with_capacity(160),
            text: keep_text.then(String::new),
            wire: None,
            orders: None,
            open: Vec::new(),
        }
    }

    /// Registers host `name`; returns its index.
    pub fn add_host(&mut self, name: &str) -> HostIx {
        if let Some(i) = self.hosts.iter().position(|h| h == name) {
            return HostIx::try_from(i).expect("few hosts");
        }
        self.hosts.push(name.to_string());
        HostIx::try_from(self.hosts.len() - 1).expect("few hosts")
    }

    /// The name of host `ix`.
    pub fn host_name(&self, ix: HostIx) -> &str {
        &self.hosts[usize::from(ix)]
    }

    /// The index of host `name`, if registered.
    pub fn host_ix(&self, name: &str) -> Option<HostIx> {
        self.hosts
            .iter()
            .position(|h| h == name)
            .map(|i| HostIx::try_from(i).expect("few hosts"))
    }

    /// Appends one line `<ns> <who> <what>` to the trace.
    pub fn line(&mut self, at: Nanos, who: fmt::Arguments<'_>, what: fmt::Arguments<'_>) {
        self.line.clear();
        let _ = writeln!(self.line, "{:>12} {who} {what}", at.as_u64());
        self.digest = fnv1a64_extend(self.digest, self.line.as_bytes());
        self.lines += 1;
        if let Some(text) = &mut self.text {
            text.push_str(&self.line);
        }
    }

    /// The digest of the trace so far.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Lines in the trace so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The trace text, if kept.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// From now on, every frame goes through `check`.
    pub fn check_wire(&mut self, check: WireCheck) {
        self.wire = Some(check);
    }

    /// The wire check in place, if any.
    pub fn wire_check_mut(&mut self) -> Option<&mut WireCheck> {
        self.wire.as_mut()
    }

    /// The wire check, with what it has seen.
    pub fn take_wire_check(&mut self) -> Option<WireCheck> {
        self.wire.take()
    }

    /// From now on, the exchange's journal records and frames go through
    /// `check`.
    pub fn check_orders(&mut self, check: OrderCheck) {
        self.orders = Some(check);
    }

    /// The order check, with what it has seen.
    pub fn take_order_check(&mut self) -> Option<OrderCheck> {
        self.orders.take()
    }

    /// Journal records a host appended (`len:u32` then the record, each).
    pub fn journaled(&mut self, records: &[u8]) {
        if let Some(check) = &mut self.orders {
            check.journaled(records);
        }
    }

    /// The exchange's log made every record up to `seq` durable.
    pub fn durable(&mut self, seq: u64) {
        if let Some(check) = &mut self.orders {
            check.durable(seq);
        }
    }

    /// A host's journal failed at `at`: it acknowledges nothing more.
    pub fn journal_failed(&mut self, at: Nanos) {
        if let Some(check) = &mut self.wire {
            check.journal_failed(at.as_u64());
        }
        if let Some(check) = &mut self.orders {
            check.journal_failed();
        }
    }

    /// A restarted exchange recovered `records` (`len:u32` then the record,
    /// each) from its journal.
    pub fn recovered(&mut self, records: &[u8]) {
        if let Some(check) = &mut self.orders {
            check.recovered(records);
        }
    }

    /// A restarted exchange could not recover its journal (`why`).
    pub fn recovery_failed(&mut self, why: &str) {
        if let Some(check) = &mut self.orders {
            check.recovery_failed(why);
        }
    }

    /// Answers the clients have read so far (0 without a wire check).
    pub fn answered(&self) -> u64 {
        self.wire.as_ref().map_or(0, WireCheck::answered)
    }

    /// Frames written or read by a driver.
    pub fn wire_events(&mut self, events: &[WireEvent]) {
        if let Some(check) = &mut self.wire {
            for e in events {
                check.event(e, &self.hosts);
            }
        }
        if let Some(check) = &mut self.orders {
            for e in events {
                check.event(e);
            }
        }
    }

    /// Frames a worker handled: read from a connection and handed to it
    /// (`Handled::Read`), or handed over by another worker
    /// (`Handled::Handoff`).
    pub fn handled(&mut self, how: Handled, events: &[WireEvent]) {
        if let Some(check) = &mut self.wire {
            for e in events {
                check.handled(how, e);
            }
        }
    }

    /// Worker `worker` of `host` starts its drain now.
    pub fn shutdown(&mut self, host: HostIx, worker: u16) {
        if let Some(check) = &mut self.wire {
            check.shutdown(host, worker);
        }
    }

    /// A connection opened.
    pub fn opened(&mut self, conn: OpenConn) {
        if let Some(check) = &mut self.wire {
            check.opened(&conn);
        }
        self.open.push(conn);
    }

    /// A connection closed at `at` (no-op if it was not open).
    pub fn closed(&mut self, host: HostIx, worker: u16, conn: ConnId, at: Nanos) {
        let gone = self
            .open
            .iter()
            .find(|c| c.host == host && c.worker == worker && c.conn == conn)
            .copied();
        if let (Some(c), Some(check)) = (gone, &mut self.wire) {
            check.closed(&c, at);
        }
        self.open
            .retain(|c| !(c.host == host && c.worker == worker && c.conn == conn));
    }

    /// Host `host` crashed: its connections are gone with it.
    pub fn host_crashed(&mut self, host: HostIx) {
        self.open.retain(|c| c.host != host);
        if let Some(check) = &mut self.wire {
            check.host_crashed(host);
        }
        if let Some(check) = self.orders.as_mut().filter(|c| c.exchange() == host) {
            check.restart();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_digest_covers_every_line_in_order() {
        let digest = |lines: &[&str]| {
            let mut r = Recorder::new(true);
            for l in lines {
                r.line(Nanos(1), format_args!("h"), format_args!("{l}"));
            }
            (r.digest(), r.text().unwrap().to_string())
        };
        let (ab, text) = digest(&["a", "b"]);
        assert_eq!(text, "           1 h a\n           1 h b\n");
        assert_eq!(ab, fnv1a64(text.as_bytes()));
        assert_ne!(ab, digest(&["b", "a"]).0);
    }
}
