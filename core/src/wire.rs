//! The two frames every process speaks, whatever its role: `Error` (fatal)
//! and `Reject` (one request refused, the connection stays up).

use crate::error::{ErrorCode, Fault};
use crate::frame::FrameWriter;
use crate::limits::REASON_LEN_MAX;

/// Opcode of `Error`.
pub const OP_ERROR: u16 = 1;
/// Opcode of `Reject`.
pub const OP_REJECT: u16 = 2;
/// Opcode of `Heartbeat` (empty payload, after the hand-shake). The worker
/// answers it itself on an accepted connection; see
/// [`crate::WorkerConfig::heartbeat_interval`] for the dialling side.
pub const OP_HEARTBEAT: u16 = 3;
/// A whole `Heartbeat` frame: length 2 (the opcode alone), opcode 3.
pub const HEARTBEAT_FRAME: [u8; 6] = [0, 0, 0, 2, 0, 3];

/// `Error{code, reason}`: the sender closes the connection after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorMsg<'a> {
    /// Why.
    pub code: ErrorCode,
    /// Human-readable detail, at most 256 bytes of UTF-8.
    pub reason: &'a str,
}

/// `Reject{code, seq, reason}`: the answer to request `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectMsg<'a> {
    /// Why.
    pub code: ErrorCode,
    /// The refused request.
    pub seq: u64,
    /// Human-readable detail, at most 256 bytes of UTF-8.
    pub reason: &'a str,
}

/// `reason` cut to at most [`REASON_LEN_MAX`] bytes on a character boundary.
pub fn clip_reason(reason: &str) -> &str {
    if reason.len() <= REASON_LEN_MAX {
        return reason;
    }
    let mut end = REASON_LEN_MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

fn decode_reason(opcode: u16, bytes: &[u8]) -> Result<&str, Fault> {
    if bytes.len() > REASON_LEN_MAX {
        return Err(Fault::Malformed {
            opcode,
            what: "reason longer than 256 bytes",
        });
    }
    std::str::from_utf8(bytes).map_err(|_| Fault::Malformed {
        opcode,
        what: "reason is not UTF-8",
    })
}

impl<'a> ErrorMsg<'a> {
    /// Decodes the payload of an `Error` frame.
    pub fn decode(payload: &'a [u8]) -> Result<ErrorMsg<'a>, Fault> {
        let Some((code, reason)) = payload.split_first_chunk::<2>() else {
            return Err(Fault::Malformed {
                opcode: OP_ERROR,
                what: "Error shorter than 2 bytes",
            });
        };
        let code = ErrorCode::from_u16(u16::from_be_bytes(*code));
        Ok(ErrorMsg {
            code,
            reason: decode_reason(OP_ERROR, reason)?,
        })
    }

    /// Appends the frame to `out`; the reason is clipped to 256 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        let mut w = FrameWriter::new(out, OP_ERROR);
        w.put_u16(self.code.to_u16())
            .put_slice(clip_reason(self.reason).as_bytes());
        w.finish()
    }
}

impl<'a> RejectMsg<'a> {
    /// Decodes the payload of a `Reject` frame.
    pub fn decode(payload: &'a [u8]) -> Result<RejectMsg<'a>, Fault> {
        let Some((head, reason)) = payload.split_first_chunk::<10>() else {
            return Err(Fault::Malformed {
                opcode: OP_REJECT,
                what: "Reject shorter than 10 bytes",
            });
        };
        let code = ErrorCode::from_u16(u16::from_be_bytes([head[0], head[1]]));
        let seq = u64::from_be_bytes(head[2..10].try_into().expect("8 bytes"));
        Ok(RejectMsg {
            code,
            seq,
            reason: decode_reason(OP_REJECT, reason)?,
        })
    }

    /// Appends the frame to `out`; the reason is clipped to 256 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        let mut w = FrameWriter::new(out, OP_REJECT);
        w.put_u16(self.code.to_u16())
            .put_u64(self.seq)
            .put_slice(clip_reason(self.reason).as_bytes());
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Decoder;

    #[test]
    fn reject_round_trips_and_has_the_documented_layout() {
        let mut out = Vec::new();
        let msg = RejectMsg {
            code: ErrorCode::UpstreamUnavailable,
            seq: 7,
            reason: "down",
        };
        msg.encode(&mut out);
        assert_eq!(
            &out[..16],
            &[0, 0, 0, 16, 0, 2, 0, 6, 0, 0, 0, 0, 0, 0, 0, 7]
        );
        let mut d = Decoder::new(1024);
        let mut frames = d.frames(&out);
        let f = frames.next().unwrap().unwrap();
        assert_eq!(RejectMsg::decode(f.payload), Ok(msg));
    }

    #[test]
    fn long_reasons_are_clipped_on_a_char_boundary() {
        let reason = "é".repeat(200);
        let clipped = clip_reason(&reason);
        assert!(clipped.len() <= REASON_LEN_MAX);
        assert_eq!(clipped.len(), 256);
        let mut out = Vec::new();
        ErrorMsg {
            code: ErrorCode::Malformed,
            reason: &reason,
        }
        .encode(&mut out);
        assert_eq!(out.len(), 4 + 2 + 2 + 256);
    }

    #[test]
    fn error_payload_checks_are_typed() {
        assert!(matches!(
            ErrorMsg::decode(&[0]),
            Err(Fault::Malformed { .. })
        ));
        assert!(matches!(
            ErrorMsg::decode(&[0, 1, 0xff]),
            Err(Fault::Malformed { .. })
        ));
        assert!(matches!(
            ErrorMsg::decode(&[0, 1, b'x']),
            Ok(ErrorMsg {
                code: ErrorCode::FrameTooLarge,
                ..
            })
        ));
    }
}
