//! The bad-input corpus (`events/bad/`, manifest `cases.toml`) through the real intake stage:
//! every case is posted to the intake queue as a gateway posts it, intake runs over the queue,
//! and each case must end as what the manifest says — a rejection row with its reason code, or,
//! for the few accepted controls (limits are inclusive), a ledger entry — and nothing but the
//! controls may reach the next stage.
//!
//! Runs on the embedded store always, and on LocalStack's SQS with DynamoDB Local (the
//! template's queues and tables) when `WORLDFLEET_LOCAL_AWS=1` (set by `scripts/test-aws.sh`).
//! Intake's clock is the corpus's: the files are signed at the samples' `sent_at_ms`, so it is
//! held one second after that.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use worldfleet_domain::RejectReason;
use worldfleet_domain::names::{
    CLASSIFY_QUEUE, INTAKE_QUEUE, LEDGER_TABLE, RATE_LIMITS_TABLE, REJECTIONS_TABLE,
};
use worldfleet_embedded::testing::TempStore;
use worldfleet_intake::rejections::lookup_body;
use worldfleet_intake::validate::check;
use worldfleet_intake::{GatewayKeys, Intake, IntakeConfig, RateLimit};
use worldfleet_kit::StageContext;
use worldfleet_ports::{Clock, Key, ManualClock, OutgoingMessage, Queue, SendOutcome, Table};
use worldfleet_runtime::resources::{QueueSettings, declare};

mod local_aws;
mod support;

use support::intake::{routed_event_ids, run_intake};

const KEY_HEX: &str = "73616d706c652d676174657761792d6b65792d33322d62797465732d6c6f6e67";
/// The corpus files' `sent_at_ms` (the samples').
const SENT_AT: u64 = 1_763_700_000_000;
/// Every case goes in one FIFO group, so intake meets them in the manifest's order (the replay
/// after its original, the third of a burst after the first two).
const GROUP: &str = "bad-input-corpus";

/// One case of the manifest, with the exact bytes to send.
#[derive(Debug)]
struct Case {
    name: String,
    file: String,
    body: Vec<u8>,
    /// `accepted`, or the reason code intake must record.
    expect: String,
    /// SQS itself refuses the body (a character outside SQS's set).
    sqs_refuses: bool,
    /// No queue can carry the body (it is not text).
    unsendable: bool,
}

struct Corpus {
    cases: Vec<Case>,
    rate_limit_burst: u32,
}

fn corpus_dir() -> String {
    format!("{}/../events/bad", env!("CARGO_MANIFEST_DIR"))
}

/// Inserts `insert` before the envelope's closing brace.
fn before_closing_brace(body: &[u8], insert: &[u8]) -> Vec<u8> {
    let end = body
        .iter()
        .rposition(|byte| *byte == b'}')
        .expect("an envelope ends with }");
    [&body[..end], insert, &body[end..]].concat()
}

fn load() -> Corpus {
    let dir = corpus_dir();
    let manifest: toml::Table = std::fs::read_to_string(format!("{dir}/cases.toml"))
        .expect("read cases.toml")
        .parse()
        .expect("cases.toml is TOML");
    fn text<'a>(case: &'a toml::Value, field: &str) -> Option<&'a str> {
        case.get(field).and_then(toml::Value::as_str)
    }
    let number =
        |case: &toml::Value, field: &str| case.get(field).and_then(toml::Value::as_integer);
    let cases = manifest["case"]
        .as_array()
        .expect("[[case]] entries")
        .iter()
        .map(|case| {
            let name = text(case, "name").expect("name").to_owned();
            let file = text(case, "file").expect("file");
            let mut body = std::fs::read(format!("{dir}/{file}"))
                .unwrap_or_else(|error| panic!("read {file}: {error}"));
            if let Some(levels) = number(case, "nest") {
                let levels = levels as usize;
                let deep = format!(",\"deep\":{}{}", "[".repeat(levels), "]".repeat(levels));
                body = before_closing_brace(&body, deep.as_bytes());
            }
            if let Some(size) = number(case, "pad_to") {
                let padding = (size as usize)
                    .checked_sub(body.len())
                    .expect("pad_to is larger than the file");
                body = before_closing_brace(&body, &vec![b' '; padding]);
                assert_eq!(body.len(), size as usize);
            }
            let expect = text(case, "expect").expect("expect").to_owned();
            assert!(
                expect == "accepted" || RejectReason::from_code(&expect).is_some(),
                "{name}: {expect} is not a reason code"
            );
            Case {
                name,
                file: file.to_owned(),
                body,
                expect,
                sqs_refuses: text(case, "sqs") == Some("refused"),
                unsendable: text(case, "queue") == Some("unsendable"),
            }
        })
        .collect();
    Corpus {
        cases,
        rate_limit_burst: manifest["rate_limit_burst"]
            .as_integer()
            .expect("rate_limit_burst") as u32,
    }
}

fn keys() -> GatewayKeys {
    GatewayKeys::parse(&format!("gw-sample={KEY_HEX}")).unwrap()
}

#[test]
fn the_corpus_covers_every_refusal_code_and_the_hostile_shapes() {
    let corpus = load();
    let codes: BTreeSet<&str> = corpus
        .cases
        .iter()
        .map(|case| case.expect.as_str())
        .collect();
    for reason in RejectReason::ALL {
        assert!(
            codes.contains(reason.code()),
            "no case for {}",
            reason.code()
        );
    }
    let names: BTreeSet<&str> = corpus.cases.iter().map(|case| case.name.as_str()).collect();
    assert_eq!(names.len(), corpus.cases.len(), "case names are unique");
    // events/bad/README.md lists every case with its code, in order.
    let readme = std::fs::read_to_string(format!("{}/README.md", corpus_dir())).unwrap();
    let listed: Vec<(String, String)> = readme
        .lines()
        .filter(|line| line.starts_with("| [`"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let file = cells[0].split('`').nth(1).unwrap().to_owned();
            (file, cells[1].trim_matches('`').to_owned())
        })
        .collect();
    let manifest: Vec<(String, String)> = corpus
        .cases
        .iter()
        .map(|case| (case.file.clone(), case.expect.clone()))
        .collect();
    assert_eq!(
        listed, manifest,
        "events/bad/README.md's table is the manifest's"
    );
    let body = |name: &str| {
        let case = corpus.cases.iter().find(|case| case.name == name);
        case.unwrap_or_else(|| panic!("no case {name}"))
            .body
            .clone()
    };
    let size = |name: &str| body(name).len();
    assert_eq!(size("body-at-64KiB"), worldfleet_domain::MAX_ENVELOPE_BYTES);
    assert_eq!(
        size("body-64KiB-plus-1"),
        worldfleet_domain::MAX_ENVELOPE_BYTES + 1
    );
    // A body that is not text can be judged, but not queued: intake's parser refuses it.
    for case in corpus.cases.iter().filter(|case| case.unsendable) {
        assert!(
            String::from_utf8(case.body.clone()).is_err(),
            "{}",
            case.name
        );
        let refusal = check(
            &case.body,
            &keys(),
            SENT_AT + 1_000,
            Duration::from_secs(300),
        )
        .expect_err(&case.name);
        assert_eq!(refusal.reason.code(), case.expect, "{}", case.name);
    }
    // The duplicate-member cases are signed for one of their copies: only the duplicate
    // stands between them and acceptance under a last-wins or first-wins reader.
    let signed = |raw: &str| -> bool {
        let mut value: serde_json::Value = serde_json::from_str(raw).unwrap();
        let signature = value["signature"].as_str().unwrap().to_owned();
        value.as_object_mut().unwrap().remove("signature");
        let canonical = worldfleet_domain::envelope::canonical_bytes(&value).unwrap();
        worldfleet_domain::envelope::signature_hex(&hex::decode(KEY_HEX).unwrap(), &canonical)
            .unwrap()
            == signature
    };
    let case_text = |name: &str| String::from_utf8(body(name)).unwrap();
    assert!(signed(&case_text("duplicate-actor-signed-for-last")));
    assert!(signed(&case_text("duplicate-payload-member")));
    let first_wins = case_text("duplicate-actor-signed-for-first").replacen(
        "\n  \"actor\": \"p-intruder\",",
        "",
        1,
    );
    assert!(signed(&first_wins));
}

/// Posts the corpus to the intake queue, runs intake over it and checks every case's outcome.
async fn every_case_ends_as_the_manifest_says(
    queue: Arc<dyn Queue>,
    table: Arc<dyn Table>,
    on_sqs: bool,
) {
    let corpus = load();
    let clock = ManualClock::new(SENT_AT + 1_000);
    let clock: Arc<dyn Clock> = Arc::new(clock);
    let mut config = IntakeConfig::new(keys());
    config.rate_limit = RateLimit {
        burst: corpus.rate_limit_burst,
        per_second: 1,
    };
    let intake = Intake::new(
        StageContext::new(Arc::clone(&queue), Arc::clone(&table), clock),
        config,
    );

    let mut sent = 0;
    for case in corpus.cases.iter().filter(|case| !case.unsendable) {
        let body = String::from_utf8(case.body.clone()).expect("a sendable case is text");
        let message = OutgoingMessage::fifo(body, GROUP, &format!("case-{}", case.name));
        let outcomes = queue
            .send_batch(INTAKE_QUEUE, vec![message])
            .await
            .expect("send");
        match (outcomes.as_slice(), on_sqs && case.sqs_refuses) {
            ([SendOutcome::Sent { .. }], false) => sent += 1,
            ([SendOutcome::Failed { reason, .. }], true) => {
                eprintln!("{}: SQS refused the body, as expected: {reason}", case.name);
            }
            (other, _) => panic!("{}: {other:?}", case.name),
        }
    }
    assert_eq!(
        run_intake(&intake, queue.as_ref(), Duration::from_secs(8)).await,
        sent
    );

    let mut expected_routed = BTreeSet::new();
    let mut problems = Vec::new();
    for case in &corpus.cases {
        if case.unsendable || (on_sqs && case.sqs_refuses) {
            continue;
        }
        let row = lookup_body(table.as_ref(), REJECTIONS_TABLE, &case.body)
            .await
            .expect("look the body up");
        if case.expect == "accepted" {
            let envelope: serde_json::Value = serde_json::from_slice(&case.body).unwrap();
            let (partition, event_id) = (
                envelope["partition"].as_str().unwrap(),
                envelope["event_id"].as_str().unwrap(),
            );
            let ledger = table
                .get(LEDGER_TABLE, &Key::new(partition, event_id))
                .await
                .expect("read the ledger");
            // A later case may send the very same bytes again (the replay): its row is
            // the only one these bytes may have.
            let resent = corpus
                .cases
                .iter()
                .any(|other| other.name != case.name && other.body == case.body);
            if ledger.is_none() || (row.is_some() && !resent) {
                problems.push(format!(
                    "{}: expected accepted; ledger entry {}, rejection row {:?}",
                    case.name,
                    ledger.is_some(),
                    row.map(|row| (row.reason, row.detail))
                ));
            }
            expected_routed.insert(event_id.to_owned());
        } else {
            let found = row
                .as_ref()
                .and_then(|row| row.reason)
                .map(RejectReason::code);
            if found != Some(case.expect.as_str()) {
                problems.push(format!(
                    "{}: expected a `{}` row, found {:?} ({:?})",
                    case.name,
                    case.expect,
                    found,
                    row.map(|row| row.detail)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let routed: BTreeSet<String> = routed_event_ids(queue.as_ref(), CLASSIFY_QUEUE)
        .await
        .into_iter()
        .collect();
    assert_eq!(
        routed, expected_routed,
        "only the accepted controls reach classify"
    );
    let accepted = intake
        .counters()
        .accepted
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(accepted as usize, expected_routed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_every_bad_input_is_a_recorded_rejection_with_its_code() {
    let store = TempStore::open(Arc::new(ManualClock::new(SENT_AT + 1_000)));
    let (queue, table) = (store.queue(), store.table());
    declare(queue.as_ref(), table.as_ref(), QueueSettings::default())
        .await
        .expect("declare");
    every_case_ends_as_the_manifest_says(queue, table, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_every_bad_input_is_a_recorded_rejection_with_its_code() {
    if !local_aws::enabled("the local stack running (scripts/test-aws.sh does both)") {
        return;
    }
    let stack = local_aws::deploy("bad-input").await;
    let (settings, queue): (_, Arc<dyn Queue>) = (stack.settings, stack.sqs);
    // Intake runs at the corpus's time (2025), so the rows it writes carry TTLs already past:
    // DynamoDB Local would delete them, and the adapter hides them by its own clock. Turn TTL
    // off on this fresh stack's tables, and give the adapter intake's clock.
    let config = settings.sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    for table in [REJECTIONS_TABLE, RATE_LIMITS_TABLE] {
        client
            .update_time_to_live()
            .table_name(settings.physical_name(table))
            .time_to_live_specification(
                aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                    .enabled(false)
                    .attribute_name(worldfleet_ports::TTL_ATTRIBUTE)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("turn TTL off");
    }
    let table: Arc<dyn Table> = Arc::new(worldfleet_aws::DynamoTable::with_parts(
        client,
        settings,
        Default::default(),
        Arc::new(ManualClock::new(SENT_AT + 1_000)),
    ));
    every_case_ends_as_the_manifest_says(queue, table, true).await;
}
