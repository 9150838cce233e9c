//! The published gateway contract (`docs/CONTRACT.md`) against the schema and the code.
//!
//! Each table the contract marks *checked* is parsed here and compared with
//! `events/schema/envelope.v1.json` and with what intake, distribute's tables and the domain
//! actually do, so a change to any of the three that the others do not follow fails here.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use worldfleet_domain::envelope::audience_of;
use worldfleet_domain::names::{ALL_TABLES, FEEDS_TABLE, REJECTIONS_TABLE};
use worldfleet_domain::{EventKind, FeedEntry, FeedId, FeedPage, PartitionUid, RejectReason};
use worldfleet_embedded::testing::TempStore;
use worldfleet_intake::rejections::locate;
use worldfleet_intake::validate::check;
use worldfleet_intake::{GatewayKeys, Intake, IntakeConfig};
use worldfleet_kit::testing::declare;
use worldfleet_kit::{StageContext, StageHandler};
use worldfleet_ports::{ManualClock, ReceivedMessage};
use worldfleet_tables::feed::{READER_PREFIX, TRIM_SORT_KEY, TRIMMED_THROUGH, commit_checkpoint};
use worldfleet_tables::plan::{COUNTER_NEXT, counter_key, page_item, page_sort_key};

const KEY_HEX: &str = "73616d706c652d676174657761792d6b65792d33322d62797465732d6c6f6e67";
const NOW: u64 = 1_763_700_000_000;
const WINDOW: Duration = Duration::from_secs(300);

fn repo_file(path: &str) -> String {
    let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("read {full}: {error}"))
}

fn contract() -> String {
    repo_file("docs/CONTRACT.md")
}

fn schema() -> Value {
    serde_json::from_str(&repo_file("events/schema/envelope.v1.json")).unwrap()
}

/// The body rows of the first Markdown table after the first line containing `heading`.
fn table_after(document: &str, heading: &str) -> Vec<Vec<String>> {
    let start = document
        .lines()
        .position(|line| line.contains(heading))
        .unwrap_or_else(|| panic!("no line containing {heading:?}"));
    document
        .lines()
        .skip(start + 1)
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The backticked words of `cell`, leaving out what is inside parentheses.
fn names(cell: &str) -> BTreeSet<String> {
    let mut outside = String::new();
    let mut depth = 0_u32;
    for character in cell.chars() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => outside.push(character),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn key() -> Vec<u8> {
    hex::decode(KEY_HEX).unwrap()
}

fn keys() -> GatewayKeys {
    GatewayKeys::parse(&format!("gw-sample={KEY_HEX}")).unwrap()
}

fn sample(kind: &str) -> Value {
    let mut value: Value =
        serde_json::from_str(&repo_file(&format!("events/samples/{kind}.json"))).unwrap();
    value["sent_at_ms"] = json!(NOW);
    value
}

fn signed_with(mut envelope: Value, key: &[u8]) -> String {
    envelope.as_object_mut().unwrap().remove("signature");
    let canonical = worldfleet_domain::envelope::canonical_bytes(&envelope).unwrap();
    envelope["signature"] = worldfleet_domain::envelope::signature_hex(key, &canonical)
        .unwrap()
        .into();
    envelope.to_string()
}

/// `kind`'s sample changed by `change`, signed with the sample key.
fn changed(kind: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut envelope = sample(kind);
    change(&mut envelope);
    signed_with(envelope, &key())
}

/// Intake's verdict: `accepted` or the reason code.
fn verdict(body: &str) -> String {
    match check(body.as_bytes(), &keys(), NOW, WINDOW) {
        Ok(_) => "accepted".to_owned(),
        Err(refusal) => refusal.reason.code().to_owned(),
    }
}

/// The schema's verdict, or `None` when the body is not JSON at all — read as intake reads it,
/// so a repeated member name (which a schema cannot see) makes it not JSON.
fn schema_valid(body: &str) -> Option<bool> {
    let value = worldfleet_domain::json::parse_value(body.as_bytes()).ok()?;
    Some(
        jsonschema::validator_for(&schema())
            .unwrap()
            .is_valid(&value),
    )
}

#[test]
fn the_envelope_fields_are_the_schemas() {
    let schema = schema();
    let rows = table_after(&contract(), "## 2. The envelope");
    let documented: BTreeSet<String> = rows.iter().flat_map(|row| names(&row[0])).collect();
    let properties: BTreeSet<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(documented, properties);
    let documented_required: BTreeSet<String> = rows
        .iter()
        .filter(|row| row[1] == "yes")
        .flat_map(|row| names(&row[0]))
        .collect();
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(documented_required, required);
}

#[test]
fn the_kinds_their_partition_depths_and_payload_fields_are_the_schemas_and_intakes() {
    let schema = schema();
    let rows = table_after(&contract(), "## 3. Kinds");
    let documented: Vec<String> = rows.iter().flat_map(|row| names(&row[0])).collect();
    let in_schema: Vec<String> = schema["properties"]["kind"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kind| kind.as_str().unwrap().to_owned())
        .collect();
    let in_code: Vec<String> = EventKind::ALL
        .iter()
        .map(|kind| {
            serde_json::to_value(kind)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(documented, in_schema);
    assert_eq!(documented, in_code);
    for row in &rows {
        let kind = names(&row[0]).into_iter().next().unwrap();
        let payload: BTreeSet<String> = schema["$defs"][&kind]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(names(&row[3]), payload, "payload fields of {kind}");
        let (low, high) = match row[2].split_once('–') {
            Some((low, high)) => (low.parse::<usize>().unwrap(), high.parse().unwrap()),
            None => {
                let depth = row[2].parse::<usize>().unwrap();
                (depth, depth)
            }
        };
        for depth in 1..=6 {
            let partition = (0..depth)
                .map(|segment| format!("s{segment}"))
                .collect::<Vec<_>>()
                .join("/");
            let body = changed(&kind, |envelope| envelope["partition"] = json!(partition));
            let expected = if (low..=high).contains(&depth) {
                "accepted"
            } else {
                "bad_uid"
            };
            assert_eq!(verdict(&body), expected, "{kind} in {partition}");
            assert_eq!(
                schema_valid(&body),
                Some(expected == "accepted"),
                "the schema on {kind} in {partition}"
            );
        }
    }
}

#[test]
fn the_reason_codes_are_the_codes_intake_uses_in_the_contract_and_the_readme() {
    let in_code: Vec<String> = RejectReason::ALL
        .iter()
        .map(|reason| reason.code().to_owned())
        .collect();
    for (document, heading) in [
        (contract(), "### Codes"),
        (repo_file("README.md"), "### Refusals"),
    ] {
        let documented: Vec<String> = table_after(&document, heading)
            .iter()
            .flat_map(|row| names(&row[0]))
            .collect();
        assert_eq!(documented, in_code, "the codes under {heading:?}");
    }
}

/// Every mistake the contract lists, built.
fn mistake(name: &str) -> String {
    match name {
        "an unknown top-level field" => changed("dialogue", |e| e["colour"] = json!("red")),
        "a required field missing" => changed("dialogue", |e| {
            e.as_object_mut().unwrap().remove("actor");
        }),
        "a negative `sent_at_ms`" => changed("dialogue", |e| e["sent_at_ms"] = json!(-1)),
        "an unknown `kind`" => changed("dialogue", |e| e["kind"] = json!("dance")),
        "not JSON" => "hello".to_owned(),
        "a JSON array instead of an object" => format!("[{}]", changed("dialogue", |_| {})),
        "`actor` twice, signed for one of them" => {
            let signed = changed("dialogue", |_| {});
            let actor = r#""actor":"p-000042""#;
            assert!(signed.contains(actor), "{signed}");
            signed.replacen(actor, &format!(r#"{actor},"actor":"p-000099""#), 1)
        }
        "a payload member twice" => {
            let signed = changed("dialogue", |_| {});
            signed.replacen(r#""text":"#, r#""text":"first","text":"#, 1)
        }
        "`v` is 2" => changed("dialogue", |e| e["v"] = json!(2)),
        "an unknown payload field" => changed("dialogue", |e| e["payload"]["colour"] = json!(1)),
        "a payload field of the wrong type" => {
            changed("dialogue", |e| e["payload"]["text"] = json!(5))
        }
        "a payload that belongs to another kind" => {
            changed("dialogue", |e| e["kind"] = json!("combat"))
        }
        "empty dialogue text" => changed("dialogue", |e| e["payload"]["text"] = json!("")),
        "a NUL character in dialogue text" => {
            changed("dialogue", |e| e["payload"]["text"] = json!("nul\u{0}here"))
        }
        "dialogue text over 2,000 characters" => changed("dialogue", |e| {
            e["payload"]["text"] = json!("x".repeat(2001))
        }),
        "a trade quantity of 0" => changed("trade", |e| e["payload"]["quantity"] = json!(0)),
        "an event id that is neither a ULID nor a UUIDv7" => {
            changed("dialogue", |e| e["event_id"] = json!("order-17"))
        }
        "65 participants" => changed("dialogue", |e| {
            e["participants"] = json!((0..65).map(|i| format!("p-{i}")).collect::<Vec<_>>());
        }),
        "an actor with a space in it" => changed("dialogue", |e| e["actor"] = json!("p 1")),
        "an empty faction" => changed("dialogue", |e| e["faction"] = json!("")),
        "a narrative partition of 2 segments" => {
            changed("dialogue", |e| e["partition"] = json!("gm-1/district-2"))
        }
        "a narrative partition of 5 segments" => {
            changed("dialogue", |e| e["partition"] = json!("a/b/c/d/e"))
        }
        "a trade partition of 3 segments" => changed("trade", |e| {
            e["partition"] = json!("region-1/station-2/dock-3")
        }),
        "a partition segment with a space in it" => changed("dialogue", |e| {
            e["partition"] = json!("gm-1/district 2/scene-3")
        }),
        "a body over 65,536 bytes" => changed("dialogue", |e| {
            e["participants"] = json!(["x".repeat(65_536)])
        }),
        "a gateway with no key configured" => {
            changed("dialogue", |e| e["gateway"] = json!("gw-nobody"))
        }
        "signed with another key" => signed_with(sample("dialogue"), b"another key entirely"),
        "`sent_at_ms` 301 s before intake's clock" => {
            changed("dialogue", |e| e["sent_at_ms"] = json!(NOW - 301_000))
        }
        "`sent_at_ms` 299 s before intake's clock" => {
            changed("dialogue", |e| e["sent_at_ms"] = json!(NOW - 299_000))
        }
        "the signature in upper-case hex" => {
            let mut envelope: Value = serde_json::from_str(&changed("dialogue", |_| {})).unwrap();
            let upper = envelope["signature"].as_str().unwrap().to_uppercase();
            envelope["signature"] = json!(upper);
            envelope.to_string()
        }
        "the same participant listed twice" => {
            changed("dialogue", |e| e["participants"] = json!(["p-2", "p-2"]))
        }
        other => panic!("the contract lists a mistake this test cannot build: {other:?}"),
    }
}

#[test]
fn each_documented_mistake_gets_its_documented_code_from_intake_and_the_schema_agrees() {
    let rows = table_after(&contract(), "### Which code for which mistake");
    assert!(rows.len() >= 20, "{rows:?}");
    for row in rows {
        let (name, documented) = (&row[0], row[1].trim_matches('`'));
        let body = mistake(name);
        assert_eq!(verdict(&body), documented, "{name}");
        // The schema judges shape; keys, signatures, clocks and sizes are intake's alone.
        let expected_by_schema = match documented {
            "malformed" | "unsupported_version" | "invalid_field" | "bad_uid" => Some(false),
            "accepted" | "unknown_gateway" | "clock_skew" => Some(true),
            // The schema sees a signature's spelling (lowercase hex), not whether it matches.
            "bad_signature" => Some(!name.contains("upper-case")),
            _ => None,
        };
        if let (Some(expected), Some(valid)) = (expected_by_schema, schema_valid(&body)) {
            assert_eq!(valid, expected, "the schema on {name}");
        }
    }
}

#[tokio::test]
async fn a_rejection_row_has_the_documented_key_and_attributes() {
    let store = TempStore::open(Arc::new(ManualClock::new(NOW)));
    let context = StageContext::new(store.queue(), store.table(), Arc::clone(&store.clock));
    declare(&context, &ALL_TABLES, &[]).await;
    let table = Arc::clone(&context.table);
    let intake = Intake::new(context, IntakeConfig::new(keys()));
    let body = signed_with(sample("combat"), b"another key entirely");
    let message = ReceivedMessage {
        message_id: "m-1".into(),
        receipt_handle: "r-1".into(),
        body: body.clone(),
        group_id: None,
        receive_count: 1,
        sent_at_ms: NOW,
    };
    let report = intake
        .handle_batch(&[message], Duration::from_secs(30))
        .await;
    assert!(report.all_succeeded(), "{report:?}");
    let row_key = locate(body.as_bytes());
    let event_id = sample("combat")["event_id"].as_str().unwrap().to_owned();
    assert_eq!(row_key.pk, "gateway#gw-sample");
    let digest = worldfleet_intake::rejections::body_sha256(body.as_bytes());
    assert_eq!(row_key.sk, format!("event#{event_id}#{digest}"));
    let item = table
        .get(REJECTIONS_TABLE, &row_key)
        .await
        .unwrap()
        .expect("the row");
    let written: BTreeSet<String> = item.attributes.keys().cloned().collect();
    let documented: BTreeSet<String> = table_after(&contract(), "### The rejections table")
        .iter()
        .flat_map(|row| names(&row[0]))
        .collect();
    assert_eq!(written, documented);
    // Without a readable event id, the `body#` key.
    assert_eq!(
        locate(b"not json").sk,
        format!(
            "body#{}",
            worldfleet_intake::rejections::body_sha256(b"not json")
        )
    );
}

#[test]
fn the_audience_examples_are_what_the_code_computes() {
    let rows = table_after(&contract(), "## 5. Who receives an event");
    assert_eq!(rows.len(), 3);
    for row in rows {
        let actor = names(&row[0]).into_iter().next().unwrap();
        let participants: Vec<String> = row[1]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let audience: Vec<String> = row[2]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        assert_eq!(audience_of(&actor, &participants), audience, "{row:?}");
    }
}

#[tokio::test]
async fn the_feeds_table_rows_have_the_documented_keys_and_attributes() {
    let rows = table_after(&contract(), "### The feeds table");
    let row = |sort_key: &str| {
        rows.iter()
            .find(|row| row[0].starts_with(&format!("`{sort_key}")))
            .unwrap_or_else(|| panic!("no {sort_key} row"))
            .clone()
    };
    let attributes = |row: &[String]| -> BTreeSet<String> { names(&row[2]) };

    // Pages: the example key, and the attributes distribute writes.
    let page_row = row("page#");
    assert!(
        page_row[1].contains(&format!("`{}`", page_sort_key(42))),
        "{page_row:?}"
    );
    let partition = PartitionUid::parse("gm-1/district-2/scene-3").unwrap();
    let page = FeedPage {
        first_seq: 42,
        entries: vec![FeedEntry {
            seq: 42,
            event_id: "01JD3Q7Z8X9Y0A1B2C3D4E5F6G".into(),
            partition,
            kind: EventKind::Dialogue,
            actor: "p-1".into(),
            text: "hello".into(),
            accepted_at_ms: NOW,
        }],
    };
    let item = page_item("player:p-1", &page, NOW).unwrap();
    assert_eq!(
        item.attributes.keys().cloned().collect::<BTreeSet<_>>(),
        attributes(&page_row)
    );
    let stored: Value = serde_json::from_str(item.str("entries").unwrap()).unwrap();
    let documented_row: Vec<String> = contract()
        .split("each row is `[")
        .nth(1)
        .and_then(|rest| rest.split("]`").next())
        .unwrap()
        .split(',')
        .map(|field| field.trim().to_owned())
        .collect();
    assert_eq!(
        documented_row,
        [
            "offset",
            "event_id",
            "partition",
            "kind",
            "actor",
            "text",
            "accepted"
        ]
    );
    assert_eq!(stored["v"], 1);
    let first_row = stored["rows"][0].as_array().unwrap();
    assert_eq!(first_row.len(), documented_row.len());
    let entry = &page.entries[0];
    assert_eq!(first_row[0], entry.seq - page.first_seq);
    assert_eq!(first_row[1], entry.event_id.as_str());
    assert_eq!(
        stored["partitions"][first_row[2].as_u64().unwrap() as usize],
        entry.partition.as_str()
    );
    assert_eq!(
        stored["kinds"][first_row[3].as_u64().unwrap() as usize],
        entry.kind.as_str()
    );
    assert_eq!(
        stored["actors"][first_row[4].as_u64().unwrap() as usize],
        entry.actor.as_str()
    );
    assert_eq!(first_row[5], entry.text.as_str());
    assert_eq!(
        stored["accepted_base_ms"].as_u64().unwrap() + first_row[6].as_u64().unwrap(),
        entry.accepted_at_ms
    );

    // The counter, the trim row and reader checkpoints.
    assert_eq!(counter_key("player:p-1").sk, "counter");
    assert_eq!(
        attributes(&row("counter")),
        BTreeSet::from([COUNTER_NEXT.to_owned()])
    );
    assert_eq!(TRIM_SORT_KEY, "trim");
    assert_eq!(
        attributes(&row("trim")),
        BTreeSet::from([TRIMMED_THROUGH.to_owned()])
    );
    assert!(row("reader#")[0].starts_with(&format!("`{READER_PREFIX}")));
    let store = TempStore::open(Arc::new(ManualClock::new(NOW)));
    let context = StageContext::new(store.queue(), store.table(), Arc::clone(&store.clock));
    declare(&context, &[FEEDS_TABLE], &[]).await;
    let table = context.table;
    let feed = FeedId::parse("player:p-1").unwrap();
    commit_checkpoint(table.as_ref(), FEEDS_TABLE, &feed, "mobile", 7, NOW)
        .await
        .unwrap();
    let reader = table
        .query(
            FEEDS_TABLE,
            &worldfleet_ports::Query::partition("player:p-1"),
        )
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(reader.key.sk, format!("{READER_PREFIX}mobile"));
    assert_eq!(
        reader.attributes.keys().cloned().collect::<BTreeSet<_>>(),
        attributes(&row("reader#"))
    );
}
