//! Partial batches: a DynamoDB `BatchWriteItem` or `BatchGetItem` cut in two, one part
//! forwarded and the other handed back as unprocessed, the way DynamoDB answers a batch that
//! ran out of capacity part way.

use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Map, Value, json};

/// A batch request cut in two.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialBatch {
    /// The request body to forward; `None` when every entry is held back.
    pub forward: Option<Vec<u8>>,
    /// The held-back entries, shaped as the response's `UnprocessedItems` (writes) or
    /// `UnprocessedKeys` (reads).
    pub unprocessed: Map<String, Value>,
    /// Entries in the request.
    pub entries: usize,
    /// Entries held back (at least one).
    pub held_back: usize,
}

/// The two batch operations, and where each keeps its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `RequestItems: {table: [WriteRequest]}`.
    Write,
    /// `RequestItems: {table: {Keys: [Key], ..}}`.
    Get,
}

impl Kind {
    fn of(operation: &str) -> Option<Kind> {
        match operation {
            "BatchWriteItem" => Some(Kind::Write),
            "BatchGetItem" => Some(Kind::Get),
            _ => None,
        }
    }

    fn unprocessed_field(self) -> &'static str {
        match self {
            Kind::Write => "UnprocessedItems",
            Kind::Get => "UnprocessedKeys",
        }
    }

    /// The entries of one table's request.
    fn entries(self, table_request: &Value) -> Option<&Vec<Value>> {
        match self {
            Kind::Write => table_request.as_array(),
            Kind::Get => table_request.get("Keys")?.as_array(),
        }
    }

    /// One table's request with only `entries` (reads keep their other fields).
    fn with_entries(self, table_request: &Value, entries: Vec<Value>) -> Value {
        match self {
            Kind::Write => Value::Array(entries),
            Kind::Get => {
                let mut request = table_request.clone();
                request["Keys"] = Value::Array(entries);
                request
            }
        }
    }
}

/// Cuts a batch request: holds back between one and all of its entries, chosen at random.
/// `None` when the body is not a batch request with at least one entry.
pub fn split(operation: &str, body: &[u8], rng: &mut impl Rng) -> Option<PartialBatch> {
    let kind = Kind::of(operation)?;
    let mut request: Value = serde_json::from_slice(body).ok()?;
    let items = request.get("RequestItems")?.as_object()?.clone();
    let mut all: Vec<(String, usize)> = Vec::new();
    for (table, table_request) in &items {
        let count = kind.entries(table_request)?.len();
        all.extend((0..count).map(|index| (table.clone(), index)));
    }
    if all.is_empty() {
        return None;
    }
    let held_back = rng.random_range(1..=all.len());
    all.shuffle(rng);
    let held: std::collections::BTreeSet<(String, usize)> =
        all.into_iter().take(held_back).collect();

    let mut forwarded = Map::new();
    let mut unprocessed = Map::new();
    let mut entries = 0;
    for (table, table_request) in &items {
        let list = kind.entries(table_request)?;
        entries += list.len();
        let (mut keep, mut hold) = (Vec::new(), Vec::new());
        for (index, entry) in list.iter().enumerate() {
            if held.contains(&(table.clone(), index)) {
                hold.push(entry.clone());
            } else {
                keep.push(entry.clone());
            }
        }
        if !keep.is_empty() {
            forwarded.insert(table.clone(), kind.with_entries(table_request, keep));
        }
        if !hold.is_empty() {
            unprocessed.insert(table.clone(), kind.with_entries(table_request, hold));
        }
    }
    let forward = if forwarded.is_empty() {
        None
    } else {
        request["RequestItems"] = Value::Object(forwarded);
        Some(serde_json::to_vec(&request).ok()?)
    };
    Some(PartialBatch {
        forward,
        unprocessed,
        entries,
        held_back,
    })
}

/// The answer when every entry was held back: nothing processed, everything unprocessed.
pub fn nothing_processed(operation: &str, unprocessed: &Map<String, Value>) -> Option<Vec<u8>> {
    let kind = Kind::of(operation)?;
    let body = match kind {
        Kind::Write => json!({ "UnprocessedItems": unprocessed }),
        Kind::Get => {
            let responses: Map<String, Value> = unprocessed
                .keys()
                .map(|table| (table.clone(), json!([])))
                .collect();
            json!({ "Responses": responses, "UnprocessedKeys": unprocessed })
        }
    };
    serde_json::to_vec(&body).ok()
}

/// Adds the held-back entries to the upstream's answer to the forwarded part. `None` when the
/// answer is not a JSON object (it is then passed on untouched).
pub fn merge(
    operation: &str,
    response: &[u8],
    unprocessed: &Map<String, Value>,
) -> Option<Vec<u8>> {
    let kind = Kind::of(operation)?;
    let mut body: Value = serde_json::from_slice(response).ok()?;
    let object = body.as_object_mut()?;
    let field = object
        .entry(kind.unprocessed_field())
        .or_insert_with(|| Value::Object(Map::new()));
    let left = field.as_object_mut()?;
    for (table, held) in unprocessed {
        match (kind, left.get_mut(table)) {
            (Kind::Write, Some(Value::Array(existing))) => {
                existing.extend(held.as_array().cloned().unwrap_or_default());
            }
            (Kind::Get, Some(existing)) => {
                let more = held.get("Keys").and_then(Value::as_array).cloned();
                if let Some(keys) = existing.get_mut("Keys").and_then(Value::as_array_mut) {
                    keys.extend(more.unwrap_or_default());
                }
            }
            _ => {
                left.insert(table.clone(), held.clone());
            }
        }
    }
    serde_json::to_vec(&body).ok()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn write_request(count: usize) -> Vec<u8> {
        let puts: Vec<Value> = (0..count)
            .map(|index| json!({"PutRequest": {"Item": {"pk": {"S": format!("p{index}")}}}}))
            .collect();
        serde_json::to_vec(&json!({"RequestItems": {"ledger": puts}})).unwrap()
    }

    fn keys_of(entries: &Value) -> Vec<String> {
        entries
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                entry["PutRequest"]["Item"]["pk"]["S"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn a_cut_write_batch_loses_and_repeats_no_entry() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut saw_all_held = false;
        let mut saw_some_forwarded = false;
        for _ in 0..200 {
            let cut = split("BatchWriteItem", &write_request(25), &mut rng).unwrap();
            assert_eq!(cut.entries, 25);
            assert!((1..=25).contains(&cut.held_back));
            let held = keys_of(&cut.unprocessed["ledger"]);
            assert_eq!(held.len(), cut.held_back);
            let forwarded = match &cut.forward {
                Some(body) => {
                    saw_some_forwarded = true;
                    let request: Value = serde_json::from_slice(body).unwrap();
                    keys_of(&request["RequestItems"]["ledger"])
                }
                None => {
                    saw_all_held = true;
                    Vec::new()
                }
            };
            let mut together: Vec<String> = held.into_iter().chain(forwarded).collect();
            together.sort();
            let mut expected: Vec<String> = (0..25).map(|index| format!("p{index}")).collect();
            expected.sort();
            assert_eq!(together, expected);
        }
        assert!(saw_all_held && saw_some_forwarded);
    }

    #[test]
    fn held_back_entries_join_the_upstream_s_own_unprocessed_ones() {
        let mut held = Map::new();
        held.insert(
            "ledger".into(),
            json!([{"DeleteRequest": {"Key": {"pk": {"S": "a"}}}}]),
        );
        let upstream =
            br#"{"UnprocessedItems":{"ledger":[{"DeleteRequest":{"Key":{"pk":{"S":"b"}}}}]}}"#;
        let merged: Value =
            serde_json::from_slice(&merge("BatchWriteItem", upstream, &held).unwrap()).unwrap();
        assert_eq!(
            merged["UnprocessedItems"]["ledger"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let empty: Value = serde_json::from_slice(
            &merge("BatchWriteItem", b"{\"UnprocessedItems\":{}}", &held).unwrap(),
        )
        .unwrap();
        assert_eq!(empty["UnprocessedItems"]["ledger"], held["ledger"]);
        let none: Value =
            serde_json::from_slice(&nothing_processed("BatchWriteItem", &held).unwrap()).unwrap();
        assert_eq!(none["UnprocessedItems"]["ledger"], held["ledger"]);
        assert!(merge("BatchWriteItem", b"not json", &held).is_none());
    }

    #[test]
    fn a_cut_read_batch_keeps_its_read_options() {
        let request = json!({"RequestItems": {"canon": {
            "Keys": [{"pk": {"S": "a"}}, {"pk": {"S": "b"}}, {"pk": {"S": "c"}}],
            "ConsistentRead": true
        }}});
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let cut = split(
            "BatchGetItem",
            &serde_json::to_vec(&request).unwrap(),
            &mut rng,
        )
        .unwrap();
        assert_eq!(cut.entries, 3);
        let held = &cut.unprocessed["canon"];
        assert_eq!(held["ConsistentRead"], json!(true));
        assert_eq!(held["Keys"].as_array().unwrap().len(), cut.held_back);
        if let Some(body) = &cut.forward {
            let forwarded: Value = serde_json::from_slice(body).unwrap();
            let keys = forwarded["RequestItems"]["canon"]["Keys"]
                .as_array()
                .unwrap();
            assert_eq!(keys.len() + cut.held_back, 3);
            assert_eq!(
                forwarded["RequestItems"]["canon"]["ConsistentRead"],
                json!(true)
            );
        }
        let upstream = br#"{"Responses":{"canon":[{"pk":{"S":"a"}}]},"UnprocessedKeys":{}}"#;
        let merged: Value =
            serde_json::from_slice(&merge("BatchGetItem", upstream, &cut.unprocessed).unwrap())
                .unwrap();
        assert_eq!(merged["UnprocessedKeys"]["canon"], *held);
        assert_eq!(merged["Responses"]["canon"].as_array().unwrap().len(), 1);
        let none: Value =
            serde_json::from_slice(&nothing_processed("BatchGetItem", &cut.unprocessed).unwrap())
                .unwrap();
        assert_eq!(none["Responses"]["canon"], json!([]));
    }

    #[test]
    fn other_requests_are_not_cut() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(split("PutItem", &write_request(2), &mut rng).is_none());
        assert!(split("BatchWriteItem", &write_request(0), &mut rng).is_none());
        assert!(split("BatchWriteItem", b"{", &mut rng).is_none());
    }
}
