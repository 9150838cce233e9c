//! News: distant ecology summarised as a few plain events a distribute stage can deliver to
//! district feeds ("glimmerfox numbers doubled in zone Y", "a new lineage was founded").
//!
//! A cell reports a species when its population has doubled or halved since the last report
//! (measured against `CellState::census_baseline`, so slow drift is reported once), when a
//! species appears in or vanishes from the cell, and when a birth founds a new lineage.
//! Doubling and halving need a baseline of at least `Rules::news_min_population`, so a pair
//! becoming four is not news.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use worldfleet_domain::{FeedId, PartitionUid};

use super::cell::CellState;
use super::creature::CreatureId;
use super::describe::lineage_name;
use super::tick::Birth;
use crate::rules::Rules;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NewsKind {
    PopulationDoubled {
        species: String,
        from: u32,
        to: u32,
    },
    PopulationHalved {
        species: String,
        from: u32,
        to: u32,
    },
    /// A species appeared in a cell that had none.
    SpeciesArrived {
        species: String,
        count: u32,
    },
    /// The last of a species left or died.
    LocalExtinction {
        species: String,
    },
    /// A birth founded a new lineage (the child is its root).
    LineageFounded {
        species: String,
        root: CreatureId,
    },
}

/// One news item for the zone's district feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewsEvent {
    /// The cell it happened in.
    pub cell: PartitionUid,
    /// The zone (`realm/zone`) whose district feed it belongs to.
    pub zone: PartitionUid,
    pub tick: u64,
    pub kind: NewsKind,
    /// One line for players, from a fixed template.
    pub headline: String,
}

impl NewsEvent {
    /// The feed a distribute stage delivers it to: the zone's district feed.
    pub fn feed(&self) -> FeedId {
        FeedId::District(self.zone.clone())
    }

    /// A key unique to this news item, for idempotent publication
    /// (`cell#tick#ordinal`, with `ordinal` its position in the tick's news).
    pub fn idempotency_key(&self, ordinal: usize) -> String {
        format!("{}#{}#{}", self.cell, self.tick, ordinal)
    }
}

fn display_name<'a>(rules: &'a Rules, species: &'a str) -> &'a str {
    rules
        .species
        .get(species)
        .map_or(species, |species| species.display_name.as_str())
}

/// News from the census, and the new baseline.
pub(crate) fn census_news(
    cell: &CellState,
    tick: u64,
    baseline: &BTreeMap<String, u32>,
    current: &BTreeMap<String, u32>,
    rules: &Rules,
) -> (Vec<NewsEvent>, BTreeMap<String, u32>) {
    let zone = cell.zone();
    let minimum = rules.news_min_population.max(1);
    let mut news = Vec::new();
    let mut next_baseline = BTreeMap::new();
    let mut species: Vec<&String> = baseline.keys().chain(current.keys()).collect();
    species.sort();
    species.dedup();
    for key in species {
        let before = baseline.get(key).copied().unwrap_or(0);
        let now = current.get(key).copied().unwrap_or(0);
        let name = display_name(rules, key);
        let reported = if before == 0 && now > 0 {
            Some((
                NewsKind::SpeciesArrived {
                    species: key.clone(),
                    count: now,
                },
                format!("{name} seen in {} for the first time ({now})", cell.cell),
            ))
        } else if before > 0 && now == 0 {
            Some((
                NewsKind::LocalExtinction {
                    species: key.clone(),
                },
                format!("the last {name} is gone from {}", cell.cell),
            ))
        } else if before >= minimum && now >= before.saturating_mul(2) {
            Some((
                NewsKind::PopulationDoubled {
                    species: key.clone(),
                    from: before,
                    to: now,
                },
                format!("{name} numbers doubled in zone {zone} ({before} → {now})"),
            ))
        } else if before >= minimum && now.saturating_mul(2) <= before {
            Some((
                NewsKind::PopulationHalved {
                    species: key.clone(),
                    from: before,
                    to: now,
                },
                format!("{name} numbers halved in zone {zone} ({before} → {now})"),
            ))
        } else {
            None
        };
        let kept = match reported {
            Some((kind, headline)) => {
                news.push(NewsEvent {
                    cell: cell.cell.clone(),
                    zone: zone.clone(),
                    tick,
                    kind,
                    headline,
                });
                now
            }
            None => before,
        };
        if kept > 0 {
            next_baseline.insert(key.clone(), kept);
        }
    }
    (news, next_baseline)
}

/// News of lineages founded by this tick's births.
pub(crate) fn lineage_news(
    cell: &CellState,
    tick: u64,
    births: &[Birth],
    rules: &Rules,
) -> Vec<NewsEvent> {
    births
        .iter()
        .filter(|birth| birth.founded_lineage)
        .map(|birth| NewsEvent {
            cell: cell.cell.clone(),
            zone: cell.zone(),
            tick,
            headline: format!(
                "a new {} lineage, the {} line, was founded in {}",
                display_name(rules, &birth.species),
                lineage_name(&birth.child),
                cell.cell
            ),
            kind: NewsKind::LineageFounded {
                species: birth.species.clone(),
                root: birth.child.clone(),
            },
        })
        .collect()
}
