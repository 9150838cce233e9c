//! The ecology simulation: pure and synchronous, no I/O.
//!
//! [`tick`] turns a cell's state and the tick's inputs (arriving migrants, captures and breed
//! requests from intake) into the next state, the migrants to send to neighbouring cells, the
//! creatures that died or were culled or captured, the births and the news. Randomness comes
//! only from a ChaCha stream seeded by (cell UID, tick number) ([`tick_seed`]), so running the
//! same tick on the same state again yields a byte-identical outcome.

mod cell;
mod creature;
mod describe;
mod news;
mod rng;
mod tick;

pub use cell::{
    CELL_UID_DEPTH, CellState, Founders, MAX_NEIGHBOURS, MAX_POPULATION_CAP, census, genesis,
};
pub use creature::{Creature, CreatureId, GENE_COUNT, GENE_MAX, Genome, Lineage};
pub use describe::{describe, lineage_name};
pub use news::{NewsEvent, NewsKind};
pub use rng::tick_seed;
pub use tick::{
    Birth, BreedRequest, CaptureRequest, Captured, CullReason, Culled, InputKind,
    MAX_INPUTS_PER_KIND, Migrant, RejectReason, Rejection, TickCounts, TickInputs, TickOutcome,
    tick,
};

#[cfg(test)]
mod tests;
