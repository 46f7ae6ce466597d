//! The exchange role: accepts gateways and clients, answers each `PerfPing`
//! with a `PerfPong` stamped with `t3`, everything else echoed.

use fep_core::frame::encode_frame;
use fep_core::wire::{OP_ERROR, OP_REJECT};
use fep_core::{ConnId, Context, ErrorCode, Fault, Handler, Service, Session, StateSet};

use crate::hello::Admission;
use crate::msg::{
    offset, patch_u64, PerfPing, OP_PERF_PING, OP_PERF_PONG, OP_ROLE_HELLO_ACK, OP_ROLE_HELLO_REQ,
};
use crate::Role;

/// Settings of the exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExchangeConfig {
    /// The token peers must present, if any.
    pub token: Option<String>,
}

/// Counters of one exchange worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Pongs sent.
    pub pongs: u64,
    /// Pings refused while draining.
    pub rejects: u64,
    /// Sessions closed.
    pub closed: u64,
}

/// One exchange worker's service.
#[derive(Debug)]
pub struct Exchange {
    admission: Admission,
    draining: bool,
    stats: ExchangeStats,
}

impl Exchange {
    /// An exchange accepting roles `gateway` and `client`.
    pub fn new(config: ExchangeConfig) -> Exchange {
        let admission = Admission {
            roles: vec![Role::Gateway, Role::Client],
            token: config.token,
        };
        Exchange {
            admission,
            draining: false,
            stats: ExchangeStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ExchangeStats {
        self.stats
    }

    fn on_hello(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        self.admission.accept(cx, conn, payload, Role::Exchange)
    }

    fn on_ping(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let ping = PerfPing::decode(OP_PERF_PING, payload)?;
        if self.draining {
            self.stats.rejects += 1;
            cx.reject(
                conn,
                ErrorCode::ShuttingDown,
                ping.seq,
                "exchange is draining",
            );
            return Ok(());
        }
        let t3 = cx.now().as_u64();
        cx.send(conn, 6 + payload.len(), |out| {
            let start = out.len();
            encode_frame(out, OP_PERF_PONG, payload);
            patch_u64(&mut out[start..], offset::T3, t3);
        });
        self.stats.pongs += 1;
        // Backpressure: a peer whose pongs pile up unsent is not read until
        // they drain, so a gateway that reads slowly for a moment is slowed
        // down by TCP rather than cut.
        if cx.session(conn).is_some_and(|s| s.output_high()) {
            cx.pause_input(conn);
        }
        Ok(())
    }

    fn on_error(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        _: &[u8],
    ) -> Result<(), Fault> {
        cx.close(conn);
        Ok(())
    }
}

impl Service for Exchange {
    type Data = ();

    const HANDLERS: &'static [Handler<Self>] = &[
        Handler {
            opcode: OP_ERROR,
            allowed: StateSet::LIVE,
            handle: Exchange::on_error,
        },
        Handler {
            opcode: OP_REJECT,
            allowed: StateSet::NONE,
            handle: |_, _, _, _| Ok(()),
        },
        Handler {
            opcode: OP_ROLE_HELLO_REQ,
            allowed: StateSet::ACCEPTED,
            handle: Exchange::on_hello,
        },
        Handler {
            opcode: OP_ROLE_HELLO_ACK,
            allowed: StateSet::NONE,
            handle: |_, _, _, _| Ok(()),
        },
        Handler {
            opcode: OP_PERF_PING,
            allowed: StateSet::SERVING,
            handle: Exchange::on_ping,
        },
        Handler {
            opcode: OP_PERF_PONG,
            allowed: StateSet::NONE,
            handle: |_, _, _, _| Ok(()),
        },
    ];

    fn on_close(&mut self, _: &mut Context<'_, Self>, _: ConnId, _: Session<()>) {
        self.stats.closed += 1;
    }

    fn on_shutdown(&mut self, _: &mut Context<'_, Self>) {
        self.draining = true;
    }

    fn on_drained(&mut self, cx: &mut Context<'_, Self>, conn: ConnId) {
        cx.resume_input(conn);
    }

    fn is_done(&self) -> bool {
        // Pings are answered as they arrive: nothing is ever in flight here.
        self.draining
    }
}
