//! The creature model: identity, species, genome, age, energy and lineage.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{EcologyError, Result};
use crate::rules::SpeciesRules;

/// Largest value of one gene.
pub const GENE_MAX: u8 = 15;
/// Number of genes in a genome.
pub const GENE_COUNT: usize = 5;
/// Longest creature id accepted, in bytes.
pub const MAX_CREATURE_ID_BYTES: usize = 192;

/// A creature's id: unique across the world and stable for its whole life, across migrations.
///
/// Ids are minted deterministically as `{cell}~{tick}~{ordinal}` (the cell and tick of birth
/// and the birth's ordinal in that tick), so a re-run of a tick mints the same ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CreatureId(String);

impl CreatureId {
    /// The id of the `ordinal`-th creature born in `cell` at `tick`.
    pub fn mint(cell: &str, tick: u64, ordinal: u32) -> Self {
        Self(format!("{cell}~{tick}~{ordinal}"))
    }

    /// Validates an id read from a message: 1–192 bytes of `[A-Za-z0-9._:/~-]`.
    pub fn parse(raw: &str) -> Result<Self> {
        if is_valid_id(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(EcologyError::InvalidCell {
                cell: String::new(),
                reason: format!("invalid creature id {:?}", truncate(raw)),
            })
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the id is well formed (see [`CreatureId::parse`]).
    pub fn is_valid(&self) -> bool {
        is_valid_id(&self.0)
    }
}

fn is_valid_id(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= MAX_CREATURE_ID_BYTES
        && raw
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._:/~-".contains(&byte))
}

fn truncate(raw: &str) -> String {
    raw.chars().take(MAX_CREATURE_ID_BYTES).collect()
}

impl fmt::Display for CreatureId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Five small integer genes, each `0..=15`.
///
/// * `vigour` — forage bonus `vigour / 4` per tick;
/// * `size` — energy ceiling `+ 5 × size`, upkeep `+ size / 4`;
/// * `fertility` — birth chance `× (8 + fertility) / 16` (pair mean);
/// * `wanderlust` — migration chance `× (1 + wanderlust) / 8`;
/// * `hardiness` — lifespan `+ lifespan × hardiness / 32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genome {
    pub vigour: u8,
    pub size: u8,
    pub fertility: u8,
    pub wanderlust: u8,
    pub hardiness: u8,
}

impl Genome {
    /// Gene names in array order.
    pub const NAMES: [&'static str; GENE_COUNT] =
        ["vigour", "size", "fertility", "wanderlust", "hardiness"];

    /// The genes in a fixed order (the order of [`Genome::NAMES`]).
    pub fn to_array(self) -> [u8; GENE_COUNT] {
        [
            self.vigour,
            self.size,
            self.fertility,
            self.wanderlust,
            self.hardiness,
        ]
    }

    /// A genome from genes in [`Genome::NAMES`] order; values above [`GENE_MAX`] are clamped.
    pub fn from_array(genes: [u8; GENE_COUNT]) -> Self {
        let [vigour, size, fertility, wanderlust, hardiness] = genes.map(|gene| gene.min(GENE_MAX));
        Self {
            vigour,
            size,
            fertility,
            wanderlust,
            hardiness,
        }
    }

    /// True when every gene is within `0..=15`.
    pub fn is_valid(self) -> bool {
        self.to_array().iter().all(|gene| *gene <= GENE_MAX)
    }
}

/// Where a creature comes from. Kept intact across migrations so lineages hand off across cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    /// The two parents (none for founders).
    pub parents: Vec<CreatureId>,
    /// The founder of the line: a founder itself, or the first creature of a line founded by
    /// mutation (see `Rules::new_lineage_mutations`).
    pub root: CreatureId,
    /// Generations since the first founders (founders are 0; a child is one more than its
    /// older parent's generation).
    pub generation: u32,
}

/// One creature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Creature {
    pub id: CreatureId,
    /// Species key in the rules.
    pub species: String,
    pub genes: Genome,
    /// Age in ticks.
    pub age: u32,
    /// Current energy; a creature at 0 after its upkeep starves.
    pub energy: u32,
    pub lineage: Lineage,
}

impl Creature {
    /// Age at which this creature dies of old age (lifespan plus the hardiness bonus).
    pub fn lifespan(&self, species: &SpeciesRules) -> u32 {
        species.lifespan_ticks + species.lifespan_ticks / 32 * u32::from(self.genes.hardiness)
    }

    /// This creature's energy ceiling (species ceiling plus the size bonus).
    pub fn max_energy(&self, species: &SpeciesRules) -> u32 {
        species.max_energy + 5 * u32::from(self.genes.size)
    }

    /// True when the creature is old enough to breed and migrate.
    pub fn is_adult(&self, species: &SpeciesRules) -> bool {
        self.age >= species.maturity_ticks
    }

    /// How close this creature is to dying, per-mille of life used plus per-mille of energy
    /// missing (0..=2000); the cap culls the frailest first.
    pub fn frailty(&self, species: &SpeciesRules) -> u32 {
        let lifespan = self.lifespan(species).max(1);
        let life_used = (u64::from(self.age) * 1000 / u64::from(lifespan)).min(1000) as u32;
        let ceiling = self.max_energy(species).max(1);
        let energy_left = (u64::from(self.energy) * 1000 / u64::from(ceiling)).min(1000) as u32;
        life_used + (1000 - energy_left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_minted_deterministically_and_validated() {
        let id = CreatureId::mint("realm/zone/cell-1", 7, 2);
        assert_eq!(id.as_str(), "realm/zone/cell-1~7~2");
        assert!(id.is_valid());
        assert!(CreatureId::parse("").is_err());
        assert!(CreatureId::parse("a b").is_err());
        assert!(CreatureId::parse(&"x".repeat(193)).is_err());
    }

    #[test]
    fn genome_round_trips_and_clamps() {
        let genome = Genome::from_array([1, 2, 3, 4, 200]);
        assert_eq!(genome.hardiness, GENE_MAX);
        assert_eq!(Genome::from_array(genome.to_array()), genome);
        let bad = Genome {
            vigour: 16,
            ..genome
        };
        assert!(!bad.is_valid());
    }
}
