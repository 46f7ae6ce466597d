//! The wire as the drivers see it: every byte written or read is decoded a
//! second time, apart from the state machines, into [`WireEvent`]s. The
//! invariant checker reads those, not the roles' own accounts, so a role
//! that lies about what it sent is still caught.

use crate::oracle::StreamReader;
use crate::trace::{Dir, WireEvent};

/// The two readers of one connection, from [`crate::oracle`]: the
/// checker's own decoder, which shares no parsing code with the product.
#[derive(Debug, Default)]
pub struct ConnObserver {
    out: StreamReader,
    input: StreamReader,
    /// The input again, as it is handed to the worker (after any hold of a
    /// paused connection): when the worker handled each frame.
    handed: StreamReader,
    /// A stream that does not decode is not followed further; the state
    /// machine reports its own framing faults.
    broken: bool,
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
        let reader = match dir {
            Dir::Out => &mut self.out,
            Dir::In => &mut self.input,
        };
        Self::decode(reader, &mut self.broken, dir, bytes, template, &mut emit);
    }

    /// Decodes `bytes` read earlier and handed to the worker now: every
    /// whole frame was handled at `template.at` (a worker dispatches every
    /// whole frame of a read before it returns).
    pub fn handed(&mut self, bytes: &[u8], template: WireEvent, mut emit: impl FnMut(WireEvent)) {
        if self.broken {
            return;
        }
        Self::decode(
            &mut self.handed,
            &mut self.broken,
            Dir::In,
            bytes,
            template,
            &mut emit,
        );
    }

    fn decode(
        reader: &mut StreamReader,
        broken: &mut bool,
        dir: Dir,
        bytes: &[u8],
        template: WireEvent,
        emit: &mut impl FnMut(WireEvent),
    ) {
        let pushed = reader.push(bytes, |seen| {
            emit(WireEvent {
                dir,
                opcode: seen.opcode,
                seq: seen.seq,
                route: seen.route,
                t: seen.t,
                pad: seen.pad,
                code: seen.code,
                order: seen.order,
                ..template
            })
        });
        if pushed.is_err() {
            *broken = true;
        }
    }
}
