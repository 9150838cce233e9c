//! Feed entries as pages and observations store them: compact JSON rows.
//!
//! DynamoDB bills a write by the kilobyte of the item, rounded up, and every feed page is
//! written twice (the page, and the player's observation in the memory table). Written as an
//! array of objects, an entry spells its seven field names and repeats its page's partition and
//! kind: about 190 bytes around the line itself. Stored compact, the `entries` attribute is one
//! JSON object (still a string attribute, readable from any language):
//!
//! ```json
//! {"v":1,"partitions":["gm-1/district-2/scene-3"],"kinds":["dialogue"],"actors":["p-1"],
//!  "accepted_base_ms":1763700000000,"rows":[[0,"01JD3Q7Z8X9Y0A1B2C3D4E5F6G",0,0,0,"hello",0]]}
//! ```
//!
//! Each row is `[seq - first_seq, event_id, index into partitions, index into kinds, index into
//! actors, text, accepted_at_ms - accepted_base_ms]`; the page's `first_seq` is an attribute of
//! the page (and the sort key of an observation). A scene's page repeats one partition, a few
//! kinds and its cast of actors, so the lists stay short. Test `a_page_of_scene_entries_is_at_most_61_percent_of_its_json_size` measures the
//! saving. An array of entry objects, as versions before 2026-12-08 wrote, is still read.

use serde::{Deserialize, Serialize};
use worldfleet_domain::{EventKind, FeedEntry, PartitionUid};
use worldfleet_ports::Value;

use crate::error::{Error, Result};
use crate::position_in;

/// The layout version in the `v` field.
pub const COMPACT_V1: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StoredEntries {
    v: u32,
    /// The distinct partitions of the entries, in first-seen order.
    partitions: Vec<String>,
    /// The distinct kinds' wire names, in first-seen order.
    kinds: Vec<String>,
    /// The distinct actors, in first-seen order.
    actors: Vec<String>,
    /// The earliest `accepted_at_ms` of the entries: rows hold theirs relative to it.
    accepted_base_ms: u64,
    rows: Vec<Row>,
}

/// `[offset, event_id, partition index, kind index, actor index, text, accepted offset]`; the
/// offset is `seq - first_seq` (entries of a page need not be consecutive: a plan's lost events
/// leave their numbers unused), the accepted offset `accepted_at_ms - accepted_base_ms`.
#[derive(Serialize, Deserialize)]
struct Row(u64, String, u32, u32, u32, String, u64);

/// Encodes `entries`, which start at or after `first_seq`, as the `entries` attribute value.
pub fn encode(first_seq: u64, entries: &[FeedEntry], what: &str) -> Result<Value> {
    let corrupt = |reason: String| Error::Corrupt {
        what: what.to_owned(),
        reason,
    };
    let mut stored = StoredEntries {
        v: COMPACT_V1,
        partitions: Vec::new(),
        kinds: Vec::new(),
        actors: Vec::new(),
        accepted_base_ms: entries
            .iter()
            .map(|entry| entry.accepted_at_ms)
            .min()
            .unwrap_or(0),
        rows: Vec::with_capacity(entries.len()),
    };
    for entry in entries {
        let offset = entry.seq.checked_sub(first_seq).ok_or_else(|| {
            corrupt(format!(
                "entry {} has seq {} before the page's first {first_seq}",
                entry.event_id, entry.seq
            ))
        })?;
        let partition = position_in(&mut stored.partitions, entry.partition.as_str());
        let kind = position_in(&mut stored.kinds, entry.kind.as_str());
        let actor = position_in(&mut stored.actors, entry.actor.as_str());
        stored.rows.push(Row(
            offset,
            entry.event_id.clone(),
            partition,
            kind,
            actor,
            entry.text.clone(),
            entry.accepted_at_ms - stored.accepted_base_ms,
        ));
    }
    serde_json::to_string(&stored)
        .map(Value::S)
        .map_err(|error| corrupt(error.to_string()))
}

/// Decodes entries stored by [`encode`] (or as an array of entry objects by an earlier
/// version) in a page or observation whose first sequence number is `first_seq`.
pub fn decode(first_seq: u64, value: Option<&Value>, what: &str) -> Result<Vec<FeedEntry>> {
    let corrupt = |reason: String| Error::Corrupt {
        what: what.to_owned(),
        reason,
    };
    let text = match value {
        None => return Ok(Vec::new()),
        Some(Value::S(text)) => text,
        Some(_) => return Err(corrupt("entries are not a string attribute".to_owned())),
    };
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).map_err(|error| corrupt(error.to_string()));
    }
    let stored: StoredEntries =
        serde_json::from_str(text).map_err(|error| corrupt(error.to_string()))?;
    if stored.v != COMPACT_V1 {
        return Err(corrupt(format!(
            "entries layout version {} is not known to this build",
            stored.v
        )));
    }
    let partitions = stored
        .partitions
        .iter()
        .map(|raw| PartitionUid::parse(raw).map_err(|error| corrupt(error.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let kinds = stored
        .kinds
        .iter()
        .map(|name| {
            EventKind::ALL
                .into_iter()
                .find(|kind| kind.as_str() == name)
                .ok_or_else(|| corrupt(format!("unknown event kind {name:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    stored
        .rows
        .into_iter()
        .map(
            |Row(offset, event_id, partition, kind, actor, text, accepted)| {
                let partition = partitions
                    .get(partition as usize)
                    .ok_or_else(|| corrupt(format!("partition index {partition} out of range")))?;
                let kind = kinds
                    .get(kind as usize)
                    .ok_or_else(|| corrupt(format!("kind index {kind} out of range")))?;
                let actor = stored
                    .actors
                    .get(actor as usize)
                    .ok_or_else(|| corrupt(format!("actor index {actor} out of range")))?;
                let accepted_at_ms = stored
                    .accepted_base_ms
                    .checked_add(accepted)
                    .ok_or_else(|| corrupt(format!("accepted offset {accepted} overflows")))?;
                Ok(FeedEntry {
                    seq: first_seq
                        .checked_add(offset)
                        .ok_or_else(|| corrupt(format!("offset {offset} overflows")))?,
                    event_id,
                    partition: partition.clone(),
                    kind: *kind,
                    actor: actor.clone(),
                    text,
                    accepted_at_ms,
                })
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, partition: &str, kind: EventKind) -> FeedEntry {
        FeedEntry {
            seq,
            event_id: format!("01JD3Q7Z8X9Y0A1B2C3D4E{seq:04}"),
            partition: PartitionUid::parse(partition).unwrap(),
            kind,
            actor: "p-000042".into(),
            text: "Runes glow faintly under the moss as the door gives way.".into(),
            accepted_at_ms: 1_763_700_000_000 + seq,
        }
    }

    fn scene_page() -> Vec<FeedEntry> {
        vec![
            entry(41, "gm-0001/district-003/scene-012", EventKind::Dialogue),
            entry(42, "gm-0001/district-003/scene-012", EventKind::Action),
            entry(44, "gm-0001/district-003/scene-012", EventKind::Dialogue),
            entry(45, "gm-0001/district-004/scene-001", EventKind::Combat),
            entry(46, "gm-0001/district-003/scene-012", EventKind::Dialogue),
        ]
    }

    fn text_of(value: Value) -> String {
        match value {
            Value::S(text) => text,
            other => panic!("a string attribute expected, got {other:?}"),
        }
    }

    #[test]
    fn entries_round_trip_with_gaps_and_several_partitions() {
        let entries = scene_page();
        let value = encode(41, &entries, "page").unwrap();
        assert_eq!(decode(41, Some(&value), "page").unwrap(), entries);
        assert_eq!(decode(41, None, "page").unwrap(), Vec::<FeedEntry>::new());
        let stored: serde_json::Value = serde_json::from_str(&text_of(value)).unwrap();
        assert_eq!(stored["v"], 1);
        assert_eq!(stored["partitions"].as_array().unwrap().len(), 2);
        assert_eq!(stored["rows"][2][0], 3, "offset of seq 44 from 41");
    }

    #[test]
    fn a_page_of_scene_entries_is_at_most_61_percent_of_its_json_size() {
        let entries = scene_page();
        let objects = serde_json::to_string(&entries).unwrap().len();
        let compact = text_of(encode(41, &entries, "page").unwrap()).len();
        // 1,147 bytes as objects; 741 compact with actors and times inline, 691 as stored.
        assert!(
            compact * 100 <= objects * 61,
            "compact {compact} bytes against {objects} as objects"
        );
    }

    #[test]
    fn entries_stored_as_objects_by_an_earlier_version_are_still_read() {
        let entries = scene_page();
        let objects = Value::S(serde_json::to_string(&entries).unwrap());
        assert_eq!(decode(41, Some(&objects), "page").unwrap(), entries);
    }

    #[test]
    fn damaged_or_unknown_encodings_are_refused_with_the_reason() {
        let text = text_of(encode(41, &scene_page(), "page").unwrap());
        let truncated = Value::S(text[..text.len() / 2].to_owned());
        let error = decode(41, Some(&truncated), "page p").unwrap_err();
        assert!(error.to_string().contains("corrupt page p"), "{error}");
        let future = Value::S(text.replacen("\"v\":1", "\"v\":9", 1));
        let error = decode(41, Some(&future), "page p").unwrap_err();
        assert!(error.to_string().contains("version 9"), "{error}");
        let bad_index = Value::S(
            r#"{"v":1,"partitions":[],"kinds":["dialogue"],"actors":["a"],"accepted_base_ms":1,"rows":[[0,"e",0,0,0,"t",1]]}"#
                .to_owned(),
        );
        let error = decode(41, Some(&bad_index), "page p").unwrap_err();
        assert!(error.to_string().contains("partition index 0"), "{error}");
        let error = decode(41, Some(&Value::N(3)), "page p").unwrap_err();
        assert!(error.to_string().contains("not a string"), "{error}");
        assert!(
            encode(50, &scene_page(), "page")
                .unwrap_err()
                .to_string()
                .contains("before the page's first")
        );
    }
}
