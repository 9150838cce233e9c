//! One tick of one cell: `tick(cell, inputs, rules) -> TickOutcome`, a pure function.
//!
//! Steps, in this fixed order, all drawing from one stream seeded by (cell UID, tick):
//!
//! 1. validate the state and require `inputs.tick == cell.tick + 1`;
//! 2. admit arrivals (ascending creature id); refuse migrants for another cell or of unknown
//!    species (handed back in the rejection so they are never lost) and drop duplicates of a
//!    creature already here (a re-delivered migrant message);
//! 3. captures (ascending request id): the creature leaves the cell for the player;
//! 4. player breed requests (ascending request id): two adults of one species with the energy
//!    to pay the breeding cost always produce one child;
//! 5. metabolism (ascending creature id, newborns excepted): age, forage, upkeep; deaths of old
//!    age and starvation;
//! 6. natural breeding while the cell is below its cap: per species, eligible adults are
//!    shuffled and paired, each pair breeds with the species' birth chance;
//! 7. migration: adults that neither arrived nor were born this tick may leave for a random
//!    neighbour, paying the migration energy cost; they leave as [`Migrant`] messages keyed by
//!    the destination cell, lineage intact;
//! 8. the cap: the excess over `population_cap` is culled, frailest first (see
//!    [`Creature::frailty`]: the most of their lifespan used plus the most energy missing),
//!    ties by ascending id;
//! 9. news: census against the baseline, and lineages founded.
//!
//! Conservation: `before + arrived + born = after + emigrated + died + culled + captured`,
//! reported in [`TickCounts`]; no creature is ever in two places.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use worldfleet_domain::PartitionUid;
use worldfleet_domain::uid::validate_identifier;

use super::cell::{CellState, census, creature_problem};
use super::creature::{Creature, CreatureId, GENE_COUNT, GENE_MAX, Genome, Lineage};
use super::news::{NewsEvent, census_news, lineage_news};
use super::rng::TickRng;
use crate::error::{EcologyError, Result};
use crate::rules::{Rules, SpeciesRules};

/// Most arrivals, captures or breed requests one tick accepts of each kind; the excess is
/// refused with [`RejectReason::TooManyInputs`] (migrants are handed back).
pub const MAX_INPUTS_PER_KIND: usize = 10_000;

/// A creature travelling between cells: the message a shell sends, keyed (message group and
/// partition) by `destination`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migrant {
    pub source: PartitionUid,
    pub destination: PartitionUid,
    /// The source cell's tick in which it left.
    pub departed_tick: u64,
    pub creature: Creature,
}

/// A player capturing a creature (from intake).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// The intake event id; a second request with the same id in one tick is refused.
    pub request_id: String,
    pub player_id: String,
    pub creature_id: CreatureId,
}

/// A player asking two creatures to breed (from intake).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreedRequest {
    /// The intake event id; a second request with the same id in one tick is refused.
    pub request_id: String,
    pub player_id: String,
    pub parent_a: CreatureId,
    pub parent_b: CreatureId,
}

/// What a tick consumes besides the cell state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickInputs {
    /// The tick to run: must be the cell's last tick plus one.
    pub tick: u64,
    /// Migrants whose destination is this cell.
    pub arrivals: Vec<Migrant>,
    pub captures: Vec<CaptureRequest>,
    pub breed_requests: Vec<BreedRequest>,
}

/// Why a creature left the cell other than by migration or capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CullReason {
    OldAge,
    Starvation,
    /// Culled by the population cap.
    Overpopulation,
}

/// A creature removed from the world this tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Culled {
    pub creature: Creature,
    pub reason: CullReason,
}

/// A creature handed to a player.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    pub request_id: String,
    pub player_id: String,
    pub creature: Creature,
}

/// A birth this tick (the child itself is in the next state, or in `culled` if the cap took it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Birth {
    pub child: CreatureId,
    pub species: String,
    pub parents: [CreatureId; 2],
    /// The breed request that caused it (`None`: natural breeding).
    pub request_id: Option<String>,
    /// How many genes mutated.
    pub mutations: u32,
    /// True when the child founded a new lineage (and is its root).
    pub founded_lineage: bool,
}

/// Which input a rejection refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputKind {
    Arrival,
    Capture,
    Breed,
}

/// Why an input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// The migrant is addressed to another cell.
    WrongDestination,
    /// The creature's species is not in the rules.
    UnknownSpecies,
    /// A malformed creature, id or identifier.
    Malformed,
    /// The creature is already here (a re-delivered migrant) — dropped, not handed back.
    DuplicateCreature,
    /// The same request id twice in one tick.
    DuplicateRequest,
    /// A creature the request names is not in the cell.
    NotInCell,
    /// A parent is too young.
    NotAdult,
    /// A parent cannot pay the breeding cost.
    NotEnoughEnergy,
    /// The parents are of different species.
    SpeciesMismatch,
    /// Both parents are the same creature.
    SameParent,
    /// A parent already bred this tick.
    AlreadyBred,
    /// More than [`MAX_INPUTS_PER_KIND`] inputs of one kind.
    TooManyInputs,
}

impl RejectReason {
    /// The stable code stored in consumed-input markers (`refused:<code>`).
    pub fn code(self) -> &'static str {
        match self {
            Self::WrongDestination => "wrong_destination",
            Self::UnknownSpecies => "unknown_species",
            Self::Malformed => "malformed",
            Self::DuplicateCreature => "duplicate_creature",
            Self::DuplicateRequest => "duplicate_request",
            Self::NotInCell => "not_in_cell",
            Self::NotAdult => "not_adult",
            Self::NotEnoughEnergy => "not_enough_energy",
            Self::SpeciesMismatch => "species_mismatch",
            Self::SameParent => "same_parent",
            Self::AlreadyBred => "already_bred",
            Self::TooManyInputs => "too_many_inputs",
        }
    }
}

/// A refused input. A refused migrant (other than a duplicate) comes back in `returned`, so
/// the shell can dead-letter it: refusing never destroys a creature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub input: InputKind,
    /// The creature id (arrivals) or request id (captures, breed requests).
    pub key: String,
    pub reason: RejectReason,
    pub returned: Option<Migrant>,
}

/// Head counts of one tick; `before + arrived + born == after + emigrated + died + culled +
/// captured` always holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickCounts {
    pub before: u32,
    pub arrived: u32,
    pub born: u32,
    pub died: u32,
    pub culled: u32,
    pub captured: u32,
    pub emigrated: u32,
    pub after: u32,
}

impl TickCounts {
    /// True when the head counts balance.
    pub fn balanced(&self) -> bool {
        u64::from(self.before) + u64::from(self.arrived) + u64::from(self.born)
            == u64::from(self.after)
                + u64::from(self.emigrated)
                + u64::from(self.died)
                + u64::from(self.culled)
                + u64::from(self.captured)
    }
}

/// Everything a tick decided: the shell writes `next` conditionally on `(cell, tick)`, sends
/// `emigrants` keyed by destination, hands `captured` to players and `news` to distribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickOutcome {
    pub next: CellState,
    pub emigrants: Vec<Migrant>,
    /// Deaths (old age, starvation) and culls (cap).
    pub culled: Vec<Culled>,
    pub captured: Vec<Captured>,
    pub births: Vec<Birth>,
    pub news: Vec<NewsEvent>,
    pub rejected: Vec<Rejection>,
    pub counts: TickCounts,
}

/// Per-creature bookkeeping during a tick.
struct Living {
    creature: Creature,
    arrived: bool,
    newborn: bool,
    bred: bool,
}

struct TickRun<'a> {
    cell: &'a CellState,
    rules: &'a Rules,
    tick: u64,
    rng: TickRng,
    living: BTreeMap<CreatureId, Living>,
    next_ordinal: u32,
    births: Vec<Birth>,
    culled: Vec<Culled>,
    rejected: Vec<Rejection>,
}

/// Runs tick `inputs.tick` of `cell`. Deterministic: the same state, inputs (in any order) and
/// rules give a byte-identical outcome. Errors only for an invalid state or a tick out of
/// order; bad individual inputs are refused in `TickOutcome::rejected`.
pub fn tick(cell: &CellState, inputs: &TickInputs, rules: &Rules) -> Result<TickOutcome> {
    cell.validate(rules)?;
    let expected = cell
        .tick
        .checked_add(1)
        .ok_or(EcologyError::TickOutOfOrder {
            expected: u64::MAX,
            got: inputs.tick,
        })?;
    if inputs.tick != expected {
        return Err(EcologyError::TickOutOfOrder {
            expected,
            got: inputs.tick,
        });
    }
    let mut run = TickRun {
        cell,
        rules,
        tick: inputs.tick,
        rng: TickRng::for_tick(&cell.cell, inputs.tick),
        living: cell
            .creatures
            .iter()
            .map(|creature| {
                let living = Living {
                    creature: creature.clone(),
                    arrived: false,
                    newborn: false,
                    bred: false,
                };
                (creature.id.clone(), living)
            })
            .collect(),
        next_ordinal: 0,
        births: Vec::new(),
        culled: Vec::new(),
        rejected: Vec::new(),
    };
    let before = cell.creatures.len() as u32;
    let arrived = run.admit_arrivals(&inputs.arrivals);
    let captured = run.apply_captures(&inputs.captures);
    run.apply_breed_requests(&inputs.breed_requests);
    run.metabolise();
    run.breed_naturally();
    let emigrants = run.migrate();
    run.enforce_cap();

    let TickRun {
        living,
        births,
        culled,
        rejected,
        ..
    } = run;
    let creatures: Vec<Creature> = living.into_values().map(|living| living.creature).collect();
    let current = census(&creatures);
    let (mut news, census_baseline) =
        census_news(cell, inputs.tick, &cell.census_baseline, &current, rules);
    news.extend(lineage_news(cell, inputs.tick, &births, rules));
    let died = culled
        .iter()
        .filter(|culled| culled.reason != CullReason::Overpopulation)
        .count() as u32;
    let counts = TickCounts {
        before,
        arrived,
        born: births.len() as u32,
        died,
        culled: culled.len() as u32 - died,
        captured: captured.len() as u32,
        emigrated: emigrants.len() as u32,
        after: creatures.len() as u32,
    };
    debug_assert!(counts.balanced(), "{counts:?}");
    Ok(TickOutcome {
        next: CellState {
            cell: cell.cell.clone(),
            tick: inputs.tick,
            population_cap: cell.population_cap,
            neighbours: cell.neighbours.clone(),
            creatures,
            census_baseline,
        },
        emigrants,
        culled,
        captured,
        births,
        news,
        rejected,
        counts,
    })
}

impl TickRun<'_> {
    fn reject(&mut self, input: InputKind, key: &str, reason: RejectReason) {
        self.rejected.push(Rejection {
            input,
            key: key.to_owned(),
            reason,
            returned: None,
        });
    }

    fn species(&self, key: &str) -> &SpeciesRules {
        // Every creature in `living` passed `creature_problem`, so its species exists.
        &self.rules.species[key]
    }

    fn admit_arrivals(&mut self, arrivals: &[Migrant]) -> u32 {
        let mut order: Vec<&Migrant> = arrivals.iter().collect();
        order.sort_by(|left, right| {
            (&left.creature.id, &left.source, left.departed_tick).cmp(&(
                &right.creature.id,
                &right.source,
                right.departed_tick,
            ))
        });
        let mut admitted = 0;
        for (index, migrant) in order.into_iter().enumerate() {
            let reason = if index >= MAX_INPUTS_PER_KIND {
                Some(RejectReason::TooManyInputs)
            } else if migrant.destination != self.cell.cell {
                Some(RejectReason::WrongDestination)
            } else if !self.rules.species.contains_key(&migrant.creature.species) {
                Some(RejectReason::UnknownSpecies)
            } else if creature_problem(&migrant.creature, self.rules).is_some() {
                Some(RejectReason::Malformed)
            } else if self.living.contains_key(&migrant.creature.id) {
                Some(RejectReason::DuplicateCreature)
            } else {
                None
            };
            if let Some(reason) = reason {
                let returned = (reason != RejectReason::DuplicateCreature).then(|| migrant.clone());
                self.rejected.push(Rejection {
                    input: InputKind::Arrival,
                    key: migrant.creature.id.to_string(),
                    reason,
                    returned,
                });
                continue;
            }
            let mut creature = migrant.creature.clone();
            let ceiling = creature.max_energy(self.species(&creature.species));
            creature.energy = creature.energy.min(ceiling);
            self.living.insert(
                creature.id.clone(),
                Living {
                    creature,
                    arrived: true,
                    newborn: false,
                    bred: false,
                },
            );
            admitted += 1;
        }
        admitted
    }

    fn apply_captures(&mut self, captures: &[CaptureRequest]) -> Vec<Captured> {
        let mut order: Vec<&CaptureRequest> = captures.iter().collect();
        order.sort_by(|left, right| {
            (&left.request_id, &left.creature_id).cmp(&(&right.request_id, &right.creature_id))
        });
        let mut seen = BTreeSet::new();
        let mut captured = Vec::new();
        for (index, request) in order.into_iter().enumerate() {
            let reason = if index >= MAX_INPUTS_PER_KIND {
                Some(RejectReason::TooManyInputs)
            } else if validate_identifier("request_id", &request.request_id).is_err()
                || validate_identifier("player_id", &request.player_id).is_err()
            {
                Some(RejectReason::Malformed)
            } else if !seen.insert(request.request_id.as_str()) {
                Some(RejectReason::DuplicateRequest)
            } else if !self.living.contains_key(&request.creature_id) {
                Some(RejectReason::NotInCell)
            } else {
                None
            };
            if let Some(reason) = reason {
                self.reject(InputKind::Capture, &request.request_id, reason);
                continue;
            }
            if let Some(living) = self.living.remove(&request.creature_id) {
                captured.push(Captured {
                    request_id: request.request_id.clone(),
                    player_id: request.player_id.clone(),
                    creature: living.creature,
                });
            }
        }
        captured
    }

    fn apply_breed_requests(&mut self, requests: &[BreedRequest]) {
        let mut order: Vec<&BreedRequest> = requests.iter().collect();
        order.sort_by(|left, right| left.request_id.cmp(&right.request_id));
        let mut seen = BTreeSet::new();
        for (index, request) in order.into_iter().enumerate() {
            let reason = if index >= MAX_INPUTS_PER_KIND {
                Some(RejectReason::TooManyInputs)
            } else if validate_identifier("request_id", &request.request_id).is_err()
                || validate_identifier("player_id", &request.player_id).is_err()
            {
                Some(RejectReason::Malformed)
            } else if !seen.insert(request.request_id.as_str()) {
                Some(RejectReason::DuplicateRequest)
            } else {
                self.breeding_problem(&request.parent_a, &request.parent_b)
            };
            match reason {
                Some(reason) => self.reject(InputKind::Breed, &request.request_id, reason),
                None => self.breed(
                    &request.parent_a,
                    &request.parent_b,
                    Some(request.request_id.clone()),
                ),
            }
        }
    }

    /// Why `a` and `b` cannot breed now, if they cannot.
    fn breeding_problem(&self, a: &CreatureId, b: &CreatureId) -> Option<RejectReason> {
        if a == b {
            return Some(RejectReason::SameParent);
        }
        let (Some(left), Some(right)) = (self.living.get(a), self.living.get(b)) else {
            return Some(RejectReason::NotInCell);
        };
        if left.creature.species != right.creature.species {
            return Some(RejectReason::SpeciesMismatch);
        }
        let species = self.species(&left.creature.species);
        if left.newborn
            || right.newborn
            || !left.creature.is_adult(species)
            || !right.creature.is_adult(species)
        {
            return Some(RejectReason::NotAdult);
        }
        if left.bred || right.bred {
            return Some(RejectReason::AlreadyBred);
        }
        if left.creature.energy < species.breeding_energy_cost
            || right.creature.energy < species.breeding_energy_cost
        {
            return Some(RejectReason::NotEnoughEnergy);
        }
        None
    }

    /// Breeds two eligible parents (checked by `breeding_problem`): both pay the cost, a child
    /// is minted with crossed-over, possibly mutated genes.
    fn breed(&mut self, a: &CreatureId, b: &CreatureId, request_id: Option<String>) {
        let (Some(left), Some(right)) = (self.living.get(a), self.living.get(b)) else {
            return;
        };
        let species_key = left.creature.species.clone();
        let species = self.species(&species_key);
        let cost = species.breeding_energy_cost;
        let mutation_permille = species.mutation_permille;
        let birth_energy = species.birth_energy;
        let (left_genes, right_genes) = (
            left.creature.genes.to_array(),
            right.creature.genes.to_array(),
        );
        // The line continues through the parent with the smaller id, so the choice does not
        // depend on which parent a request names first.
        let root = if left.creature.id <= right.creature.id {
            left.creature.lineage.root.clone()
        } else {
            right.creature.lineage.root.clone()
        };
        let generation = left
            .creature
            .lineage
            .generation
            .max(right.creature.lineage.generation)
            .saturating_add(1);

        let mut genes = [0_u8; GENE_COUNT];
        let mut mutations = 0;
        for (index, gene) in genes.iter_mut().enumerate() {
            let inherited = if self.rng.below(2) == 0 {
                left_genes[index]
            } else {
                right_genes[index]
            };
            *gene = if self.rng.chance_permille(mutation_permille) {
                mutations += 1;
                if self.rng.below(2) == 0 {
                    inherited.saturating_sub(1)
                } else {
                    (inherited + 1).min(GENE_MAX)
                }
            } else {
                inherited
            };
        }
        let child_id = self.mint_id();
        let founded_lineage = mutations >= self.rules.new_lineage_mutations;
        let mut parents = [a.clone(), b.clone()];
        parents.sort();
        for parent in &parents {
            if let Some(living) = self.living.get_mut(parent) {
                living.creature.energy -= cost;
                living.bred = true;
            }
        }
        let child = Creature {
            id: child_id.clone(),
            species: species_key.clone(),
            genes: Genome::from_array(genes),
            age: 0,
            energy: birth_energy,
            lineage: Lineage {
                parents: parents.to_vec(),
                root: if founded_lineage {
                    child_id.clone()
                } else {
                    root
                },
                generation,
            },
        };
        self.living.insert(
            child_id.clone(),
            Living {
                creature: child,
                arrived: false,
                newborn: true,
                bred: false,
            },
        );
        self.births.push(Birth {
            child: child_id,
            species: species_key,
            parents,
            request_id,
            mutations,
            founded_lineage,
        });
    }

    fn mint_id(&mut self) -> CreatureId {
        loop {
            let id = CreatureId::mint(self.cell.cell.as_str(), self.tick, self.next_ordinal);
            self.next_ordinal += 1;
            if !self.living.contains_key(&id) {
                return id;
            }
        }
    }

    fn is_crowded(&self) -> bool {
        self.living.len() as u64 * 4 > u64::from(self.cell.population_cap) * 3
    }

    fn metabolise(&mut self) {
        let crowded = self.is_crowded();
        let rules = self.rules;
        let mut dead = Vec::new();
        for (id, living) in &mut self.living {
            if living.newborn {
                continue;
            }
            let species = &rules.species[&living.creature.species];
            let creature = &mut living.creature;
            creature.age = creature.age.saturating_add(1);
            let mut forage = self.rng.between(species.forage_min, species.forage_max)
                + u32::from(creature.genes.vigour) / 4;
            if crowded {
                forage /= 2;
            }
            let upkeep = species.upkeep + u32::from(creature.genes.size) / 4;
            let fed = creature
                .energy
                .saturating_add(forage)
                .min(creature.max_energy(species));
            if fed <= upkeep {
                creature.energy = 0;
                dead.push((id.clone(), CullReason::Starvation));
            } else {
                creature.energy = fed - upkeep;
                if creature.age > creature.lifespan(species) {
                    dead.push((id.clone(), CullReason::OldAge));
                }
            }
        }
        for (id, reason) in dead {
            if let Some(living) = self.living.remove(&id) {
                self.culled.push(Culled {
                    creature: living.creature,
                    reason,
                });
            }
        }
    }

    fn breed_naturally(&mut self) {
        let cap = self.cell.population_cap as usize;
        let mut by_species: BTreeMap<&str, Vec<CreatureId>> = BTreeMap::new();
        for (id, living) in &self.living {
            let species = &self.rules.species[&living.creature.species];
            if !living.newborn
                && !living.bred
                && living.creature.is_adult(species)
                && living.creature.energy >= species.breeding_energy_cost
            {
                by_species
                    .entry(living.creature.species.as_str())
                    .or_default()
                    .push(id.clone());
            }
        }
        let by_species: Vec<(String, Vec<CreatureId>)> = by_species
            .into_iter()
            .map(|(species, ids)| (species.to_owned(), ids))
            .collect();
        for (species_key, mut eligible) in by_species {
            self.rng.shuffle(&mut eligible);
            let birth_chance = self.species(&species_key).birth_chance_permille;
            for pair in eligible.chunks_exact(2) {
                if self.living.len() >= cap {
                    return;
                }
                let fertility = u32::from(self.living[&pair[0]].creature.genes.fertility)
                    + u32::from(self.living[&pair[1]].creature.genes.fertility);
                let chance = birth_chance * (16 + fertility) / 32;
                if self.rng.chance_permille(chance) {
                    self.breed(&pair[0], &pair[1], None);
                }
            }
        }
    }

    fn migrate(&mut self) -> Vec<Migrant> {
        let neighbours = &self.cell.neighbours;
        if neighbours.is_empty() {
            return Vec::new();
        }
        let crowding_factor = if self.is_crowded() { 2 } else { 1 };
        let mut leaving = Vec::new();
        for (id, living) in &self.living {
            let species = &self.rules.species[&living.creature.species];
            if living.newborn
                || living.arrived
                || !living.creature.is_adult(species)
                || living.creature.energy <= species.migration_energy_cost
            {
                continue;
            }
            let chance = (species.migration_permille
                * (1 + u32::from(living.creature.genes.wanderlust))
                / 8
                * crowding_factor)
                .min(1000);
            if self.rng.chance_permille(chance) {
                let destination = self.rng.below(neighbours.len() as u32) as usize;
                leaving.push((id.clone(), destination));
            }
        }
        let mut emigrants = Vec::with_capacity(leaving.len());
        for (id, destination) in leaving {
            if let Some(living) = self.living.remove(&id) {
                let mut creature = living.creature;
                creature.energy -= self.rules.species[&creature.species].migration_energy_cost;
                emigrants.push(Migrant {
                    source: self.cell.cell.clone(),
                    destination: neighbours[destination].clone(),
                    departed_tick: self.tick,
                    creature,
                });
            }
        }
        emigrants
    }

    fn enforce_cap(&mut self) {
        let cap = self.cell.population_cap as usize;
        if self.living.len() <= cap {
            return;
        }
        let mut by_frailty: Vec<(u32, CreatureId)> = self
            .living
            .iter()
            .map(|(id, living)| {
                let species = &self.rules.species[&living.creature.species];
                (living.creature.frailty(species), id.clone())
            })
            .collect();
        by_frailty.sort_by(|left, right| right.0.cmp(&left.0).then_with(|| left.1.cmp(&right.1)));
        let excess = self.living.len() - cap;
        for (_, id) in by_frailty.into_iter().take(excess) {
            if let Some(living) = self.living.remove(&id) {
                self.culled.push(Culled {
                    creature: living.creature,
                    reason: CullReason::Overpopulation,
                });
            }
        }
    }
}
