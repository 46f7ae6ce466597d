//! Errors of the peer (faults) and the protocol's error codes they map to.
//!
//! A [`Fault`] is always the peer's doing: bad bytes, a message in the wrong
//! state, a refused role, a backlog it will not read. The engine answers it
//! with the documented frame; it never panics on one. A broken invariant of
//! our own is a bug and panics instead.

use std::fmt;

use crate::state::ConnState;

/// The error codes of PROTOCOL.md, as carried by `Error` and `Reject` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `length > max_frame`.
    FrameTooLarge,
    /// A frame or payload of the wrong shape.
    Malformed,
    /// An opcode this process does not handle.
    UnknownOpcode,
    /// A message not allowed in the connection's state.
    Unexpected,
    /// A role, version or token this port refuses.
    RoleRefused,
    /// No live upstream for the request (a `Reject`).
    UpstreamUnavailable,
    /// Output backlog past its bound (`Error`) or a shed request (`Reject`).
    Overloaded,
    /// The process is draining.
    ShuttingDown,
    /// No valid hand-shake within the deadline, or a peer silent past the
    /// liveness deadline (`Error`).
    Timeout,
    /// A pre-trade check refused the order (`Reject`, gateway).
    RiskLimit,
    /// A cancel or replace names no open order of that account (`Reject`).
    UnknownOrder,
    /// A `cl_ord_id` not above the account's mark (`Reject`).
    DuplicateId,
    /// An unknown account, instrument or asset, or a bad field (`Reject`).
    InvalidOrder,
    /// The account cannot lock what the order needs (`Reject`).
    InsufficientBalance,
    /// A code this build does not know (kept so a peer's frame round-trips).
    Other(u16),
}

impl ErrorCode {
    /// The code on the wire.
    pub const fn to_u16(self) -> u16 {
        match self {
            ErrorCode::FrameTooLarge => 1,
            ErrorCode::Malformed => 2,
            ErrorCode::UnknownOpcode => 3,
            ErrorCode::Unexpected => 4,
            ErrorCode::RoleRefused => 5,
            ErrorCode::UpstreamUnavailable => 6,
            ErrorCode::Overloaded => 7,
            ErrorCode::ShuttingDown => 8,
            ErrorCode::Timeout => 9,
            ErrorCode::RiskLimit => 10,
            ErrorCode::UnknownOrder => 11,
            ErrorCode::DuplicateId => 12,
            ErrorCode::InvalidOrder => 13,
            ErrorCode::InsufficientBalance => 14,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code read from the wire.
    pub const fn from_u16(code: u16) -> ErrorCode {
        match code {
            1 => ErrorCode::FrameTooLarge,
            2 => ErrorCode::Malformed,
            3 => ErrorCode::UnknownOpcode,
            4 => ErrorCode::Unexpected,
            5 => ErrorCode::RoleRefused,
            6 => ErrorCode::UpstreamUnavailable,
            7 => ErrorCode::Overloaded,
            8 => ErrorCode::ShuttingDown,
            9 => ErrorCode::Timeout,
            10 => ErrorCode::RiskLimit,
            11 => ErrorCode::UnknownOrder,
            12 => ErrorCode::DuplicateId,
            13 => ErrorCode::InvalidOrder,
            14 => ErrorCode::InsufficientBalance,
            other => ErrorCode::Other(other),
        }
    }

    /// The name PROTOCOL.md gives the code.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::Malformed => "MALFORMED",
            ErrorCode::UnknownOpcode => "UNKNOWN_OPCODE",
            ErrorCode::Unexpected => "UNEXPECTED",
            ErrorCode::RoleRefused => "ROLE_REFUSED",
            ErrorCode::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::RiskLimit => "RISK_LIMIT",
            ErrorCode::UnknownOrder => "UNKNOWN_ORDER",
            ErrorCode::DuplicateId => "DUPLICATE_ID",
            ErrorCode::InvalidOrder => "INVALID_ORDER",
            ErrorCode::InsufficientBalance => "INSUFFICIENT_BALANCE",
            ErrorCode::Other(_) => "OTHER",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A framing error: the byte stream cannot be cut into frames any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The length field is below 2: there is no room for an opcode.
    TooShort {
        /// The length field as received.
        length: u32,
    },
    /// The length field is above the configured `max_frame`.
    TooLarge {
        /// The length field as received.
        length: u32,
        /// The configured `max_frame`.
        max: u32,
    },
}

/// Why a connection is failed by the peer's fault. Every fault is fatal to
/// its connection: the engine sends `Error{code}` and closes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The length field is above `max_frame`.
    FrameTooLarge {
        /// The length field as received.
        length: u32,
        /// The configured `max_frame`.
        max: u32,
    },
    /// The length field is below 2.
    FrameTooShort {
        /// The length field as received.
        length: u32,
    },
    /// A payload of the wrong shape for its opcode.
    Malformed {
        /// The frame's opcode.
        opcode: u16,
        /// What is wrong with it.
        what: &'static str,
    },
    /// An opcode this process does not handle.
    UnknownOpcode {
        /// The frame's opcode.
        opcode: u16,
    },
    /// A known message that the connection's state does not allow.
    Unexpected {
        /// The frame's opcode.
        opcode: u16,
        /// The connection's state when it arrived.
        state: ConnState,
    },
    /// A well-formed message that answers nothing we asked (a pong that is
    /// not the oldest ping in flight, say).
    Unsolicited {
        /// The frame's opcode.
        opcode: u16,
        /// What does not match.
        what: &'static str,
    },
    /// A role, version or token this port refuses.
    RoleRefused {
        /// What was refused.
        what: &'static str,
    },
    /// The peer's unsent output passed its bound.
    Overloaded {
        /// Bytes waiting to be written.
        backlog: usize,
        /// The bound.
        max: usize,
    },
    /// An accepted connection sent no valid `RoleHelloReq` within the
    /// hand-shake deadline.
    HelloTimeout {
        /// The deadline, in nanoseconds after the connection opened.
        timeout_ns: u64,
    },
    /// A dialled peer sent nothing at all for too long (heartbeats
    /// unanswered).
    Silent {
        /// How long nothing arrived, in nanoseconds.
        silent_ns: u64,
    },
}

impl Fault {
    /// The protocol code the fault is reported with.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Fault::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            Fault::FrameTooShort { .. } | Fault::Malformed { .. } => ErrorCode::Malformed,
            Fault::UnknownOpcode { .. } => ErrorCode::UnknownOpcode,
            Fault::Unexpected { .. } | Fault::Unsolicited { .. } => ErrorCode::Unexpected,
            Fault::RoleRefused { .. } => ErrorCode::RoleRefused,
            Fault::Overloaded { .. } => ErrorCode::Overloaded,
            Fault::HelloTimeout { .. } | Fault::Silent { .. } => ErrorCode::Timeout,
        }
    }
}

impl From<FrameError> for Fault {
    fn from(e: FrameError) -> Fault {
        match e {
            FrameError::TooShort { length } => Fault::FrameTooShort { length },
            FrameError::TooLarge { length, max } => Fault::FrameTooLarge { length, max },
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::FrameTooLarge { length, max } => {
                write!(f, "frame length {length} exceeds max_frame {max}")
            }
            Fault::FrameTooShort { length } => {
                write!(f, "frame length {length} is below 2 (no opcode)")
            }
            Fault::Malformed { opcode, what } => write!(f, "opcode {opcode}: {what}"),
            Fault::UnknownOpcode { opcode } => write!(f, "unknown opcode {opcode}"),
            Fault::Unexpected { opcode, state } => {
                write!(f, "opcode {opcode} not allowed in state {state}")
            }
            Fault::Unsolicited { opcode, what } => write!(f, "opcode {opcode}: {what}"),
            Fault::RoleRefused { what } => write!(f, "refused: {what}"),
            Fault::Overloaded { backlog, max } => {
                write!(f, "output backlog {backlog} bytes passed the bound {max}")
            }
            Fault::HelloTimeout { timeout_ns } => {
                write!(
                    f,
                    "no valid RoleHelloReq within {} ms",
                    timeout_ns / 1_000_000
                )
            }
            Fault::Silent { silent_ns } => {
                write!(f, "nothing received for {} ms", silent_ns / 1_000_000)
            }
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Fault::from(*self).fmt(f)
    }
}

impl std::error::Error for Fault {}
impl std::error::Error for FrameError {}
