//! One `u64` seed, and every random choice of a run derived from it.
//!
//! turmoil gets the seed itself (`rng_seed`); everything the harness and the
//! drivers decide (which worker accepts, how long a handoff waits, when a
//! fault strikes, whether a buggify point fires) draws from a ChaCha stream
//! named by host, purpose and index. Naming the streams keeps the choices of
//! one purpose independent of how many draws another purpose made, so a
//! change in one place does not reshuffle every other decision of the run.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::trace::fnv1a64;

/// The ChaCha stream for (`host`, `purpose`, `index`) of run `seed`.
///
/// `index` separates instances of one purpose: a worker, a host incarnation.
pub fn rng(seed: u64, host: &str, purpose: &str, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut name = fnv1a64(host.as_bytes());
    name ^= fnv1a64(purpose.as_bytes()).rotate_left(21);
    name ^= index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    rng.set_stream(name);
    rng
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn one_name_gives_one_stream_and_other_names_others() {
        let draw = |seed, host, purpose, index| {
            let mut r = rng(seed, host, purpose, index);
            (0..4).map(|_| r.random::<u64>()).collect::<Vec<_>>()
        };
        assert_eq!(
            draw(7, "gateway", "accept", 0),
            draw(7, "gateway", "accept", 0)
        );
        assert_ne!(
            draw(7, "gateway", "accept", 0),
            draw(8, "gateway", "accept", 0)
        );
        assert_ne!(
            draw(7, "gateway", "accept", 0),
            draw(7, "exchange", "accept", 0)
        );
        assert_ne!(
            draw(7, "gateway", "accept", 0),
            draw(7, "gateway", "handoff", 0)
        );
        assert_ne!(
            draw(7, "gateway", "accept", 0),
            draw(7, "gateway", "accept", 1)
        );
    }
}
