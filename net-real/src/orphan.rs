//! Sockets whose sessions are over but whose last bytes may not have reached
//! the peer yet: a lingering close, as web servers do it.
//!
//! When a closing connection's output is all written, the engine's session
//! ends (its slot may be reused at once), but the bytes may still sit in the
//! kernel's send queue, waiting for a peer that reads slowly. Closing the
//! socket then is not safe: input that is unread at the close, or that
//! arrives after it, makes the kernel answer with RST, which throws that
//! queue away, so the peer would never see its last answers and the
//! `Error` that explains the close. So the driver shuts the write side (a
//! FIN after the last byte), keeps the socket, drops what the peer still
//! sends (up to [`CLOSE_DISCARD_BYTES_MAX`]), and closes it when the peer
//! closes its side or the linger runs out.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::Shutdown;

use fep_core::Nanos;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::limits::{CLOSE_DISCARD_BYTES_MAX, ORPHANS_MAX, READS_PER_TURN_MAX};

/// Tag of an orphan's token: `ORPHAN_TAG | generation << SLOT_BITS | slot`
/// (the generation makes an event for a closed orphan miss its successor).
pub(crate) const ORPHAN_TAG: usize = 1 << 61;
const SLOT_BITS: u32 = 20;
const GENERATION_MASK: u32 = (1 << 24) - 1;

const _: () = assert!(ORPHANS_MAX < 1 << SLOT_BITS);

/// One socket whose write side is shut.
#[derive(Debug)]
struct Orphan {
    stream: TcpStream,
    generation: u32,
    /// Input dropped since its connection began closing.
    discarded: usize,
    /// In [`Orphans::ready`]: its read budget ran out with input left.
    queued: bool,
}

/// A worker's orphans: at most [`ORPHANS_MAX`], each until its peer closes
/// or its deadline.
#[derive(Debug, Default)]
pub(crate) struct Orphans {
    slots: Vec<Option<Orphan>>,
    free: Vec<u32>,
    next_generation: u32,
    /// Deadlines, oldest first (one linger for all, so set in due order).
    deadlines: VecDeque<(Nanos, u32, u32)>,
    /// Orphans to read on the next turn without a new event, each once:
    /// their read budget ran out (slot, generation).
    ready: VecDeque<(u32, u32)>,
}

impl Orphans {
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Shuts `stream`'s write side and keeps it, registered for reading,
    /// until `until`. `discarded`: its input dropped so far. Past the bound
    /// (or if it cannot be registered) the socket is closed at once.
    pub(crate) fn adopt(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        discarded: usize,
        until: Nanos,
    ) {
        if self.len() >= ORPHANS_MAX || stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("bounded by ORPHANS_MAX")
            }
        };
        let generation = self.next_generation;
        self.next_generation = (self.next_generation + 1) & GENERATION_MASK;
        let token = token(slot, generation);
        if registry
            .register(&mut stream, token, Interest::READABLE)
            .is_err()
        {
            self.free.push(slot);
            return;
        }
        self.slots[slot as usize] = Some(Orphan {
            stream,
            generation,
            discarded,
            queued: false,
        });
        self.deadlines.push_back((until, slot, generation));
    }

    /// Reads and drops `token`'s input while the bound allows, at most
    /// [`READS_PER_TURN_MAX`] reads a turn like any connection (the rest on
    /// the next turn, see [`Orphans::read_ready`]); closes it at its end.
    /// `buf`: scratch space.
    pub(crate) fn readable(&mut self, registry: &Registry, token: Token, buf: &mut [u8]) {
        let (slot, generation) = parts(token);
        self.read(registry, slot, generation, buf);
    }

    /// Whether an orphan's input waits that no event will announce.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Reads, once each, the orphans whose budget ran out last turn.
    pub(crate) fn read_ready(&mut self, registry: &Registry, buf: &mut [u8]) {
        for _ in 0..self.ready.len() {
            let Some((slot, generation)) = self.ready.pop_front() else {
                return;
            };
            if let Some(o) = self.get_mut(slot, generation) {
                o.queued = false;
                self.read(registry, slot, generation, buf);
            }
        }
    }

    fn read(&mut self, registry: &Registry, slot: u32, generation: u32, buf: &mut [u8]) {
        let Some(o) = self.get_mut(slot, generation) else {
            return;
        };
        let mut reads = 0;
        let ended = loop {
            if o.discarded >= CLOSE_DISCARD_BYTES_MAX {
                break false;
            }
            if reads == READS_PER_TURN_MAX {
                if !o.queued {
                    o.queued = true;
                    self.ready.push_back((slot, generation));
                }
                break false;
            }
            reads += 1;
            match (&o.stream).read(buf) {
                Ok(0) => break true,
                Ok(n) => o.discarded += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        if ended {
            self.remove(registry, slot);
        }
    }

    /// The next deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Nanos> {
        self.deadlines.front().map(|&(at, _, _)| at)
    }

    /// Closes the orphans whose deadline is `now` or earlier; returns how
    /// many were still open.
    pub(crate) fn expire(&mut self, registry: &Registry, now: Nanos) -> u64 {
        let mut expired = 0;
        while let Some(&(at, slot, generation)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            if self.get_mut(slot, generation).is_some() {
                self.remove(registry, slot);
                expired += 1;
            }
        }
        expired
    }

    fn get_mut(&mut self, slot: u32, generation: u32) -> Option<&mut Orphan> {
        self.slots
            .get_mut(slot as usize)?
            .as_mut()
            .filter(|o| o.generation == generation)
    }

    fn remove(&mut self, registry: &Registry, slot: u32) {
        if let Some(mut o) = self.slots[slot as usize].take() {
            let _ = registry.deregister(&mut o.stream);
            self.free.push(slot);
        }
    }
}

fn token(slot: u32, generation: u32) -> Token {
    Token(ORPHAN_TAG | (generation as usize) << SLOT_BITS | slot as usize)
}

fn parts(token: Token) -> (u32, u32) {
    let bits = token.0 & !ORPHAN_TAG;
    // Truncations by design: the token was built from these two fields.
    (
        (bits & ((1 << SLOT_BITS) - 1)) as u32,
        (bits >> SLOT_BITS) as u32 & GENERATION_MASK,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_clear_of_the_connection_tag() {
        for (slot, generation) in [(0, 0), (1, 7), (ORPHANS_MAX as u32 - 1, GENERATION_MASK)] {
            let t = token(slot, generation);
            assert_eq!(parts(t), (slot, generation));
            assert_eq!(t.0 & (1 << 62), 0);
            assert_ne!(t.0 & ORPHAN_TAG, 0);
        }
    }
}
