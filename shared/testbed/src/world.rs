//! A deterministic synthetic world: players in scenes, talking, acting, fighting, questing.
//!
//! Each scene has a fixed cast of `fan_out` players, so one event reaches `fan_out` player
//! feeds and a scene's events share an audience (which distribute coalesces). Everything —
//! casts, kinds, texts, event ids — comes from one seeded generator, so two runs with the same
//! seed emit the same events. Every `bad_every`-th envelope is deliberately bad, cycling
//! through forged, oversized, replayed, malformed, unknown-field, bad-UID, stale and
//! unknown-gateway envelopes; the world remembers what each should be refused for.
//!
//! With `world_every > 0` the world also trades at stations and captures and breeds creatures
//! in ecology cells (one such event after every `world_every` good narrative events), over
//! the stations, regions and cells of its [`WorldLayout`].

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use worldfleet_domain::envelope::{
    ActionPayload, BreedPayload, CapturePayload, CombatOutcome, CombatPayload, DialoguePayload,
    QuestPayload, QuestStatus, TradePayload, TradeSide,
};
use worldfleet_domain::{Envelope, EventKind, EventPayload, PartitionUid, RejectReason};

/// The realm of the world's ecology cells (`wild/zone-NN/cell-NN`). Only the cells' ticks
/// publish there (their news, to the zones' district feeds): no player event's canon does.
pub const WILD_REALM: &str = "wild";

/// The world simulation's places: market regions and their stations, ecology zones and cells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorldLayout {
    pub regions: u32,
    pub stations_per_region: u32,
    /// Planets per region, ticked together every 12 s.
    pub planets_per_region: u32,
    pub zones: u32,
    pub cells_per_zone: u32,
    /// Founders of each species per cell.
    pub founders_per_species: u32,
    pub population_cap: u32,
    /// Interval between ecology ticks of a cell (5–15 s).
    pub ecology_interval_ms: u64,
    /// Ecology ticks every cell must have run before a run ends.
    pub min_ecology_ticks: u64,
}

impl Default for WorldLayout {
    fn default() -> Self {
        Self {
            regions: 2,
            stations_per_region: 4,
            planets_per_region: 100,
            zones: 2,
            cells_per_zone: 4,
            founders_per_species: 20,
            population_cap: 300,
            ecology_interval_ms: 5_000,
            min_ecology_ticks: 3,
        }
    }
}

/// The species every cell is founded with.
pub const FOUNDING_SPECIES: [&str; 3] = ["glimmerfox", "mossback", "skitterwing"];
/// The goods stations trade.
pub const TRADED_GOODS: [&str; 5] = ["ore", "ice", "alloy", "food", "fuel"];

impl WorldLayout {
    /// Every region UID (`region-NN`).
    pub fn regions(&self) -> Vec<PartitionUid> {
        (0..self.regions)
            .filter_map(|region| PartitionUid::parse(&format!("region-{region:02}")).ok())
            .collect()
    }

    /// Every station UID (`region-NN/station-N`).
    pub fn stations(&self) -> Vec<PartitionUid> {
        self.regions()
            .iter()
            .flat_map(|region| {
                (0..self.stations_per_region)
                    .filter_map(move |station| region.child(&format!("station-{station}")).ok())
            })
            .collect()
    }

    /// Every cell UID (`wild/zone-NN/cell-NN`), zone by zone.
    pub fn cells(&self) -> Vec<PartitionUid> {
        (0..self.zones)
            .flat_map(|zone| {
                (0..self.cells_per_zone).filter_map(move |cell| {
                    PartitionUid::parse(&format!("{WILD_REALM}/zone-{zone:02}/cell-{cell:02}")).ok()
                })
            })
            .collect()
    }

    /// A cell's neighbours: the next and previous cells of one ring through every zone.
    pub fn neighbours(&self, index: usize) -> Vec<PartitionUid> {
        let cells = self.cells();
        if cells.len() < 2 {
            return Vec::new();
        }
        let next = cells[(index + 1) % cells.len()].clone();
        let previous = cells[(index + cells.len() - 1) % cells.len()].clone();
        if next == previous {
            vec![next]
        } else {
            vec![next, previous]
        }
    }

    /// Founders per cell, all species together.
    pub fn founders_per_cell(&self) -> u32 {
        self.founders_per_species * FOUNDING_SPECIES.len() as u32
    }
}

/// The shape of a synthetic world.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorldSpec {
    /// Good events to emit (bad ones come on top).
    pub events: u64,
    pub players: u32,
    pub districts: u32,
    pub scenes_per_district: u32,
    /// Audience size of every event: the actor and `fan_out - 1` participants.
    pub fan_out: u32,
    pub factions: u32,
    pub seed: u64,
    /// One bad envelope after every `bad_every` good ones (0: none).
    pub bad_every: u64,
    /// The gateway the world posts as, and its key.
    pub gateway: String,
    #[serde(skip)]
    pub gateway_key: Vec<u8>,
    /// One world event (trade, capture, breed) after every `world_every` good narrative
    /// events (0: no world simulation).
    pub world_every: u64,
    pub layout: WorldLayout,
}

impl WorldSpec {
    /// A small world: 1,000 events, 200 players, 4 districts × 8 scenes, fan-out 8.
    pub fn small(seed: u64) -> Self {
        Self {
            events: 1_000,
            players: 200,
            districts: 4,
            scenes_per_district: 8,
            fan_out: 8,
            factions: 4,
            seed,
            bad_every: 50,
            gateway: "gw-synthetic".to_owned(),
            gateway_key: b"worldfleet-synthetic-gateway-key".to_vec(),
            world_every: 0,
            layout: WorldLayout::default(),
        }
    }
}

/// One envelope the world emits, with what intake should make of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// The JSON body posted to the intake queue.
    pub body: String,
    /// FIFO message group (the partition UID, or the gateway for unreadable envelopes).
    pub group: String,
    /// FIFO deduplication id.
    pub dedup_id: String,
    pub expectation: Expectation,
}

/// What should become of an emitted envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// Accepted: in the ledger, composed, published.
    Accepted { partition: String, event_id: String },
    /// Refused with `reason`; the rejection row lives at `(gateway_partition, body_hash)`.
    Rejected {
        reason: RejectReason,
        gateway_partition: String,
        body_hash: String,
    },
    /// A world event (trade, capture, breed): accepted and applied exactly once by the market
    /// or the ecology, which the world audit checks.
    World {
        kind: EventKind,
        partition: String,
        event_id: String,
    },
}

struct Scene {
    uid: PartitionUid,
    cast: Vec<String>,
}

/// The world's generator state.
pub struct World {
    spec: WorldSpec,
    random: ChaCha8Rng,
    scenes: Vec<Scene>,
    emitted_good: u64,
    emitted_bad: u64,
    emitted_world: u64,
    recent_good: Vec<String>,
}

const SAYINGS: &[&str] = &[
    "Hail, traveller, well met on this road.",
    "Where can I find the old mill?",
    "I would buy that blade for twenty gold.",
    "Leave this village or you will regret it.",
    "The ruins hold an ancient prophecy about the twin moons.",
    "Fine weather for a march.",
    "Greetings, friends of the guild!",
    "How much for the horse?",
    "They say the king once hid here from the old gods.",
    "Stand aside, or I will burn this gate down.",
];
const VERBS: &[&str] = &[
    "greet", "inspect", "trade", "bow", "forage", "craft", "read", "salute",
];
const FOES: &[&str] = &["wolf", "bandit", "troll", "wyvern", "skeleton", "rival"];
const QUESTS: &[&str] = &["the-lost-heir", "iron-road", "moonwell", "the-tithe"];

impl World {
    /// Builds the world's scenes and casts from `spec`.
    pub fn new(spec: WorldSpec) -> Self {
        let mut random = ChaCha8Rng::seed_from_u64(spec.seed);
        let players: Vec<String> = (0..spec.players.max(1))
            .map(|index| format!("p-{index:06}"))
            .collect();
        let fan_out = (spec.fan_out.max(1) as usize).min(players.len());
        let mut scenes = Vec::new();
        for district in 0..spec.districts.max(1) {
            for scene in 0..spec.scenes_per_district.max(1) {
                let uid = PartitionUid::parse(&format!(
                    "gm-{:04}/district-{district:03}/scene-{scene:03}",
                    spec.seed % 10_000
                ))
                .unwrap_or_else(|_| {
                    PartitionUid::parse("gm-0/district-0/scene-0").expect("literal uid is valid")
                });
                let cast = players
                    .choose_multiple(&mut random, fan_out)
                    .cloned()
                    .collect();
                scenes.push(Scene { uid, cast });
            }
        }
        Self {
            spec,
            random,
            scenes,
            emitted_good: 0,
            emitted_bad: 0,
            emitted_world: 0,
            recent_good: Vec::new(),
        }
    }

    /// The spec the world was built from.
    pub fn spec(&self) -> &WorldSpec {
        &self.spec
    }

    /// Every player id.
    pub fn players(&self) -> Vec<String> {
        (0..self.spec.players.max(1))
            .map(|index| format!("p-{index:06}"))
            .collect()
    }

    /// Every faction name.
    pub fn factions(&self) -> Vec<String> {
        (0..self.spec.factions)
            .map(|index| format!("faction-{index}"))
            .collect()
    }

    /// Every scene partition.
    pub fn partitions(&self) -> Vec<PartitionUid> {
        self.scenes.iter().map(|scene| scene.uid.clone()).collect()
    }

    /// Good envelopes emitted so far.
    pub fn good_emitted(&self) -> u64 {
        self.emitted_good
    }

    /// True when every good event has been emitted.
    pub fn finished(&self) -> bool {
        self.emitted_good >= self.spec.events
    }

    fn faction_of(&self, player: &str) -> Option<String> {
        if self.spec.factions == 0 {
            return None;
        }
        let index: u64 = player.trim_start_matches("p-").parse().unwrap_or(0);
        Some(format!("faction-{}", index % u64::from(self.spec.factions)))
    }

    /// The next envelope, stamped as sent at `now_ms`; `None` once the world is finished.
    pub fn next(&mut self, now_ms: u64) -> Option<Emitted> {
        if self.finished() {
            return None;
        }
        let bad_due = self.spec.bad_every > 0
            && self.emitted_good > 0
            && self.emitted_good.is_multiple_of(self.spec.bad_every)
            && self.emitted_bad < self.emitted_good / self.spec.bad_every;
        if bad_due {
            self.emitted_bad += 1;
            return Some(self.bad(now_ms));
        }
        let world_due = self.spec.world_every > 0
            && self.emitted_good > 0
            && self.emitted_good.is_multiple_of(self.spec.world_every)
            && self.emitted_world < self.emitted_good / self.spec.world_every;
        if world_due {
            self.emitted_world += 1;
            return Some(self.world_event(now_ms));
        }
        Some(self.good(now_ms))
    }

    fn event_id(&mut self) -> String {
        // Deterministic ids: the time part counts events from a fixed epoch, the rest is seeded.
        let millis = 1_700_000_000_000 + self.emitted_good + self.emitted_bad * 7;
        ulid::Ulid::from_parts(millis, self.random.random::<u128>()).to_string()
    }

    fn envelope(&mut self, now_ms: u64) -> Envelope {
        let scene_index = self.random.random_range(0..self.scenes.len());
        let cast = self.scenes[scene_index].cast.clone();
        let partition = self.scenes[scene_index].uid.clone();
        let actor_index = self.random.random_range(0..cast.len());
        let actor = cast[actor_index].clone();
        let participants: Vec<String> = cast
            .iter()
            .filter(|member| **member != actor)
            .cloned()
            .collect();
        let roll = self.random.random_range(0..100);
        let payload = if roll < 50 {
            let text = SAYINGS
                .choose(&mut self.random)
                .copied()
                .unwrap_or("Hello.");
            EventPayload::Dialogue(DialoguePayload {
                text: text.to_owned(),
                to: participants.choose(&mut self.random).cloned(),
            })
        } else if roll < 70 {
            EventPayload::Action(ActionPayload {
                verb: VERBS
                    .choose(&mut self.random)
                    .copied()
                    .unwrap_or("wait")
                    .to_owned(),
                target: None,
                text: None,
            })
        } else if roll < 90 {
            let outcomes = [
                CombatOutcome::Hit,
                CombatOutcome::Miss,
                CombatOutcome::Defeat,
                CombatOutcome::Flee,
            ];
            EventPayload::Combat(CombatPayload {
                target: FOES
                    .choose(&mut self.random)
                    .copied()
                    .unwrap_or("wolf")
                    .to_owned(),
                outcome: outcomes[self.random.random_range(0..outcomes.len())],
                damage: Some(self.random.random_range(1..80)),
            })
        } else {
            let statuses = [
                QuestStatus::Started,
                QuestStatus::Advanced,
                QuestStatus::Completed,
                QuestStatus::Failed,
            ];
            EventPayload::Quest(QuestPayload {
                quest: QUESTS
                    .choose(&mut self.random)
                    .copied()
                    .unwrap_or("q")
                    .to_owned(),
                step: self.random.random_range(1..6),
                status: statuses[self.random.random_range(0..statuses.len())],
            })
        };
        let faction = self.faction_of(&actor);
        Envelope {
            v: 1,
            gateway: self.spec.gateway.clone(),
            event_id: self.event_id(),
            sent_at_ms: now_ms,
            partition,
            kind: payload.kind(),
            actor,
            participants,
            faction,
            payload,
        }
    }

    /// World events emitted so far.
    pub fn world_emitted(&self) -> u64 {
        self.emitted_world
    }

    /// A trade at a random station (60 %), a capture (25 %) or a breed request (15 %) of
    /// founders of a random cell. Founders die, wander and get caught, so some requests name
    /// a creature that is gone: the ecology refuses those, exactly once, like any other.
    fn world_event(&mut self, now_ms: u64) -> Emitted {
        let layout = self.spec.layout.clone();
        let actor = format!(
            "p-{:06}",
            self.random.random_range(0..self.spec.players.max(1))
        );
        let roll = self.random.random_range(0..100);
        let founders = layout.founders_per_cell().max(2);
        let (partition, payload) = if roll < 60 {
            let stations = layout.stations();
            let station = stations[self.random.random_range(0..stations.len().max(1))].clone();
            let good = TRADED_GOODS[self.random.random_range(0..TRADED_GOODS.len())];
            let side = if self.random.random_bool(0.5) {
                TradeSide::Buy
            } else {
                TradeSide::Sell
            };
            let payload = EventPayload::Trade(TradePayload {
                good: good.to_owned(),
                side,
                quantity: self.random.random_range(1..50),
            });
            (station, payload)
        } else {
            let cells = layout.cells();
            let cell = cells[self.random.random_range(0..cells.len().max(1))].clone();
            let founder = |ordinal: u32| format!("{cell}~0~{ordinal}");
            let first = self.random.random_range(0..founders);
            let payload = if roll < 85 {
                EventPayload::Capture(CapturePayload {
                    creature: founder(first),
                })
            } else {
                // Founders are minted species by species: a neighbour is usually a mate.
                let second = if first + 1 < founders {
                    first + 1
                } else {
                    first - 1
                };
                EventPayload::Breed(BreedPayload {
                    parent_a: founder(first),
                    parent_b: founder(second),
                })
            };
            (cell, payload)
        };
        let envelope = Envelope {
            v: 1,
            gateway: self.spec.gateway.clone(),
            event_id: self.event_id(),
            sent_at_ms: now_ms,
            partition,
            kind: payload.kind(),
            faction: None,
            actor,
            participants: Vec::new(),
            payload,
        };
        Emitted {
            body: envelope.sign(&self.spec.gateway_key).unwrap_or_default(),
            group: envelope.partition.to_string(),
            dedup_id: envelope.event_id.clone(),
            expectation: Expectation::World {
                kind: envelope.kind,
                partition: envelope.partition.to_string(),
                event_id: envelope.event_id,
            },
        }
    }

    fn good(&mut self, now_ms: u64) -> Emitted {
        let envelope = self.envelope(now_ms);
        self.emitted_good += 1;
        let body = envelope.sign(&self.spec.gateway_key).unwrap_or_default();
        if self.recent_good.len() >= 64 {
            self.recent_good.remove(0);
        }
        self.recent_good.push(body.clone());
        Emitted {
            group: envelope.partition.to_string(),
            dedup_id: envelope.event_id.clone(),
            expectation: Expectation::Accepted {
                partition: envelope.partition.to_string(),
                event_id: envelope.event_id,
            },
            body,
        }
    }

    fn bad(&mut self, now_ms: u64) -> Emitted {
        let variant = (self.emitted_bad - 1) % 8;
        let mut envelope = self.envelope(now_ms);
        let group = envelope.partition.to_string();
        let gateway = format!("gateway#{}", self.spec.gateway);
        let unknown = "gateway#unknown".to_owned();
        let key = self.spec.gateway_key.clone();
        let (body, reason, gateway_partition) = match variant {
            0 => (
                envelope
                    .sign(b"not-the-gateway-key-at-all")
                    .unwrap_or_default(),
                RejectReason::BadSignature,
                gateway,
            ),
            1 => {
                envelope.payload = EventPayload::Dialogue(DialoguePayload {
                    text: "x".repeat(70_000),
                    to: None,
                });
                envelope.kind = EventKind::Dialogue;
                (
                    envelope.sign(&key).unwrap_or_default(),
                    RejectReason::Oversized,
                    unknown,
                )
            }
            2 => match self.recent_good.first().cloned() {
                // A verbatim copy of an accepted envelope, sent again later.
                Some(body) => {
                    let group = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|value| value["partition"].as_str().map(str::to_owned))
                        .unwrap_or(group.clone());
                    let body_hash = hex::encode(Sha256::digest(body.as_bytes()));
                    return Emitted {
                        dedup_id: format!("replay-{body_hash}"),
                        group,
                        expectation: Expectation::Rejected {
                            reason: RejectReason::Replayed,
                            gateway_partition: gateway,
                            body_hash,
                        },
                        body,
                    };
                }
                None => (
                    envelope
                        .sign(b"not-the-gateway-key-at-all")
                        .unwrap_or_default(),
                    RejectReason::BadSignature,
                    gateway,
                ),
            },
            3 => {
                let signed = envelope.sign(&key).unwrap_or_default();
                (
                    signed[..signed.len() / 2].to_owned(),
                    RejectReason::Malformed,
                    unknown,
                )
            }
            4 => {
                let signed = envelope.sign(&key).unwrap_or_default();
                (
                    signed.replacen('{', "{\"debug\":true,", 1),
                    RejectReason::Malformed,
                    gateway,
                )
            }
            5 => {
                let signed = envelope.sign(&key).unwrap_or_default();
                (
                    signed.replacen(envelope.partition.as_str(), "gm 0/district 0/scene 0", 1),
                    RejectReason::BadUid,
                    gateway,
                )
            }
            6 => {
                envelope.sent_at_ms = now_ms.saturating_sub(3_600_000);
                (
                    envelope.sign(&key).unwrap_or_default(),
                    RejectReason::ClockSkew,
                    gateway,
                )
            }
            _ => {
                envelope.gateway = "gw-unregistered".to_owned();
                (
                    envelope.sign(&key).unwrap_or_default(),
                    RejectReason::UnknownGateway,
                    "gateway#gw-unregistered".to_owned(),
                )
            }
        };
        let body_hash = hex::encode(Sha256::digest(body.as_bytes()));
        Emitted {
            dedup_id: format!("bad-{body_hash}"),
            group,
            expectation: Expectation::Rejected {
                reason,
                gateway_partition,
                body_hash,
            },
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_world_and_every_bad_kind_appears() {
        let emit = |seed| {
            let mut world = World::new(WorldSpec {
                events: 500,
                bad_every: 10,
                ..WorldSpec::small(seed)
            });
            let mut out = Vec::new();
            while let Some(emitted) = world.next(1_763_700_000_000) {
                out.push(emitted);
            }
            out
        };
        let first = emit(7);
        assert_eq!(first, emit(7));
        assert_ne!(first, emit(8));
        let reasons: std::collections::BTreeSet<_> = first
            .iter()
            .filter_map(|emitted| match &emitted.expectation {
                Expectation::Rejected { reason, .. } => Some(reason.code()),
                Expectation::Accepted { .. } | Expectation::World { .. } => None,
            })
            .collect();
        // Eight bad variants, seven reasons: truncated JSON and an unknown field are both
        // `malformed`.
        assert_eq!(reasons.len(), 7, "{reasons:?}");
        assert_eq!(
            first
                .iter()
                .filter(|e| matches!(e.expectation, Expectation::Accepted { .. }))
                .count(),
            500
        );
    }
}
