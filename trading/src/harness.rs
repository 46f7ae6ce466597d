//! The narrowest in-memory loop around one gateway worker: a hand-shaked
//! client connection and upstream, driven directly, for the allocation test
//! and the benchmark. The whole path (client, gateway workers, exchange) is
//! `fep-load`'s harness.

use fep_core::{ConnId, Effect, Nanos, Worker, WorkerConfig, WorkerId};

use crate::gateway::{Gateway, GatewayConfig};

/// One gateway worker with a hand-shaked client and upstream, driven
/// directly: the narrowest loop around the gateway's per-message work, for
/// the allocation test and the benchmark.
#[derive(Debug)]
pub struct GatewayRig {
    /// The gateway worker.
    pub worker: Worker<Gateway>,
    /// The client's connection.
    pub client: ConnId,
    /// The upstream connection.
    pub upstream: ConnId,
    now: Nanos,
    /// The "read buffer" an input is lent from ([`GatewayRig::read_into`]).
    read_buf: Vec<u8>,
}

impl GatewayRig {
    /// A single-worker gateway, hand-shaked both ways.
    pub fn new() -> GatewayRig {
        let mut now = Nanos::from_micros(1);
        let config = GatewayConfig::default();
        let mut worker = Worker::new(
            WorkerId(0),
            WorkerConfig::default(),
            Gateway::new(WorkerId(0), config),
        );
        worker.start(now);
        let upstream = std::iter::from_fn(|| worker.poll_effect())
            .find_map(|e| match e {
                Effect::Connect { conn, .. } => Some(conn),
                _ => None,
            })
            .expect("the gateway dials its upstream");
        worker.handle_connected(now, upstream);
        let mut ack = Vec::new();
        crate::msg::RoleHelloAck {
            role: crate::Role::Exchange.to_u8(),
            version: 1,
        }
        .encode(&mut ack);
        worker.handle_read(now, upstream, &ack);
        let client = worker.handle_accepted(now).expect("room");
        let mut hello = Vec::new();
        crate::msg::RoleHelloReq::new(crate::Role::Client, "").encode(&mut hello);
        worker.handle_read(now, client, &hello);
        let mut rig = GatewayRig {
            worker,
            client,
            upstream,
            now,
            read_buf: Vec::new(),
        };
        rig.flush();
        now = now + Nanos::from_micros(1);
        rig.now = now;
        assert!(rig.worker.is_ready());
        rig
    }

    /// Drains effects, "writing" every transmit; returns bytes written.
    pub fn flush(&mut self) -> usize {
        let mut written = 0;
        while let Some(effect) = self.worker.poll_effect() {
            if let Effect::Transmit { conn } = effect {
                let n = self.worker.transmit_buf(conn).len();
                self.worker.handle_written(self.now, conn, n);
                written += n;
            }
        }
        written
    }

    /// One ping in from the client and out to the upstream, then its pong
    /// (the ping turned into a pong by the caller) back to the client.
    /// `ping` is a client `PerfPing` frame; `pong` is scratch space.
    pub fn round_trip(&mut self, ping: &[u8], pong: &mut Vec<u8>) -> usize {
        self.now = self.now + Nanos(100);
        self.worker.handle_read(self.now, self.client, ping);
        pong.clear();
        pong.extend_from_slice(self.worker.transmit_buf(self.upstream));
        let forwarded = self.flush();
        debug_assert_eq!(forwarded, ping.len());
        pong[crate::msg::offset::OPCODE..crate::msg::offset::OPCODE + 2]
            .copy_from_slice(&crate::msg::OP_PERF_PONG.to_be_bytes());
        self.now = self.now + Nanos(100);
        self.worker.handle_read(self.now, self.upstream, pong);
        forwarded + self.flush()
    }

    /// `input` read on `conn`, and the output it causes written to `sink`;
    /// returns the bytes written. With `lend: Some(k)` the input is lent
    /// as the real driver lends it: each transmit writes at most `k` bytes
    /// from the output's chunks (payloads straight from `input`) while it
    /// is lent, and the rest after it is settled. With `None` it is copied.
    pub fn read_into(
        &mut self,
        conn: ConnId,
        input: &[u8],
        lend: Option<usize>,
        sink: &mut Vec<u8>,
    ) -> usize {
        let mut written = 0;
        if let Some(write_max) = lend {
            self.read_buf.clear();
            self.read_buf.extend_from_slice(input);
            let input = &mut self.read_buf[..];
            self.worker.handle_read_lent(self.now, conn, input);
            while let Some(effect) = self.worker.poll_effect() {
                let Effect::Transmit { conn } = effect else {
                    continue;
                };
                let mut n = 0;
                let chunks = self.worker.transmit_chunks(conn, input, 64);
                for chunk in chunks.into_iter().flatten() {
                    let take = chunk.len().min(write_max - n);
                    sink.extend_from_slice(&chunk[..take]);
                    n += take;
                    if n == write_max {
                        break;
                    }
                }
                self.worker.handle_written(self.now, conn, n);
                written += n;
            }
            self.worker.settle_input(input);
        } else {
            self.worker.handle_read(self.now, conn, input);
        }
        for conn in [self.client, self.upstream] {
            let rest = self.worker.transmit_buf(conn);
            let n = rest.len();
            sink.extend_from_slice(rest);
            self.worker.handle_written(self.now, conn, n);
            written += n;
        }
        self.flush() + written
    }

    /// [`GatewayRig::round_trip`] through [`GatewayRig::read_into`]: `pong`
    /// gets what went upstream (turned into a pong), `delivered` what the
    /// client got back.
    pub fn round_trip_into(
        &mut self,
        ping: &[u8],
        lend: Option<usize>,
        pong: &mut Vec<u8>,
        delivered: &mut Vec<u8>,
    ) -> usize {
        self.now = self.now + Nanos(100);
        pong.clear();
        let forwarded = self.read_into(self.client, ping, lend, pong);
        pong[crate::msg::offset::OPCODE..crate::msg::offset::OPCODE + 2]
            .copy_from_slice(&crate::msg::OP_PERF_PONG.to_be_bytes());
        self.now = self.now + Nanos(100);
        delivered.clear();
        forwarded + self.read_into(self.upstream, pong, lend, delivered)
    }
}

impl Default for GatewayRig {
    fn default() -> Self {
        GatewayRig::new()
    }
}
