//! Dials: completing a connect, and saying once that a peer is
//! unreachable and once that it answers again.

use std::io;

use fep_core::{ConnId, Nanos, PeerId, Service};
use mio::Interest;

use crate::config::WriteMode;
use crate::socket;

use super::{conn_token, find, nanos, Deadline, Driver};

impl<S: Service> Driver<S> {
    pub(super) fn finish_dial(&mut self, conn: ConnId, now: Nanos) {
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        let peer = c.peer;
        let failed = match c.stream.take_error() {
            Ok(None) => match c.stream.peer_addr() {
                Ok(_) => None,
                // Still connecting: a spurious event.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Some(e),
            },
            Ok(Some(e)) | Err(e) => Some(e),
        };
        if let Some(e) = failed {
            self.say_unreachable(peer, &e);
            self.stats.dial_failures += 1;
            self.drop_socket(conn);
            self.worker.handle_connect_failed(now, conn);
            self.drain(now);
            return;
        }
        self.stats.dialed += 1;
        self.say_reached(peer);
        let deferred = self.config.write_mode == WriteMode::Deferred;
        let c = find(&mut self.conns, conn).expect("checked above");
        c.dialing = false;
        if deferred {
            let token = conn_token(conn);
            if self
                .poll
                .registry()
                .reregister(&mut c.stream, token, Interest::READABLE)
                .is_err()
            {
                self.drop_socket(conn);
                self.worker.handle_connect_failed(now, conn);
                self.drain(now);
                return;
            }
        }
        self.worker.handle_connected(now, conn);
        self.drain(now);
        // The peer may have spoken already; its event came with the dial's.
        self.queue_ready(conn);
    }

    pub(super) fn dial(&mut self, conn: ConnId, peer: PeerId, now: Nanos) {
        let Some(&addr) = self.config.peers.get(usize::from(peer.0)) else {
            eprintln!("worker {}: no address for {peer:?}", self.id.0);
            self.worker.handle_connect_failed(now, conn);
            return;
        };
        let stream = match socket::dial(addr, &self.config) {
            Ok(stream) => stream,
            Err(e) => {
                self.stats.dial_failures += 1;
                self.say_unreachable(Some(peer), &e);
                self.worker.handle_connect_failed(now, conn);
                return;
            }
        };
        if self.register(conn, stream, true, now) {
            if let Some(c) = find(&mut self.conns, conn) {
                c.peer = Some(peer);
            }
            let deadline = now + nanos(self.config.connect_timeout);
            self.deadlines.push_back((deadline, conn, Deadline::Dial));
        }
    }

    /// A dial to `peer` failed with `why`: one line the first time since
    /// it was last reached (with `Config::report_unreachable`).
    pub(super) fn say_unreachable(&mut self, peer: Option<PeerId>, why: &io::Error) {
        let Some(peer) = peer.filter(|_| self.config.report_unreachable) else {
            return;
        };
        let p = usize::from(peer.0);
        if !std::mem::replace(&mut self.unreachable[p], true) {
            let addr = self.config.peers[p];
            eprintln!(
                "worker {}: cannot connect to {addr} ({why}); retrying, said again once it answers",
                self.id.0
            );
        }
    }

    /// A dial to `peer` succeeded: said if its failure was.
    pub(super) fn say_reached(&mut self, peer: Option<PeerId>) {
        let Some(p) = peer.map(|p| usize::from(p.0)) else {
            return;
        };
        if std::mem::replace(&mut self.unreachable[p], false) {
            eprintln!(
                "worker {}: connected to {}",
                self.id.0, self.config.peers[p]
            );
        }
    }
}
