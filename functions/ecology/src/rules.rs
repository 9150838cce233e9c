//! Rule templates: per-species base stats, mutation and breeding rates, lifespans, and the tick
//! interval, loaded from a TOML file (`rules/species.toml` is built in) and validated once.
//!
//! Rules are data, not code: a designer tunes a species without a deploy of new logic, and
//! every number is an integer so ticks stay reproducible across machines.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{EcologyError, Result};
use crate::sim::{GENE_MAX, Genome};

/// Shortest tick interval allowed, milliseconds.
pub const MIN_TICK_INTERVAL_MS: u64 = 5_000;
/// Longest tick interval allowed, milliseconds.
pub const MAX_TICK_INTERVAL_MS: u64 = 15_000;
/// Most species one rules file may define.
pub const MAX_SPECIES: usize = 64;

/// The rule file compiled into the crate.
pub const BUILTIN_RULES_TOML: &str = include_str!("../rules/species.toml");

/// The interval between two ticks of one cell, validated to 5–15 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct TickInterval(u64);

impl TickInterval {
    /// Validates an interval in milliseconds.
    pub fn from_millis(millis: u64) -> Result<Self> {
        if (MIN_TICK_INTERVAL_MS..=MAX_TICK_INTERVAL_MS).contains(&millis) {
            Ok(Self(millis))
        } else {
            Err(EcologyError::InvalidTickInterval(millis))
        }
    }

    /// The interval in milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// When the tick after one that was due at `due_ms` is due: the delay a shell puts on the
    /// next timer message.
    pub fn next_due_ms(self, due_ms: u64) -> u64 {
        due_ms.saturating_add(self.0)
    }
}

impl TryFrom<u64> for TickInterval {
    type Error = EcologyError;
    fn try_from(millis: u64) -> Result<Self> {
        Self::from_millis(millis)
    }
}

impl From<TickInterval> for u64 {
    fn from(interval: TickInterval) -> u64 {
        interval.0
    }
}

/// Stats of one species. Rates are per-mille per tick; energy is in abstract units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeciesRules {
    /// Name used in descriptions and news.
    pub display_name: String,
    /// Age (ticks) at which a creature dies of old age, before the hardiness bonus
    /// (`+ lifespan × hardiness / 32`).
    pub lifespan_ticks: u32,
    /// Age (ticks) from which a creature may breed and migrate.
    pub maturity_ticks: u32,
    /// Energy of a newborn.
    pub birth_energy: u32,
    /// Energy ceiling before the size bonus (`+ 5 × size`).
    pub max_energy: u32,
    /// Energy spent per tick before the size penalty (`+ size / 4`).
    pub upkeep: u32,
    /// Smallest forage roll per tick (before the vigour bonus `+ vigour / 4`).
    pub forage_min: u32,
    /// Largest forage roll per tick.
    pub forage_max: u32,
    /// Energy each parent pays to breed.
    pub breeding_energy_cost: u32,
    /// Chance a matched pair breeds in one tick, scaled by the pair's mean fertility
    /// (`× (8 + fertility) / 16`).
    pub birth_chance_permille: u32,
    /// Chance that each gene of a newborn mutates by ±1.
    pub mutation_permille: u32,
    /// Chance an adult leaves for a neighbouring cell in one tick, scaled by wanderlust
    /// (`× (1 + wanderlust) / 8`) and doubled when the cell is over three quarters full.
    pub migration_permille: u32,
    /// Energy a migrant spends on the way (it must have more than this to leave).
    pub migration_energy_cost: u32,
    /// Genes of founders.
    pub base_genes: Genome,
    /// Template for [`crate::sim::describe`]: `{species}`, `{lineage}`, `{generation}`, `{age}`
    /// and one placeholder per gene (`{vigour}`, …) replaced by its word.
    pub description: String,
}

/// Words for low (0–4), middling (5–10) and high (11–15) values of each gene.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneWords {
    pub vigour: [String; 3],
    pub size: [String; 3],
    pub fertility: [String; 3],
    pub wanderlust: [String; 3],
    pub hardiness: [String; 3],
}

/// Every rule the simulation reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Interval between ticks of a cell.
    pub tick_interval_ms: TickInterval,
    /// A child carrying at least this many mutated genes founds a new lineage.
    pub new_lineage_mutations: u32,
    /// Population a species needs in a cell before doubling or halving is news.
    pub news_min_population: u32,
    /// Words for gene values in descriptions.
    pub gene_words: GeneWords,
    /// Species by key (the key is what creatures store).
    pub species: BTreeMap<String, SpeciesRules>,
}

impl Rules {
    /// The rules compiled into the crate (`rules/species.toml`).
    pub fn builtin() -> Result<Self> {
        Self::from_toml_str(BUILTIN_RULES_TOML)
    }

    /// Parses and validates a rules file.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let rules: Rules =
            toml::from_str(text).map_err(|error| EcologyError::RulesParse(error.to_string()))?;
        rules.validate()?;
        Ok(rules)
    }

    /// The species' rules, or [`EcologyError::UnknownSpecies`].
    pub fn species(&self, key: &str) -> Result<&SpeciesRules> {
        self.species
            .get(key)
            .ok_or_else(|| EcologyError::UnknownSpecies(key.to_owned()))
    }

    /// Checks every invariant the simulation relies on, so a tick never divides by zero,
    /// overflows, or produces creatures that die at birth.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(EcologyError::InvalidRules(reason));
        if self.species.is_empty() {
            return invalid("no species defined".into());
        }
        if self.species.len() > MAX_SPECIES {
            return invalid(format!("more than {MAX_SPECIES} species"));
        }
        if self.new_lineage_mutations == 0 {
            return invalid("new_lineage_mutations must be at least 1".into());
        }
        for (key, species) in &self.species {
            worldfleet_domain::uid::validate_identifier("species", key)?;
            let problem = if species.lifespan_ticks == 0 || species.lifespan_ticks > 1_000_000 {
                Some("lifespan_ticks must be 1..=1000000")
            } else if species.maturity_ticks >= species.lifespan_ticks {
                Some("maturity_ticks must be below lifespan_ticks")
            } else if species.max_energy == 0 || species.max_energy > 1_000_000 {
                Some("max_energy must be 1..=1000000")
            } else if species.birth_energy == 0 || species.birth_energy > species.max_energy {
                Some("birth_energy must be 1..=max_energy")
            } else if species.forage_min > species.forage_max || species.forage_max > 1_000_000 {
                Some("forage_min must not exceed forage_max (at most 1000000)")
            } else if species.upkeep > 1_000_000 {
                Some("upkeep must be at most 1000000")
            } else if species.breeding_energy_cost == 0
                || species.breeding_energy_cost >= species.max_energy
            {
                Some("breeding_energy_cost must be 1..max_energy")
            } else if species.migration_energy_cost >= species.max_energy {
                Some("migration_energy_cost must be below max_energy")
            } else if [
                species.birth_chance_permille,
                species.mutation_permille,
                species.migration_permille,
            ]
            .iter()
            .any(|rate| *rate > 1000)
            {
                Some("per-mille rates must be 0..=1000")
            } else if species
                .base_genes
                .to_array()
                .iter()
                .any(|gene| *gene > GENE_MAX)
            {
                Some("base genes must be 0..=15")
            } else if species.display_name.is_empty() || species.display_name.len() > 64 {
                Some("display_name must be 1-64 bytes")
            } else if species.description.is_empty() || species.description.len() > 512 {
                Some("description template must be 1-512 bytes")
            } else {
                None
            };
            if let Some(problem) = problem {
                return invalid(format!("species {key:?}: {problem}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_load_and_validate() {
        let rules = Rules::builtin().unwrap();
        assert_eq!(rules.tick_interval_ms.as_millis(), 10_000);
        assert!(rules.species.contains_key("glimmerfox"));
        assert!(rules.species("no-such").is_err());
    }

    #[test]
    fn tick_interval_is_validated_to_5_to_15_seconds() {
        assert!(TickInterval::from_millis(5_000).is_ok());
        assert!(TickInterval::from_millis(15_000).is_ok());
        assert_eq!(
            TickInterval::from_millis(4_999),
            Err(EcologyError::InvalidTickInterval(4_999))
        );
        assert!(TickInterval::from_millis(15_001).is_err());
        let text = BUILTIN_RULES_TOML.replace("tick_interval_ms = 10000", "tick_interval_ms = 500");
        assert!(matches!(
            Rules::from_toml_str(&text),
            Err(EcologyError::RulesParse(_))
        ));
        assert_eq!(
            TickInterval::from_millis(6_000).unwrap().next_due_ms(1_000),
            7_000
        );
    }

    #[test]
    fn broken_rules_are_refused_with_a_reason() {
        let text = BUILTIN_RULES_TOML.replace("maturity_ticks = 40", "maturity_ticks = 4000");
        assert!(matches!(
            Rules::from_toml_str(&text),
            Err(EcologyError::InvalidRules(reason)) if reason.contains("maturity")
        ));
        let text = BUILTIN_RULES_TOML.replace("mutation_permille = 40", "mutation_permille = 4000");
        assert!(matches!(
            Rules::from_toml_str(&text),
            Err(EcologyError::InvalidRules(_))
        ));
        let text = BUILTIN_RULES_TOML.replace("vigour = 8,", "vigour = 99,");
        assert!(Rules::from_toml_str(&text).is_err());
        assert!(matches!(
            Rules::from_toml_str("not toml ["),
            Err(EcologyError::RulesParse(_))
        ));
        let text = format!("{BUILTIN_RULES_TOML}\nsurprise = 1\n");
        assert!(Rules::from_toml_str(&text).is_err());
    }
}
