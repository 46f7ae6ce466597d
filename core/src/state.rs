//! Connection states, and the sets of them that a handler declares.

use std::fmt;

/// Which end of the connection this process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// We accepted it: the peer must say `RoleHelloReq` first.
    Acceptor,
    /// We dialled it: we say `RoleHelloReq` and wait for the ack.
    Initiator,
}

/// How far the connection's life has gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Being dialled: the session exists (the caller of
    /// [`crate::Context::connect`] holds its id) but no byte can flow yet.
    Connecting,
    /// Open, hand-shake not done.
    Connected,
    /// Hand-shake done: the connection carries traffic.
    Handshaked,
    /// Failed or finished: its input is ignored, its output drains, the driver
    /// closes it.
    Closing,
}

/// The state a handler is checked against: a side and a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnState {
    /// Which end we are.
    pub side: Side,
    /// How far the connection has gone.
    pub phase: Phase,
}

impl ConnState {
    const fn bit(self) -> u8 {
        let side = match self.side {
            Side::Acceptor => 0,
            Side::Initiator => 4,
        };
        let phase = match self.phase {
            Phase::Connected => 0,
            Phase::Handshaked => 1,
            Phase::Closing => 2,
            Phase::Connecting => 3,
        };
        1 << (side + phase)
    }
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match (self.side, self.phase) {
            (Side::Acceptor, Phase::Connected) => "accepted",
            (Side::Acceptor, Phase::Handshaked) => "serving",
            (Side::Initiator, Phase::Connected) => "dialing",
            (Side::Initiator, Phase::Handshaked) => "upstream",
            (_, Phase::Closing) => "closing",
            (_, Phase::Connecting) => "connecting",
        };
        f.write_str(name)
    }
}

/// A set of [`ConnState`]s: where a handler may run.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateSet(u8);

impl StateSet {
    /// No state: the message is known but never allowed here.
    pub const NONE: StateSet = StateSet(0);
    /// Accepted, waiting for the peer's `RoleHelloReq`.
    pub const ACCEPTED: StateSet = StateSet::of(Side::Acceptor, Phase::Connected);
    /// Accepted and hand-shaked.
    pub const SERVING: StateSet = StateSet::of(Side::Acceptor, Phase::Handshaked);
    /// Dialled, our `RoleHelloReq` sent, waiting for the ack.
    pub const DIALING: StateSet = StateSet::of(Side::Initiator, Phase::Connected);
    /// Dialled and hand-shaked.
    pub const UPSTREAM: StateSet = StateSet::of(Side::Initiator, Phase::Handshaked);
    /// Every live (not closing) state.
    pub const LIVE: StateSet = StateSet::ACCEPTED
        .union(StateSet::SERVING)
        .union(StateSet::DIALING)
        .union(StateSet::UPSTREAM);

    /// The set of one state.
    pub const fn of(side: Side, phase: Phase) -> StateSet {
        StateSet(ConnState { side, phase }.bit())
    }

    /// Both sets.
    pub const fn union(self, other: StateSet) -> StateSet {
        StateSet(self.0 | other.0)
    }

    /// Whether `state` is in the set.
    pub const fn contains(self, state: ConnState) -> bool {
        self.0 & state.bit() != 0
    }
}

impl fmt::Debug for StateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        for side in [Side::Acceptor, Side::Initiator] {
            for phase in [
                Phase::Connecting,
                Phase::Connected,
                Phase::Handshaked,
                Phase::Closing,
            ] {
                let state = ConnState { side, phase };
                if self.contains(state) {
                    set.entry(&format_args!("{state}"));
                }
            }
        }
        set.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_sets_hold_exactly_their_members() {
        let serving = ConnState {
            side: Side::Acceptor,
            phase: Phase::Handshaked,
        };
        let dialing = ConnState {
            side: Side::Initiator,
            phase: Phase::Connected,
        };
        assert!(StateSet::SERVING.contains(serving));
        assert!(!StateSet::SERVING.contains(dialing));
        assert!(StateSet::LIVE.contains(dialing));
        let closing = ConnState {
            side: Side::Acceptor,
            phase: Phase::Closing,
        };
        assert!(!StateSet::LIVE.contains(closing));
        assert!(!StateSet::NONE.contains(serving));
    }
}
