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
}

impl Default for GatewayRig {
    fn default() -> Self {
        GatewayRig::new()
    }
}
