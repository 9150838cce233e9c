//! A cell's state (the row a shell stores under the cell UID) and the genesis of a new cell.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use worldfleet_domain::PartitionUid;

use super::creature::{Creature, CreatureId, Lineage};
use super::rng::TickRng;
use crate::error::{EcologyError, Result};
use crate::rules::Rules;

/// Depth of a cell UID: `realm/zone/cell`.
pub const CELL_UID_DEPTH: usize = 3;
/// Largest population cap a cell may have.
pub const MAX_POPULATION_CAP: u32 = 10_000;
/// Most neighbours a cell may have.
pub const MAX_NEIGHBOURS: usize = 16;

/// Everything one cell's tick reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellState {
    /// The cell's UID, `realm/zone/cell`.
    pub cell: PartitionUid,
    /// The last tick applied (0: genesis, no tick yet). The next tick must be `tick + 1`.
    pub tick: u64,
    /// Most creatures the cell holds after a tick; the excess is culled, frailest first.
    pub population_cap: u32,
    /// Cells migrants may leave for (never the cell itself).
    pub neighbours: Vec<PartitionUid>,
    /// Creatures living here, in ascending id order (a tick writes them in that order).
    pub creatures: Vec<Creature>,
    /// Per species, the population last reported in news (doubling/halving is measured
    /// against it, so a slow drift is reported once, not every tick).
    pub census_baseline: BTreeMap<String, u32>,
}

impl CellState {
    /// Checks the invariants a tick relies on: a `realm/zone/cell` UID, a cap within
    /// `1..=10000`, at most 16 distinct neighbours of cell depth other than the cell itself,
    /// creature ids unique and well formed, species known, genes within range.
    pub fn validate(&self, rules: &Rules) -> Result<()> {
        let invalid = |reason: String| {
            Err(EcologyError::InvalidCell {
                cell: self.cell.to_string(),
                reason,
            })
        };
        if self.cell.depth() != CELL_UID_DEPTH {
            return invalid("a cell UID is realm/zone/cell".into());
        }
        if self.population_cap == 0 || self.population_cap > MAX_POPULATION_CAP {
            return invalid(format!("population cap must be 1..={MAX_POPULATION_CAP}"));
        }
        if self.neighbours.len() > MAX_NEIGHBOURS {
            return invalid(format!("more than {MAX_NEIGHBOURS} neighbours"));
        }
        let mut seen_neighbours = BTreeSet::new();
        for neighbour in &self.neighbours {
            if neighbour.depth() != CELL_UID_DEPTH || *neighbour == self.cell {
                return invalid(format!("neighbour {neighbour} is not another cell"));
            }
            if !seen_neighbours.insert(neighbour) {
                return invalid(format!("neighbour {neighbour} listed twice"));
            }
        }
        let mut seen = BTreeSet::new();
        for creature in &self.creatures {
            if let Some(problem) = creature_problem(creature, rules) {
                return invalid(format!("creature {}: {problem}", creature.id));
            }
            if !seen.insert(&creature.id) {
                return invalid(format!("creature {} listed twice", creature.id));
            }
        }
        Ok(())
    }

    /// Population per species.
    pub fn census(&self) -> BTreeMap<String, u32> {
        census(&self.creatures)
    }

    /// The zone the cell belongs to (`realm/zone`).
    pub fn zone(&self) -> PartitionUid {
        self.cell.prefix(2)
    }
}

/// Population per species of `creatures`.
pub fn census<'a>(creatures: impl IntoIterator<Item = &'a Creature>) -> BTreeMap<String, u32> {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for creature in creatures {
        *counts.entry(creature.species.as_str()).or_insert(0) += 1;
    }
    counts
        .into_iter()
        .map(|(species, count)| (species.to_owned(), count))
        .collect()
}

/// Why a creature read from state or a message is unusable, if it is.
pub(crate) fn creature_problem(creature: &Creature, rules: &Rules) -> Option<&'static str> {
    if !creature.id.is_valid() || !creature.lineage.root.is_valid() {
        Some("malformed id")
    } else if creature.lineage.parents.len() > 2
        || creature
            .lineage
            .parents
            .iter()
            .any(|parent| !parent.is_valid())
    {
        Some("lineage needs at most two well-formed parent ids")
    } else if !creature.genes.is_valid() {
        Some("gene outside 0..=15")
    } else if !rules.species.contains_key(&creature.species) {
        Some("unknown species")
    } else {
        None
    }
}

/// What to found a cell with: `count` creatures of `species`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Founders {
    pub species: String,
    pub count: u32,
}

/// Creates a cell at tick 0 with founders of the base genes, each gene nudged by -1, 0 or +1
/// and ages spread over the first half of the lifespan, drawn from the tick-0 stream (so
/// genesis is as reproducible as a tick). Founders are their own lineage roots.
pub fn genesis(
    cell: PartitionUid,
    population_cap: u32,
    neighbours: Vec<PartitionUid>,
    founders: &[Founders],
    rules: &Rules,
) -> Result<CellState> {
    let mut rng = TickRng::for_tick(&cell, 0);
    let mut creatures = Vec::new();
    let mut ordinal: u32 = 0;
    for group in founders {
        let species = rules.species(&group.species)?;
        if group.count > population_cap {
            return Err(EcologyError::InvalidCell {
                cell: cell.to_string(),
                reason: format!(
                    "{} founders of {} exceed the cap",
                    group.count, group.species
                ),
            });
        }
        for _ in 0..group.count {
            let id = CreatureId::mint(cell.as_str(), 0, ordinal);
            ordinal += 1;
            let genes = super::Genome::from_array(species.base_genes.to_array().map(|gene| {
                match rng.below(3) {
                    0 => gene.saturating_sub(1),
                    1 => gene,
                    _ => gene.saturating_add(1),
                }
            }));
            let age = rng.below(species.lifespan_ticks / 2 + 1);
            creatures.push(Creature {
                id: id.clone(),
                species: group.species.clone(),
                genes,
                age,
                energy: species.birth_energy.max(species.max_energy / 2),
                lineage: Lineage {
                    parents: Vec::new(),
                    root: id,
                    generation: 0,
                },
            });
        }
    }
    creatures.sort_by(|left, right| left.id.cmp(&right.id));
    let state = CellState {
        census_baseline: census(&creatures),
        cell,
        tick: 0,
        population_cap,
        neighbours,
        creatures,
    };
    state.validate(rules)?;
    if state.creatures.len() > population_cap as usize {
        return Err(EcologyError::InvalidCell {
            cell: state.cell.to_string(),
            reason: "founders exceed the population cap".into(),
        });
    }
    Ok(state)
}
