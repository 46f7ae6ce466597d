//! Writing a connection's output: speculative, deferred or batched,
//! vectored when it refers to a lent input.

use std::io::{self, IoSlice, Write};

use fep_core::{ConnId, Nanos, Service};
use mio::Interest;

use crate::config::WriteMode;
use crate::limits::IOV_PER_WRITE_MAX;

use super::{conn_token, find, Driver};

pub(super) enum Flush {
    Done,
    Blocked,
    Failed,
}

impl<S: Service> Driver<S> {
    pub(super) fn transmit(&mut self, conn: ConnId, now: Nanos) {
        let mode = self.config.write_mode;
        let Some(c) = find(&mut self.conns, conn) else {
            return;
        };
        if c.blocked {
            // The WRITABLE event will write these bytes behind the others.
            return;
        }
        match mode {
            WriteMode::Speculative => {
                if let Flush::Failed = self.flush(conn, now) {
                    self.finalize(conn, now);
                }
            }
            WriteMode::Batched => {
                if !c.queued_dirty {
                    c.queued_dirty = true;
                    self.dirty.push(conn);
                }
            }
            WriteMode::Deferred => {
                c.blocked = true;
                self.stats.deferred_waits += 1;
                // Re-arming an edge-triggered registration reports the
                // socket's current readiness: the event comes next poll.
                let token = conn_token(conn);
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .reregister(&mut c.stream, token, interest)
                    .is_err()
                {
                    self.finalize(conn, now);
                }
            }
        }
    }

    /// Batched writes: every connection that got bytes since the last
    /// poll writes them now, once.
    pub(super) fn flush_dirty(&mut self, now: Nanos) {
        while !self.dirty.is_empty() {
            let mut batch = std::mem::take(&mut self.dirty);
            for conn in batch.drain(..) {
                let Some(c) = find(&mut self.conns, conn) else {
                    continue;
                };
                c.queued_dirty = false;
                if c.blocked || c.closing_until.is_some() {
                    continue;
                }
                if let Flush::Failed = self.flush(conn, now) {
                    self.finalize(conn, now);
                }
            }
            // Writes may have drained a backlog and let the service resume
            // input, or a close may have queued more.
            self.drain(now);
            if self.dirty.is_empty() {
                self.dirty = batch;
            }
        }
    }

    /// Writes what the engine has for `conn` until it is all out or the
    /// socket is full.
    pub(super) fn flush(&mut self, conn: ConnId, now: Nanos) -> Flush {
        let Some(c) = find(&mut self.conns, conn) else {
            return Flush::Failed;
        };
        loop {
            let (written, pending_len) = if self.worker.transmit_is_spliced(conn) {
                // Part of it is still in the lent read buffer: one
                // vectored write of the pieces, in order.
                let input = self
                    .loan
                    .input(&self.read_buf, &self.inbound)
                    .unwrap_or_default();
                let mut iov = [IoSlice::new(&[]); IOV_PER_WRITE_MAX];
                let mut count = 0;
                let mut pending_len = 0;
                let chunks = self.worker.transmit_chunks(conn, input, IOV_PER_WRITE_MAX);
                for (slot, chunk) in iov.iter_mut().zip(chunks.into_iter().flatten()) {
                    *slot = IoSlice::new(chunk);
                    count += 1;
                    pending_len += chunk.len();
                }
                ((&c.stream).write_vectored(&iov[..count]), pending_len)
            } else {
                let pending = self.worker.transmit_buf(conn);
                if pending.is_empty() {
                    c.blocked = false;
                    return Flush::Done;
                }
                ((&c.stream).write(pending), pending.len())
            };
            match written {
                Ok(0) => return Flush::Failed,
                Ok(n) => {
                    self.stats.writes += 1;
                    if n < pending_len {
                        self.stats.partial_writes += 1;
                    }
                    self.worker.handle_written(now, conn, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.would_blocks += 1;
                    c.blocked = true;
                    return Flush::Blocked;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flush::Failed,
            }
        }
    }
}
