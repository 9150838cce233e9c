//! Market and production rules: per-good price parameters and per-planet-kind recipes, loaded
//! from TOML (`rules/market.toml` is built in) and validated once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use worldfleet_domain::uid::validate_identifier;

use crate::error::{PriceError, Result};

/// The rules compiled into the crate.
pub const BUILTIN_RULES_TOML: &str = include_str!("../rules/market.toml");
/// Highest price any rule may allow, milli-credits (keeps the fixed-point formula in range).
pub const MAX_PRICE_MILLI: i64 = 1 << 40;
/// Highest elasticity, per-mille.
pub const MAX_ELASTICITY_PERMILLE: i64 = 3_000;
/// Highest planet level.
pub const MAX_PLANET_LEVEL: u32 = 10;
/// Largest per-tick quantity in a recipe.
pub const MAX_RECIPE_QUANTITY: i64 = 1_000_000;

/// Price parameters of one good (see the crate README for the formula).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoodRules {
    /// Price when demand equals supply, milli-credits.
    pub base_milli: i64,
    /// Exponent of the demand/supply ratio, per-mille.
    pub elasticity_permille: i64,
    /// Largest move per recompute, per-mille of the posted price.
    pub max_step_permille: i64,
    /// Lowest price, milli-credits.
    pub floor_milli: i64,
    /// Highest price, milli-credits.
    pub ceiling_milli: i64,
    /// Demand pressure with no trade; demand decays toward it.
    pub baseline_demand: i64,
    /// Share of the gap between demand and baseline closed at each recompute, per-mille.
    pub demand_decay_permille: i64,
}

/// What a kind of planet makes each production tick, at level 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanetKindRules {
    /// Units produced per tick per level.
    pub produces: BTreeMap<String, i64>,
    /// Units consumed per tick per level; output scales down with the scarcest input.
    pub consumes: BTreeMap<String, i64>,
    /// Storage per good per level; output beyond it is wasted.
    pub storage_per_level: i64,
}

/// All market and production rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketRules {
    pub goods: BTreeMap<String, GoodRules>,
    pub planet_kinds: BTreeMap<String, PlanetKindRules>,
}

impl MarketRules {
    /// The rules compiled into the crate.
    pub fn builtin() -> Result<Self> {
        Self::from_toml_str(BUILTIN_RULES_TOML)
    }

    /// Parses and validates a rules file.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let rules: Self =
            toml::from_str(text).map_err(|error| PriceError::RulesParse(error.to_string()))?;
        rules.validate()?;
        Ok(rules)
    }

    /// Checks the invariants the formula and the production tick rely on: positive prices
    /// below 2^40 with `floor <= base <= ceiling`, elasticity `0..=3000`, steps `1..=1000`,
    /// decay `0..=1000`, non-negative demand; recipes naming known goods with quantities
    /// `1..=1000000` and positive storage.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(PriceError::InvalidRules(reason));
        if self.goods.is_empty() {
            return invalid("no goods defined".into());
        }
        for (key, good) in &self.goods {
            validate_identifier("good", key)?;
            let problem = if !(1..=MAX_PRICE_MILLI).contains(&good.floor_milli)
                || !(good.floor_milli..=MAX_PRICE_MILLI).contains(&good.ceiling_milli)
                || !(good.floor_milli..=good.ceiling_milli).contains(&good.base_milli)
            {
                Some("prices must satisfy 1 <= floor <= base <= ceiling <= 2^40")
            } else if !(0..=MAX_ELASTICITY_PERMILLE).contains(&good.elasticity_permille) {
                Some("elasticity_permille must be 0..=3000")
            } else if !(1..=1000).contains(&good.max_step_permille) {
                Some("max_step_permille must be 1..=1000")
            } else if !(0..=1000).contains(&good.demand_decay_permille) {
                Some("demand_decay_permille must be 0..=1000")
            } else if !(0..=crate::market::MAX_STOCK).contains(&good.baseline_demand) {
                Some("baseline_demand must be 0..=MAX_STOCK")
            } else {
                None
            };
            if let Some(problem) = problem {
                return invalid(format!("good {key:?}: {problem}"));
            }
        }
        for (key, kind) in &self.planet_kinds {
            validate_identifier("planet kind", key)?;
            if kind.produces.is_empty() {
                return invalid(format!("planet kind {key:?} produces nothing"));
            }
            if !(1..=crate::market::MAX_STOCK).contains(&kind.storage_per_level) {
                return invalid(format!(
                    "planet kind {key:?}: storage_per_level out of range"
                ));
            }
            for (good, quantity) in kind.produces.iter().chain(&kind.consumes) {
                if !self.goods.contains_key(good) {
                    return invalid(format!("planet kind {key:?} names unknown good {good:?}"));
                }
                if !(1..=MAX_RECIPE_QUANTITY).contains(quantity) {
                    return invalid(format!("planet kind {key:?}: {good} quantity out of range"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_validate() {
        let rules = MarketRules::builtin().unwrap();
        assert!(rules.goods.contains_key("ore"));
        assert!(rules.planet_kinds.contains_key("forge"));
    }

    #[test]
    fn bad_rules_are_refused() {
        let text = BUILTIN_RULES_TOML.replace("floor_milli = 1000\n", "floor_milli = 20000\n");
        assert!(matches!(
            MarketRules::from_toml_str(&text),
            Err(PriceError::InvalidRules(reason)) if reason.contains("floor")
        ));
        let text =
            BUILTIN_RULES_TOML.replace("elasticity_permille = 500", "elasticity_permille = 9000");
        assert!(MarketRules::from_toml_str(&text).is_err());
        let text =
            BUILTIN_RULES_TOML.replace("produces = { fuel = 25 }", "produces = { gold = 25 }");
        assert!(MarketRules::from_toml_str(&text).is_err());
        assert!(matches!(
            MarketRules::from_toml_str("goods = 3"),
            Err(PriceError::RulesParse(_))
        ));
    }
}
