//! The socket model: a connection's send buffer drained by its writer task
//! into the turmoil stream, its reader task gated by the host's stall and
//! the service's pauses, and the I/O state a worker task keeps per
//! connection.

use super::*;

/// Whether a host's connections are read: closed, its readers stop before
/// their next read (a slow consumer; the stream's flow control then holds
/// the peer's writes back).
#[derive(Default)]
pub(super) struct ReadGate {
    pub(super) stalled: Cell<bool>,
    pub(super) opened: Notify,
}

impl ReadGate {
    pub(super) async fn pass(&self) {
        while self.stalled.get() {
            // Created before any await: it sees the `notify_waiters` of an
            // opening that comes while it waits.
            self.opened.notified().await;
        }
    }

    pub(super) fn is_stalled(&self) -> bool {
        self.stalled.get()
    }

    pub(super) fn set_stalled(&self, stalled: bool) {
        self.stalled.set(stalled);
        if !stalled {
            self.opened.notify_waiters();
        }
    }
}

/// A connection's simulated socket send buffer, shared by its worker task
/// (which fills it) and its writer task (which drains it into the stream).
#[derive(Default)]
pub(super) struct SendBuf {
    /// Writes not yet in the stream, oldest first, each one segment.
    pub(super) chunks: std::collections::VecDeque<Vec<u8>>,
    /// Bytes in `chunks` plus the chunk being written.
    pub(super) len: usize,
    /// Close after the last chunk.
    pub(super) shutdown: bool,
    pub(super) ready: Rc<Notify>,
}

impl SendBuf {
    pub(super) fn room(&self) -> usize {
        SEND_BUF_MAX.saturating_sub(self.len)
    }

    pub(super) fn push(&mut self, bytes: Vec<u8>) {
        self.len += bytes.len();
        self.chunks.push_back(bytes);
        self.ready.notify_one();
    }

    pub(super) fn shut(&mut self) {
        self.shutdown = true;
        self.ready.notify_one();
    }
}

/// One open connection of a worker task.
pub(super) struct ConnIo {
    pub(super) id: ConnId,
    pub(super) local: SocketAddr,
    pub(super) peer: SocketAddr,
    pub(super) send_buf: Rc<RefCell<SendBuf>>,
    pub(super) reader_task: JoinHandle<()>,
    pub(super) writer_task: JoinHandle<()>,
    pub(super) observer: ConnObserver,
    /// A delayed write is scheduled: transmits wait for its flush.
    pub(super) flush_pending: bool,
    /// Closed while the service refuses this connection's input (paused on
    /// its own or with its input group): its reader stops before the next
    /// read.
    pub(super) gate: Rc<ReadGate>,
    /// Input read before the reader stopped, held for the service.
    pub(super) held: Vec<u8>,
    /// The service paused this connection's input.
    pub(super) paused: bool,
    /// Its input group is paused and it had input: it waits in the group.
    pub(super) group_held: bool,
}

/// Reads `conn` into the worker's inbox; while the inbox is full, the
/// host's reads are stalled (`gates[0]`) or the service refuses the
/// connection's input (`gates[1]`) it reads no further, and the stream's
/// flow control holds the sender back.
pub(super) async fn read_loop<T>(
    mut half: OwnedReadHalf,
    conn: ConnId,
    inbox: Inbox<T>,
    gates: [Rc<ReadGate>; 2],
) {
    let mut buf = vec![0u8; READ_BUF_LEN];
    loop {
        for gate in &gates {
            gate.pass().await;
        }
        match half.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = inbox.send(Input::Eof { conn }).await;
                return;
            }
            Ok(n) => {
                let bytes = buf[..n].to_vec();
                if inbox.send(Input::Read { conn, bytes }).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Drains `conn`'s send buffer into the stream, a write per chunk, and
/// tells the worker after each that there is room again; closes the stream
/// after the last chunk once shut.
pub(super) async fn write_loop<T>(
    mut half: OwnedWriteHalf,
    buf: Rc<RefCell<SendBuf>>,
    conn: ConnId,
    inbox: Inbox<T>,
) {
    loop {
        let next = {
            let mut b = buf.borrow_mut();
            match b.chunks.pop_front() {
                Some(chunk) => Ok(chunk),
                None if b.shutdown => Err(true),
                None => Err(false),
            }
        };
        match next {
            Ok(chunk) => {
                if half.write_all(&chunk).await.is_err() {
                    return;
                }
                buf.borrow_mut().len -= chunk.len();
                if inbox.send(Input::Sent { conn }).await.is_err() {
                    return;
                }
            }
            Err(true) => {
                let _ = half.shutdown().await;
                return;
            }
            Err(false) => {
                let ready = buf.borrow().ready.clone();
                ready.notified().await;
            }
        }
    }
}
