//! The wire as the drivers see it: every byte written or read is decoded a
//! second time, apart from the state machines, into [`WireEvent`]s. The
//! invariant checker reads those, not the roles' own accounts, so a role
//! that lies about what it sent is still caught.

use fep_core::limits::FRAME_LENGTH_MAX_CEILING;
use fep_core::Decoder;
use fep_trading::msg::Message;

use crate::trace::{fnv1a64, Dir, WireEvent};

/// The two decoders of one connection.
#[derive(Debug)]
pub struct ConnObserver {
    out: Decoder,
    input: Decoder,
    /// A stream that does not decode is not followed further; the state
    /// machine reports its own framing faults.
    broken: bool,
}

impl Default for ConnObserver {
    fn default() -> Self {
        ConnObserver {
            out: Decoder::new(FRAME_LENGTH_MAX_CEILING),
            input: Decoder::new(FRAME_LENGTH_MAX_CEILING),
            broken: false,
        }
    }
}

impl ConnObserver {
    /// Decodes `bytes` that went `dir`; calls `emit` with `template` filled
    /// in for every whole frame. `template` carries time, host, worker and
    /// connection.
    pub fn observe(
        &mut self,
        dir: Dir,
        bytes: &[u8],
        template: WireEvent,
        mut emit: impl FnMut(WireEvent),
    ) {
        if self.broken {
            return;
        }
        let decoder = match dir {
            Dir::Out => &mut self.out,
            Dir::In => &mut self.input,
        };
        let mut frames = decoder.frames(bytes);
        while let Some(frame) = frames.next() {
            let Ok(frame) = frame else {
                self.broken = true;
                return;
            };
            let mut event = WireEvent {
                dir,
                opcode: frame.opcode,
                ..template
            };
            match Message::decode(frame) {
                Ok(Message::PerfPing(p) | Message::PerfPong(p)) => {
                    event.seq = p.seq;
                    event.route = p.route;
                    event.t = [p.t1.0, p.t2.0, p.t3.0, p.t4.0];
                    event.pad = fnv1a64(p.pad);
                }
                Ok(Message::Reject(r)) => {
                    event.seq = r.seq;
                    event.code = r.code.to_u16();
                }
                Ok(Message::Error(e)) => event.code = e.code.to_u16(),
                Ok(Message::RoleHelloReq(_) | Message::RoleHelloAck(_)) | Err(_) => {}
            }
            emit(event);
        }
    }
}
