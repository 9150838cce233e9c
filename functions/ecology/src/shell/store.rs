//! How cells and their inputs are stored in the ecology table.
//!
//! Under `pk = cell UID`:
//!
//! | sort key | what |
//! |---|---|
//! | `state` | the [`CellState`] (binary, see below), its `tick`, `population`, the last tick's [`Outbox`] (binary), running [`CellTotals`] (JSON), `updated_at_ms` |
//! | `pending#KEY` | an input waiting for the next tick ([`PendingInput`]) |
//! | `seen#KEY` | an input consumed: the tick that consumed it and its outcome |
//! | `captured#REQUEST` | a creature handed to a player |
//! | `returned#KEY` | a migrant the cell refused, kept rather than destroyed |
//!
//! `KEY` is `a#CREATURE@SOURCE@TICK` for a migrant, `c#REQUEST` for a capture and `b#REQUEST`
//! for a breed request. **Exactly once:** the input stage writes `pending#KEY` only if neither
//! `pending#KEY` nor `seen#KEY` exists (one transaction), and the tick that consumes it deletes
//! `pending#KEY` and writes `seen#KEY` in the same transaction as the state it applied it to,
//! conditioned on the tick it read. So an input is applied in exactly one tick, and a
//! re-delivered message finds its marker and is dropped. Seen markers outlive the queues'
//! 4-day retention (7 days), so no redelivery can outlive its marker.
//!
//! **Encoding.** The state and the outbox are read and rewritten whole at every tick, so they
//! are stored as a binary attribute: one version byte ([`BINARY_V1`]), then the value in
//! postcard's encoding (fields in declaration order, integers as varints, no field names). A
//! 300-creature genesis cell is 24 KB in binary against 71 KB as JSON (test
//! `a_cell_is_stored_in_binary_and_read_back_unchanged`), and the JSON text was the largest CPU
//! cost of a tick's shell. Cells written as JSON text by earlier
//! versions are still read; the next tick rewrites them in binary. Small values (totals, inputs)
//! stay JSON.

use serde::{Deserialize, Serialize};
use worldfleet_domain::names::ECOLOGY_TABLE;
use worldfleet_ports::{Condition, Item, Key, TTL_ATTRIBUTE, TransactWrite, Value};

use crate::error::{EcologyError, Result};
use crate::sim::{
    BreedRequest, CaptureRequest, Captured, CellState, Migrant, NewsEvent, TickCounts,
};

/// Sort key of a cell's state.
pub const STATE_SK: &str = "state";
/// How long a seen marker is kept, seconds (longer than any queue retains a message).
pub const SEEN_LIFETIME_SECS: u64 = 7 * 24 * 3600;

/// The key of a cell's state.
pub fn state_key(cell: &str) -> Key {
    Key::new(cell, STATE_SK)
}

/// An input waiting under its cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PendingInput {
    Arrival(Migrant),
    Capture(CaptureRequest),
    Breed(BreedRequest),
}

impl PendingInput {
    /// The input's key, unique per input (see the module comment).
    pub fn key(&self) -> String {
        match self {
            Self::Arrival(migrant) => format!(
                "a#{}@{}@{}",
                migrant.creature.id, migrant.source, migrant.departed_tick
            ),
            Self::Capture(capture) => format!("c#{}", capture.request_id),
            Self::Breed(breed) => format!("b#{}", breed.request_id),
        }
    }

    /// The key the pure tick reports a rejection of this input under.
    pub fn rejection_key(&self) -> &str {
        match self {
            Self::Arrival(migrant) => migrant.creature.id.as_str(),
            Self::Capture(capture) => &capture.request_id,
            Self::Breed(breed) => &breed.request_id,
        }
    }
}

/// The key of a pending input.
pub fn pending_key(cell: &str, input_key: &str) -> Key {
    Key::new(cell, format!("pending#{input_key}"))
}

/// The key of an input's seen marker.
pub fn seen_key(cell: &str, input_key: &str) -> Key {
    Key::new(cell, format!("seen#{input_key}"))
}

/// What a tick owes the world once its state is written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbox {
    pub tick: u64,
    /// When the tick was applied, Unix milliseconds (stamps its news, so a re-run is identical).
    pub applied_at_ms: u64,
    pub emigrants: Vec<Migrant>,
    pub news: Vec<NewsEvent>,
    pub captured: Vec<Captured>,
    /// Migrants the cell refused, handed back by the tick.
    pub returned: Vec<Migrant>,
}

/// Running head counts of a cell since genesis: the audit checks them against the creatures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellTotals {
    pub founders: u64,
    pub arrived: u64,
    pub born: u64,
    pub died: u64,
    pub culled: u64,
    pub captured: u64,
    pub emigrated: u64,
    pub returned: u64,
    pub news: u64,
    pub lineages_founded: u64,
    pub inputs_applied: u64,
    pub inputs_refused: u64,
}

impl CellTotals {
    /// Adds one tick's counts.
    pub fn add(&mut self, counts: &TickCounts) {
        self.arrived += u64::from(counts.arrived);
        self.born += u64::from(counts.born);
        self.died += u64::from(counts.died);
        self.culled += u64::from(counts.culled);
        self.captured += u64::from(counts.captured);
        self.emigrated += u64::from(counts.emigrated);
    }

    /// `founders + arrived + born − died − culled − captured − emigrated`: the population the
    /// counts say the cell has.
    pub fn expected_population(&self) -> i64 {
        (self.founders + self.arrived + self.born) as i64
            - (self.died + self.culled + self.captured + self.emigrated) as i64
    }
}

/// A cell as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCell {
    pub state: CellState,
    pub outbox: Option<Outbox>,
    pub totals: CellTotals,
    pub updated_at_ms: u64,
}

/// The first byte of a binary-encoded attribute: postcard, version 1 of the layout.
pub const BINARY_V1: u8 = 1;

/// Reads `attribute` as binary ([`BINARY_V1`]) or as JSON text.
fn decode<T: serde::de::DeserializeOwned>(item: &Item, attribute: &str) -> Result<Option<T>> {
    let corrupt = |reason: &dyn std::fmt::Display| {
        EcologyError::corrupt(format!("{attribute} of {}", item.key), reason)
    };
    match item.attributes.get(attribute) {
        None => Ok(None),
        Some(Value::S(json)) => serde_json::from_str(json)
            .map(Some)
            .map_err(|error| corrupt(&error)),
        Some(Value::B(bytes)) => match bytes.split_first() {
            Some((&BINARY_V1, body)) => postcard::from_bytes(body)
                .map(Some)
                .map_err(|error| corrupt(&error)),
            Some((version, _)) => Err(corrupt(&format!(
                "binary encoding version {version} is not known to this build"
            ))),
            None => Err(corrupt(&"empty binary value")),
        },
        Some(_) => Err(corrupt(&"neither text nor binary")),
    }
}

fn encode<T: Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|error| EcologyError::corrupt(what, error))
}

fn encode_binary<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>> {
    postcard::to_extend(value, vec![BINARY_V1]).map_err(|error| EcologyError::corrupt(what, error))
}

impl StoredCell {
    /// Decodes a `state` item.
    pub fn from_item(item: &Item) -> Result<Self> {
        let state = decode(item, "state")?
            .ok_or_else(|| EcologyError::corrupt(format!("cell {}", item.key), "no state"))?;
        Ok(Self {
            state,
            outbox: decode(item, "outbox")?,
            totals: decode(item, "totals")?.unwrap_or_default(),
            updated_at_ms: item.i64("updated_at_ms").unwrap_or(0).max(0) as u64,
        })
    }

    /// The state item.
    pub fn to_item(&self) -> Result<Item> {
        let mut item = Item::new(state_key(self.state.cell.as_str()))
            .with("tick", self.state.tick as i64)
            .with("state", encode_binary(&self.state, "cell state")?)
            .with("totals", encode(&self.totals, "cell totals")?)
            .with("population", self.state.creatures.len() as i64)
            .with("updated_at_ms", self.updated_at_ms as i64);
        if let Some(outbox) = &self.outbox {
            item = item.with("outbox", encode_binary(outbox, "outbox")?);
        }
        item.validate()?;
        Ok(item)
    }
}

/// Decodes a pending input item.
pub fn pending_from_item(item: &Item) -> Result<PendingInput> {
    decode(item, "input")?.ok_or_else(|| EcologyError::corrupt(format!("{}", item.key), "no input"))
}

/// The transaction that stores `input` as pending under `cell`, unless it is pending or seen
/// already, and only if the cell exists.
pub fn store_pending(cell: &str, input: &PendingInput) -> Result<Vec<TransactWrite>> {
    let key = input.key();
    let item = Item::new(pending_key(cell, &key)).with("input", encode(input, "input")?);
    Ok(vec![
        TransactWrite::Put {
            table: ECOLOGY_TABLE.to_owned(),
            item,
            condition: Some(Condition::ItemNotExists),
        },
        TransactWrite::ConditionCheck {
            table: ECOLOGY_TABLE.to_owned(),
            key: seen_key(cell, &key),
            condition: Condition::ItemNotExists,
        },
        TransactWrite::ConditionCheck {
            table: ECOLOGY_TABLE.to_owned(),
            key: state_key(cell),
            condition: Condition::ItemExists,
        },
    ])
}

/// The seen marker of an input consumed by `tick` with `outcome` (`applied` or a reason).
pub fn seen_item(cell: &str, input_key: &str, tick: u64, outcome: &str, now_secs: u64) -> Item {
    Item::new(seen_key(cell, input_key))
        .with("tick", tick as i64)
        .with("outcome", outcome)
        .with(TTL_ATTRIBUTE, (now_secs + SEEN_LIFETIME_SECS) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rules;
    use crate::sim::{Founders, NewsKind, genesis};
    use worldfleet_domain::PartitionUid;

    fn stored_cell() -> StoredCell {
        let uid = |raw: &str| PartitionUid::parse(raw).unwrap();
        let founders: Vec<Founders> = ["glimmerfox", "mossback", "skitterwing"]
            .iter()
            .map(|species| Founders {
                species: (*species).to_owned(),
                count: 100,
            })
            .collect();
        let state = genesis(
            uid("realm/zone-01/cell-0001"),
            800,
            vec![uid("realm/zone-01/cell-0002")],
            &founders,
            &Rules::builtin().unwrap(),
        )
        .unwrap();
        let migrant = Migrant {
            source: state.cell.clone(),
            destination: uid("realm/zone-01/cell-0002"),
            departed_tick: 3,
            creature: state.creatures[0].clone(),
        };
        let outbox = Outbox {
            tick: 3,
            applied_at_ms: 1_763_700_000_000,
            emigrants: vec![migrant.clone()],
            news: vec![NewsEvent {
                cell: state.cell.clone(),
                zone: uid("realm/zone-01"),
                tick: 3,
                kind: NewsKind::PopulationDoubled {
                    species: "mossback".into(),
                    from: 50,
                    to: 100,
                },
                headline: "Mossbacks thrive in cell-0001".into(),
            }],
            captured: vec![Captured {
                request_id: "req-1".into(),
                player_id: "p-000042".into(),
                creature: state.creatures[1].clone(),
            }],
            returned: vec![migrant],
        };
        StoredCell {
            state,
            outbox: Some(outbox),
            totals: CellTotals {
                founders: 300,
                ..CellTotals::default()
            },
            updated_at_ms: 1_763_700_000_000,
        }
    }

    #[test]
    fn a_cell_is_stored_in_binary_and_read_back_unchanged() {
        let cell = stored_cell();
        let item = cell.to_item().unwrap();
        let Some(Value::B(state)) = item.attributes.get("state") else {
            panic!(
                "the state is a binary attribute: {:?}",
                item.attributes.get("state")
            );
        };
        assert_eq!(state[0], BINARY_V1);
        let json = serde_json::to_string(&cell.state).unwrap();
        assert!(
            state.len() * 2 < json.len(),
            "binary {} bytes against JSON {}",
            state.len(),
            json.len()
        );
        assert_eq!(StoredCell::from_item(&item).unwrap(), cell);
    }

    #[test]
    fn a_cell_stored_as_json_text_by_an_earlier_version_is_still_read() {
        let cell = stored_cell();
        let mut item = cell.to_item().unwrap();
        item.attributes.insert(
            "state".into(),
            Value::S(serde_json::to_string(&cell.state).unwrap()),
        );
        item.attributes.insert(
            "outbox".into(),
            Value::S(serde_json::to_string(&cell.outbox).unwrap()),
        );
        assert_eq!(StoredCell::from_item(&item).unwrap(), cell);
    }

    #[test]
    fn an_unknown_or_damaged_encoding_is_refused_with_the_reason() {
        let cell = stored_cell();
        let mut item = cell.to_item().unwrap();
        let Some(Value::B(state)) = item.attributes.get_mut("state") else {
            panic!("binary state");
        };
        state[0] = 9;
        let error = StoredCell::from_item(&item).unwrap_err().to_string();
        assert!(error.contains("version 9"), "{error}");
        let Some(Value::B(state)) = item.attributes.get_mut("state") else {
            panic!("binary state");
        };
        state[0] = BINARY_V1;
        state.truncate(state.len() / 2);
        let error = StoredCell::from_item(&item).unwrap_err().to_string();
        assert!(error.contains("state of"), "{error}");
        item.attributes.insert("state".into(), Value::N(1));
        let error = StoredCell::from_item(&item).unwrap_err().to_string();
        assert!(error.contains("neither text nor binary"), "{error}");
    }
}
