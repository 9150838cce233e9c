//! The tick's random stream: ChaCha8 seeded from a SHA-256 of (cell UID, tick number).
//!
//! The same cell and tick always yield the same stream, so a re-delivered tick message run on
//! the same state reproduces the outcome byte for byte. Only `next_u32` of the ChaCha stream is
//! used (helpers below map it to ranges), so results do not depend on how `rand` happens to
//! implement its distributions in some future version.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use worldfleet_domain::PartitionUid;

/// Domain separation for the seed hash; bump the version to change every stream on purpose.
const SEED_DOMAIN: &[u8] = b"worldfleet/ecology/tick/v1";

/// The 32-byte seed of `cell`'s tick `tick`.
pub fn tick_seed(cell: &PartitionUid, tick: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(SEED_DOMAIN);
    hasher.update([0]);
    hasher.update(cell.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(tick.to_be_bytes());
    hasher.finalize().into()
}

/// The random stream of one tick of one cell.
pub(crate) struct TickRng(ChaCha8Rng);

impl TickRng {
    /// The stream for `cell` at `tick`.
    pub(crate) fn for_tick(cell: &PartitionUid, tick: u64) -> Self {
        Self(ChaCha8Rng::from_seed(tick_seed(cell, tick)))
    }

    /// A value in `0..bound` (0 when `bound` is 0), by a widening multiply.
    pub(crate) fn below(&mut self, bound: u32) -> u32 {
        ((u64::from(self.0.next_u32()) * u64::from(bound)) >> 32) as u32
    }

    /// A value in `low..=high` (`low` when `high <= low`).
    pub(crate) fn between(&mut self, low: u32, high: u32) -> u32 {
        if high <= low {
            return low;
        }
        let span = u64::from(high - low) + 1;
        low + ((u64::from(self.0.next_u32()) * span) >> 32) as u32
    }

    /// True with probability `permille / 1000`.
    pub(crate) fn chance_permille(&mut self, permille: u32) -> bool {
        self.below(1000) < permille
    }

    /// Fisher–Yates shuffle driven by this stream.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            let other = self.below(index as u32 + 1) as usize;
            items.swap(index, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_on_cell_and_tick_only() {
        let cell = PartitionUid::parse("r/z/c").unwrap();
        let other = PartitionUid::parse("r/z/d").unwrap();
        let draw = |cell: &PartitionUid, tick| {
            let mut rng = TickRng::for_tick(cell, tick);
            (0..8).map(|_| rng.below(1_000_000)).collect::<Vec<_>>()
        };
        assert_eq!(draw(&cell, 3), draw(&cell, 3));
        assert_ne!(draw(&cell, 3), draw(&cell, 4));
        assert_ne!(draw(&cell, 3), draw(&other, 3));
    }

    #[test]
    fn helpers_stay_in_range() {
        let mut rng = TickRng::for_tick(&PartitionUid::parse("r/z/c").unwrap(), 1);
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.between(5, 5), 5);
        for _ in 0..1000 {
            assert!(rng.below(7) < 7);
            assert!((3..=9).contains(&rng.between(3, 9)));
        }
        assert!(!rng.chance_permille(0));
        assert!(rng.chance_permille(1000));
        let mut items: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut items);
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }
}
