//! Republish rules: which feeds a canon entry goes to (config, not code).

use std::path::Path;

use serde::Deserialize;
use worldfleet_domain::{CanonEntry, EventKind, FeedId};
use worldfleet_kit::{Env, Variable};

use crate::error::{DistributeError, Result};

/// The rules shipped with worldfleet (`config/republish.toml`).
pub const DEFAULT_RULES: &str = include_str!("../config/republish.toml");

/// The variables distribute reads.
pub const VARIABLES: &[Variable] = &[Variable {
    name: "WORLDFLEET_REPUBLISH_RULES",
    default: "the shipped `functions/distribute/config/republish.toml`",
    meaning: "path of a TOML file of republish rules (which feeds an event is published to)",
}];

/// Which feeds a rule publishes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One feed per audience member (the actor and the participants).
    Participants,
    /// The actor's faction feed, when the event names a faction.
    Faction,
    /// The feed of the district that owns the event.
    District,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub scope: Scope,
    #[serde(default)]
    pub min_salience: u8,
    #[serde(default)]
    pub kinds: Option<Vec<EventKind>>,
}

/// A set of rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepublishRules {
    pub rules: Vec<Rule>,
}

impl RepublishRules {
    /// Parses rules from TOML.
    pub fn parse(text: &str) -> Result<Self> {
        let rules: Self =
            toml::from_str(text).map_err(|error| DistributeError::Rules(error.to_string()))?;
        if rules.rules.is_empty() {
            return Err(DistributeError::Rules("no [[rules]] given".into()));
        }
        if rules.rules.iter().any(|rule| rule.min_salience > 100) {
            return Err(DistributeError::Rules("min_salience must be 0-100".into()));
        }
        Ok(rules)
    }

    /// The shipped default rules.
    pub fn default_rules() -> Self {
        Self::parse(DEFAULT_RULES).unwrap_or_else(|_| Self {
            rules: vec![Rule {
                scope: Scope::Participants,
                min_salience: 0,
                kinds: None,
            }],
        })
    }

    /// Rules from `WORLDFLEET_REPUBLISH_RULES` (a file path) or the defaults.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(&Env::process())
    }

    /// [`Self::from_env`] over `env`.
    pub fn from_vars(env: &Env) -> Result<Self> {
        match env.text("WORLDFLEET_REPUBLISH_RULES") {
            Some(path) => Self::load(Path::new(&path)),
            None => Ok(Self::default_rules()),
        }
    }

    /// Rules from a TOML file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            DistributeError::Rules(format!("cannot read {}: {error}", path.display()))
        })?;
        Self::parse(&text)
    }

    /// The feeds `canon` is published to, without repeats, in rule order.
    pub fn targets(&self, canon: &CanonEntry) -> Vec<FeedId> {
        let mut feeds = Vec::new();
        let mut add = |feed: FeedId| {
            if !feeds.contains(&feed) {
                feeds.push(feed);
            }
        };
        for rule in &self.rules {
            if canon.salience < rule.min_salience {
                continue;
            }
            if rule
                .kinds
                .as_ref()
                .is_some_and(|kinds| !kinds.contains(&canon.kind))
            {
                continue;
            }
            match rule.scope {
                Scope::Participants => {
                    for member in &canon.audience {
                        add(FeedId::Player(member.clone()));
                    }
                }
                Scope::Faction => {
                    if let Some(faction) = &canon.faction {
                        add(FeedId::Faction(faction.clone()));
                    }
                }
                Scope::District => add(FeedId::District(canon.district())),
            }
        }
        feeds
    }
}

#[cfg(test)]
mod tests {
    use worldfleet_domain::{Intent, PartitionUid, Tier};

    use super::*;

    fn canon(salience: u8, faction: Option<&str>) -> CanonEntry {
        CanonEntry {
            event_id: "e".into(),
            partition: PartitionUid::parse("gm/d-1/s-1").unwrap(),
            kind: EventKind::Combat,
            actor: "a".into(),
            audience: vec!["a".into(), "b".into()],
            faction: faction.map(str::to_owned),
            intent: Intent::Fight,
            salience,
            tier: Tier::Template,
            text: "t".into(),
            composer: "template".into(),
            accepted_at_ms: 0,
            composed_at_ms: 0,
        }
    }

    #[test]
    fn default_rules_fan_out_by_salience() {
        let rules = RepublishRules::default_rules();
        assert_eq!(rules.rules.len(), 3);
        let quiet: Vec<String> = rules
            .targets(&canon(10, Some("red")))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(quiet, vec!["player:a", "player:b"]);
        let loud: Vec<String> = rules
            .targets(&canon(90, Some("red")))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            loud,
            vec!["player:a", "player:b", "faction:red", "district:gm/d-1"]
        );
    }

    #[test]
    fn refuses_bad_rules() {
        assert!(RepublishRules::parse("[[rules]]\nscope = \"guild\"").is_err());
        assert!(RepublishRules::parse("rules = []").is_err());
        let kinds =
            RepublishRules::parse("[[rules]]\nscope = \"district\"\nkinds = [\"quest\"]").unwrap();
        assert!(kinds.targets(&canon(90, None)).is_empty());
    }
}
