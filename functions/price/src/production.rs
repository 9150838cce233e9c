//! Regional production: every 12 s each planet of a region makes goods from its kind's recipe,
//! and the whole region's updates go out as one chunked bulk write.
//!
//! `production_tick(region, tick, rules, mode)` is pure. It returns the per-planet updates and
//! the write plan a shell executes step by step:
//!
//! * [`WriteMode::Batch`] (default, 1 write unit per item): planet items in `batch_write`
//!   chunks of at most 25 unconditional puts, then one conditional put of the region marker
//!   (`tick < T`). The puts are idempotent because their content is a function of the state
//!   read and the tick; a crash between chunks leaves some planets at tick T and the marker at
//!   T−1, and the re-run skips the planets already at T (their `last_tick`), so the world ends
//!   as a fault-free run would.
//! * [`WriteMode::Transact`] (2 write units per item): transactions of at most 100 operations,
//!   each planet put conditioned on its `last_tick < T`, the region marker in the last chunk.
//!   A chunk already applied is cancelled by its conditions, which the shell reads as done.
//!
//! Output per tick = recipe × level × availability, where availability (per-mille) is the
//! scarcest input's stock over its need, capped at 1000; inputs are consumed in the same
//! proportion; stock is capped at `storage_per_level × level` per good and the excess wasted.
//! A planet that missed ticks does not catch up: a tick produces one tick's worth.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use worldfleet_domain::PartitionUid;
use worldfleet_domain::uid::validate_identifier;
use worldfleet_ports::table::{MAX_BATCH_WRITE, MAX_TRANSACT};
use worldfleet_ports::{BatchWrite, Comparison, Condition, Item, Key, TransactWrite, Value};

use crate::error::{PriceError, Result};
use crate::market::MAX_STOCK;
use crate::rules::{MAX_PLANET_LEVEL, MarketRules};

/// The table production state lives in (pk = region UID; sk = `planet#ID` or `region`).
pub const PRODUCTION_TABLE: &str = "production";
/// Sort key of the region marker item, which records the last completed tick.
pub const REGION_MARKER_SK: &str = "region";
/// Interval between production ticks of a region, milliseconds.
pub const PRODUCTION_TICK_MS: u64 = 12_000;
/// Most planets a region may hold.
pub const MAX_PLANETS: usize = 1_000;

/// One planet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Planet {
    /// Identifier, unique in the region (`[A-Za-z0-9._:-]`, 1–64 bytes).
    pub id: String,
    /// Planet kind in the rules.
    pub kind: String,
    /// `1..=10`: scales output, inputs and storage.
    pub level: u32,
    /// Units of each good in storage.
    pub stock: BTreeMap<String, i64>,
    /// The last production tick applied to this planet (0: none).
    pub last_tick: u64,
}

/// A region's production state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// The region's UID (one segment, the prefix of its stations' UIDs).
    pub region: PartitionUid,
    /// The last tick completed for the whole region (the marker item's `tick`).
    pub tick: u64,
    pub planets: Vec<Planet>,
}

/// How the write plan is chunked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteMode {
    /// `batch_write` chunks of ≤ 25 puts, then a conditional marker put.
    #[default]
    Batch,
    /// `transact` chunks of ≤ 100 conditional operations, marker in the last.
    Transact,
}

/// One planet's change in a tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanetUpdate {
    pub planet: String,
    /// Units made, per good.
    pub produced: BTreeMap<String, i64>,
    /// Units used up, per good.
    pub consumed: BTreeMap<String, i64>,
    /// Units lost to full storage, per good.
    pub wasted: BTreeMap<String, i64>,
    /// The planet after the tick.
    pub after: Planet,
}

/// One step of the write plan, executed in order.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteStep {
    /// One `batch_write` of at most 25 puts on [`PRODUCTION_TABLE`].
    Batch(Vec<BatchWrite>),
    /// One `transact` of at most 100 operations.
    Transact(Vec<TransactWrite>),
    /// One conditional `put` on [`PRODUCTION_TABLE`] (the region marker, in batch mode).
    Put { item: Item, condition: Condition },
}

/// What one production tick decided.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionTickOutcome {
    pub region: PartitionUid,
    pub tick: u64,
    /// Planets that produced this tick.
    pub updates: Vec<PlanetUpdate>,
    /// Planets already at this tick (written by an interrupted earlier run), left as they are.
    pub skipped: Vec<String>,
    /// The writes, in order.
    pub plan: Vec<WriteStep>,
}

impl RegionTickOutcome {
    /// Items written by the plan (planets plus the marker).
    pub fn items_written(&self) -> usize {
        self.plan
            .iter()
            .map(|step| match step {
                WriteStep::Batch(writes) => writes.len(),
                WriteStep::Transact(operations) => operations.len(),
                WriteStep::Put { .. } => 1,
            })
            .sum()
    }
}

impl Region {
    /// Checks the stored region: a one-segment UID, at most 1000 planets with unique valid
    /// ids, known kinds, levels `1..=10`, known goods with stock in `0..=MAX_STOCK`, and no
    /// planet ahead of the region by more than one tick.
    pub fn validate(&self, rules: &MarketRules) -> Result<()> {
        let invalid = |reason: String| {
            Err(PriceError::InvalidRegion {
                region: self.region.to_string(),
                reason,
            })
        };
        if self.region.depth() != 1 {
            return invalid("a region UID has one segment".into());
        }
        if self.planets.len() > MAX_PLANETS {
            return invalid(format!("more than {MAX_PLANETS} planets"));
        }
        let mut ids = BTreeSet::new();
        for planet in &self.planets {
            if validate_identifier("planet", &planet.id).is_err() {
                return invalid(format!("malformed planet id {:?}", planet.id));
            }
            if !ids.insert(planet.id.as_str()) {
                return invalid(format!("planet {} listed twice", planet.id));
            }
            if !rules.planet_kinds.contains_key(&planet.kind) {
                return invalid(format!(
                    "planet {}: unknown kind {:?}",
                    planet.id, planet.kind
                ));
            }
            if !(1..=MAX_PLANET_LEVEL).contains(&planet.level) {
                return invalid(format!("planet {}: level must be 1..=10", planet.id));
            }
            if planet.last_tick > self.tick.saturating_add(1) {
                return invalid(format!("planet {} is ahead of its region", planet.id));
            }
            for (good, units) in &planet.stock {
                if !rules.goods.contains_key(good) || !(0..=MAX_STOCK).contains(units) {
                    return invalid(format!("planet {}: bad stock of {good:?}", planet.id));
                }
            }
        }
        Ok(())
    }
}

/// Runs production tick `tick` (the region's last tick plus one) and plans its writes.
pub fn production_tick(
    region: &Region,
    tick: u64,
    rules: &MarketRules,
    mode: WriteMode,
) -> Result<RegionTickOutcome> {
    region.validate(rules)?;
    let expected = region.tick.saturating_add(1);
    if tick != expected {
        return Err(PriceError::TickOutOfOrder {
            expected,
            got: tick,
        });
    }
    let mut updates = Vec::with_capacity(region.planets.len());
    let mut skipped = Vec::new();
    for planet in &region.planets {
        if planet.last_tick >= tick {
            skipped.push(planet.id.clone());
        } else {
            updates.push(produce(planet, tick, rules));
        }
    }
    let plan = plan_writes(&region.region, tick, &updates, mode);
    Ok(RegionTickOutcome {
        region: region.region.clone(),
        tick,
        updates,
        skipped,
        plan,
    })
}

/// One planet's tick (the planet and its kind were validated).
fn produce(planet: &Planet, tick: u64, rules: &MarketRules) -> PlanetUpdate {
    let kind = &rules.planet_kinds[&planet.kind];
    let level = i64::from(planet.level);
    let availability = kind
        .consumes
        .iter()
        .map(|(good, need)| {
            let need = need * level;
            let have = planet.stock.get(good).copied().unwrap_or(0);
            (i128::from(have) * 1000 / i128::from(need)).min(1000) as i64
        })
        .min()
        .unwrap_or(1000);
    let mut after = planet.clone();
    after.last_tick = tick;
    let mut consumed = BTreeMap::new();
    for (good, need) in &kind.consumes {
        let used = need * level * availability / 1000;
        if used > 0 {
            *after.stock.entry(good.clone()).or_insert(0) -= used;
            consumed.insert(good.clone(), used);
        }
    }
    let storage = kind.storage_per_level * level;
    let mut produced = BTreeMap::new();
    let mut wasted = BTreeMap::new();
    for (good, output) in &kind.produces {
        let made = output * level * availability / 1000;
        if made == 0 {
            continue;
        }
        let stock = after.stock.entry(good.clone()).or_insert(0);
        let room = (storage - *stock).max(0);
        let kept = made.min(room);
        *stock += kept;
        produced.insert(good.clone(), made);
        if made > kept {
            wasted.insert(good.clone(), made - kept);
        }
    }
    PlanetUpdate {
        planet: planet.id.clone(),
        produced,
        consumed,
        wasted,
        after,
    }
}

/// The table item of a planet.
pub fn planet_item(region: &PartitionUid, planet: &Planet) -> Item {
    let stock = planet
        .stock
        .iter()
        .map(|(good, units)| (good.clone(), Value::N(*units)))
        .collect();
    Item::new(Key::new(region.as_str(), format!("planet#{}", planet.id)))
        .with("kind", planet.kind.as_str())
        .with("level", i64::from(planet.level))
        .with("tick", planet.last_tick as i64)
        .with("stock", Value::M(stock))
}

/// A planet read back from its item (`None` when the item is not a well-formed planet).
pub fn planet_from_item(item: &Item) -> Option<Planet> {
    let id = item.key.sk.strip_prefix("planet#")?.to_owned();
    let Some(Value::M(stock)) = item.attributes.get("stock") else {
        return None;
    };
    let stock = stock
        .iter()
        .map(|(good, value)| value.as_i64().map(|units| (good.clone(), units)))
        .collect::<Option<BTreeMap<_, _>>>()?;
    Some(Planet {
        id,
        kind: item.str("kind")?.to_owned(),
        level: u32::try_from(item.i64("level")?).ok()?,
        stock,
        last_tick: u64::try_from(item.i64("tick")?).ok()?,
    })
}

/// The region marker item for `tick`.
pub fn region_marker(region: &PartitionUid, tick: u64) -> Item {
    Item::new(Key::new(region.as_str(), REGION_MARKER_SK)).with("tick", tick as i64)
}

/// `attribute tick < T` or absent: the guard every conditional write of tick T carries.
fn before_tick(tick: u64) -> Condition {
    Condition::Or(vec![
        Condition::NotExists("tick".into()),
        Condition::compare("tick", Comparison::Lt, tick as i64),
    ])
}

fn plan_writes(
    region: &PartitionUid,
    tick: u64,
    updates: &[PlanetUpdate],
    mode: WriteMode,
) -> Vec<WriteStep> {
    let marker = region_marker(region, tick);
    match mode {
        WriteMode::Batch => {
            let mut plan: Vec<WriteStep> = updates
                .chunks(MAX_BATCH_WRITE)
                .map(|chunk| {
                    WriteStep::Batch(
                        chunk
                            .iter()
                            .map(|update| BatchWrite::Put(planet_item(region, &update.after)))
                            .collect(),
                    )
                })
                .collect();
            plan.push(WriteStep::Put {
                item: marker,
                condition: before_tick(tick),
            });
            plan
        }
        WriteMode::Transact => {
            let operations: Vec<TransactWrite> = updates
                .iter()
                .map(|update| TransactWrite::Put {
                    table: PRODUCTION_TABLE.to_owned(),
                    item: planet_item(region, &update.after),
                    condition: Some(before_tick(tick)),
                })
                .chain(std::iter::once(TransactWrite::Put {
                    table: PRODUCTION_TABLE.to_owned(),
                    item: marker,
                    condition: Some(before_tick(tick)),
                }))
                .collect();
            operations
                .chunks(MAX_TRANSACT)
                .map(|chunk| WriteStep::Transact(chunk.to_vec()))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> MarketRules {
        MarketRules::builtin().unwrap()
    }

    /// A region of `planets` planets cycling through the four kinds, levels 1–10.
    pub(crate) fn region(planets: usize) -> Region {
        let kinds = ["mining", "agri", "forge", "refinery"];
        Region {
            region: PartitionUid::parse("region-42").unwrap(),
            tick: 0,
            planets: (0..planets)
                .map(|index| Planet {
                    id: format!("planet-{index:03}"),
                    kind: kinds[index % kinds.len()].to_owned(),
                    level: (index % 10) as u32 + 1,
                    stock: BTreeMap::from([
                        ("ore".to_owned(), 100),
                        ("ice".to_owned(), 100),
                        ("fuel".to_owned(), 10),
                    ]),
                    last_tick: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_100_planet_region_produces_the_chunked_plan() {
        let rules = rules();
        let region = region(100);
        let outcome = production_tick(&region, 1, &rules, WriteMode::Batch).unwrap();
        assert_eq!(outcome.updates.len(), 100);
        assert_eq!(outcome.plan.len(), 5, "4 batches of 25, then the marker");
        for step in &outcome.plan[..4] {
            let WriteStep::Batch(writes) = step else {
                panic!("batches first");
            };
            assert_eq!(writes.len(), 25);
        }
        assert!(matches!(&outcome.plan[4], WriteStep::Put { item, .. } if item.key.sk == "region"));
        assert_eq!(outcome.items_written(), 101);
        // Every planet exactly once.
        let keys: BTreeSet<String> = outcome.plan[..4]
            .iter()
            .flat_map(|step| match step {
                WriteStep::Batch(writes) => writes.clone(),
                _ => Vec::new(),
            })
            .map(|write| match write {
                BatchWrite::Put(item) => item.key.sk,
                BatchWrite::Delete(key) => key.sk,
            })
            .collect();
        assert_eq!(keys.len(), 100);

        let transact = production_tick(&region, 1, &rules, WriteMode::Transact).unwrap();
        let sizes: Vec<usize> = transact
            .plan
            .iter()
            .map(|step| match step {
                WriteStep::Transact(operations) => operations.len(),
                _ => panic!("transactions only"),
            })
            .collect();
        assert_eq!(sizes, vec![100, 1]);
        let small =
            production_tick(&super::tests::region(60), 1, &rules, WriteMode::Transact).unwrap();
        assert_eq!(
            small.plan.len(),
            1,
            "one bulk write for a region under 100 planets"
        );
    }

    #[test]
    fn production_follows_the_recipe_and_storage() {
        let rules = rules();
        let region = region(4);
        let outcome = production_tick(&region, 1, &rules, WriteMode::Batch).unwrap();
        // planet-000: mining level 1 → ore 40, ice 10
        let mining = &outcome.updates[0];
        assert_eq!(mining.produced["ore"], 40);
        assert_eq!(mining.after.stock["ore"], 140);
        assert_eq!(mining.after.last_tick, 1);
        // planet-002: forge level 3 needs ore 60, fuel 12; fuel 10/12 → 833 ‰ availability.
        let forge = &outcome.updates[2];
        assert_eq!(forge.consumed["fuel"], 12 * 833 / 1000);
        assert_eq!(forge.produced["alloy"], 24 * 833 / 1000);
        // Storage caps output.
        let mut full = region.clone();
        full.planets[0].stock.insert("ore".into(), 19_990);
        let outcome = production_tick(&full, 1, &rules, WriteMode::Batch).unwrap();
        assert_eq!(outcome.updates[0].after.stock["ore"], 20_000);
        assert_eq!(outcome.updates[0].wasted["ore"], 30);
    }

    #[test]
    fn a_rerun_after_a_partial_write_converges() {
        let rules = rules();
        let region = region(60);
        let clean = production_tick(&region, 1, &rules, WriteMode::Batch).unwrap();
        // The first batch of 25 landed, then the worker died.
        let mut partial = region.clone();
        for update in &clean.updates[..25] {
            let planet = partial
                .planets
                .iter_mut()
                .find(|planet| planet.id == update.planet)
                .unwrap();
            *planet = update.after.clone();
        }
        let rerun = production_tick(&partial, 1, &rules, WriteMode::Batch).unwrap();
        assert_eq!(rerun.skipped.len(), 25);
        assert_eq!(rerun.updates[..], clean.updates[25..]);
        assert_eq!(
            production_tick(&region, 1, &rules, WriteMode::Batch).unwrap(),
            clean,
            "deterministic"
        );
    }

    #[test]
    fn planet_items_round_trip() {
        let region = region(3);
        for planet in &region.planets {
            let item = planet_item(&region.region, planet);
            item.validate().unwrap();
            assert_eq!(planet_from_item(&item).as_ref(), Some(planet));
        }
        assert_eq!(planet_from_item(&region_marker(&region.region, 3)), None);
    }

    #[test]
    fn the_marker_guard_refuses_a_second_write_of_the_same_tick() {
        let region = region(1);
        let marker = region_marker(&region.region, 5);
        assert!(before_tick(5).evaluate(None));
        assert!(!before_tick(5).evaluate(Some(&marker)));
        assert!(before_tick(6).evaluate(Some(&marker)));
    }

    #[test]
    fn bad_regions_and_ticks_are_refused() {
        let rules = rules();
        let region = region(3);
        assert_eq!(
            production_tick(&region, 2, &rules, WriteMode::Batch).unwrap_err(),
            PriceError::TickOutOfOrder {
                expected: 1,
                got: 2
            }
        );
        let mut bad = region.clone();
        bad.planets[1].id = bad.planets[0].id.clone();
        assert!(production_tick(&bad, 1, &rules, WriteMode::Batch).is_err());
        let mut bad = region.clone();
        bad.planets[0].level = 0;
        assert!(production_tick(&bad, 1, &rules, WriteMode::Batch).is_err());
        let mut bad = region.clone();
        bad.planets[0].kind = "volcano".into();
        assert!(production_tick(&bad, 1, &rules, WriteMode::Batch).is_err());
        let mut bad = region;
        bad.planets[0].stock.insert("ore".into(), -5);
        assert!(matches!(
            production_tick(&bad, 1, &rules, WriteMode::Batch),
            Err(PriceError::InvalidRegion { .. })
        ));
    }
}
