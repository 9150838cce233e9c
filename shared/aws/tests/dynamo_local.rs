//! `DynamoTable` against DynamoDB Local: values, conditions, updates, queries, batches,
//! transactions, TTL filtering, error classes and unit counting.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use worldfleet_aws::{AwsSettings, DynamoTable};
use worldfleet_ports::{
    BatchWrite, Comparison, Condition, Error, Item, Key, ManualClock, Query, SortKeyRange, Table,
    TableSpec, TransactWrite, Update, Value,
};

async fn table(label: &str, names: &[&str]) -> DynamoTable {
    let (_, table) = support::adapters(label).await;
    for name in names {
        table
            .ensure_table(&TableSpec {
                name: (*name).to_owned(),
            })
            .await
            .unwrap();
    }
    table
}

fn item(pk: &str, sk: &str) -> Item {
    Item::new(Key::new(pk, sk))
}

#[tokio::test]
async fn values_round_trip_and_conditions_hold() {
    if !support::local_aws("values_round_trip_and_conditions_hold") {
        return;
    }
    let table = table("ddbvalues", &["things"]).await;
    table
        .ensure_table(&TableSpec {
            name: "things".into(),
        })
        .await
        .unwrap(); // idempotent
    let nested = Value::M(BTreeMap::from([
        (
            "list".to_owned(),
            Value::L(vec![Value::N(1), Value::Null, Value::Bool(true)]),
        ),
        ("bytes".to_owned(), Value::B(vec![0, 1, 255])),
    ]));
    let stored = item("p", "s")
        .with("name", "x")
        .with("count", -7)
        .with("nested", nested)
        .with("empty", "");
    table
        .put("things", stored.clone(), Some(Condition::ItemNotExists))
        .await
        .unwrap();
    assert_eq!(
        table.get("things", &stored.key).await.unwrap(),
        Some(stored.clone())
    );

    let again = table
        .put("things", stored.clone(), Some(Condition::ItemNotExists))
        .await;
    assert_eq!(
        again,
        Err(Error::ConditionFailed {
            table: "things".into(),
            pk: "p".into(),
            sk: "s".into()
        })
    );
    // Comparisons as the reference semantics define them.
    let cases = [
        (Condition::compare("count", Comparison::Lt, 0), true),
        (Condition::compare("count", Comparison::Lt, "0"), false),
        (Condition::compare("missing", Comparison::Ne, 1), true),
        (Condition::eq("missing", 1), false),
        (Condition::eq("pk", "p"), true),
        (Condition::compare("name", Comparison::Ge, "x"), true),
        (
            Condition::Not(Box::new(Condition::Exists("name".into()))),
            false,
        ),
        (
            Condition::Or(vec![
                Condition::NotExists("name".into()),
                Condition::eq("count", -7),
            ]),
            true,
        ),
        (Condition::And(vec![]), true),
        (Condition::Or(vec![]), false),
    ];
    for (condition, expected) in cases {
        assert_eq!(
            condition.evaluate(Some(&stored)),
            expected,
            "reference: {condition:?}"
        );
        let result = table
            .put("things", stored.clone(), Some(condition.clone()))
            .await;
        assert_eq!(result.is_ok(), expected, "{condition:?}: {result:?}");
    }
}

#[tokio::test]
async fn updates_create_count_and_return_the_new_item() {
    if !support::local_aws("updates_create_count_and_return_the_new_item") {
        return;
    }
    let table = table("ddbupdate", &["counters"]).await;
    let key = Key::new("player#1", "tokens");
    let created = table
        .update(
            "counters",
            &key,
            Update::new()
                .add("count", 3)
                .set("name", "x")
                .set_if_absent("created", 10),
            Some(Condition::ItemNotExists),
        )
        .await
        .unwrap();
    assert_eq!(created.i64("count"), Some(3));
    assert_eq!(created.i64("created"), Some(10));
    let updated = table
        .update(
            "counters",
            &key,
            Update::new()
                .add("count", -1)
                .set_if_absent("created", 99)
                .remove("name")
                .set("ttl", 4_000_000_000_i64),
            Some(Condition::compare("count", Comparison::Ge, 3)),
        )
        .await
        .unwrap();
    assert_eq!(updated.i64("count"), Some(2));
    assert_eq!(updated.i64("created"), Some(10));
    assert_eq!(updated.str("name"), None);
    assert_eq!(table.get("counters", &key).await.unwrap(), Some(updated));

    let refused = table
        .update(
            "counters",
            &key,
            Update::new().add("count", 1),
            Some(Condition::ItemNotExists),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::ConditionFailed { .. })),
        "{refused:?}"
    );
    let not_a_number = table
        .update("counters", &key, Update::new().set("label", "a"), None)
        .await
        .unwrap();
    assert_eq!(not_a_number.str("label"), Some("a"));
    let bad_add = table
        .update("counters", &key, Update::new().add("label", 1), None)
        .await;
    assert!(
        matches!(bad_add, Err(Error::InvalidRequest(_))),
        "{bad_add:?}"
    );
    assert!(matches!(
        table.update("counters", &key, Update::new(), None).await,
        Err(Error::InvalidRequest(_))
    ));

    let removed = table
        .delete("counters", &key, Some(Condition::Exists("count".into())))
        .await
        .unwrap();
    assert_eq!(removed.and_then(|item| item.i64("count")), Some(2));
    assert_eq!(table.delete("counters", &key, None).await.unwrap(), None);
    assert!(matches!(
        table
            .delete("counters", &key, Some(Condition::ItemExists))
            .await,
        Err(Error::ConditionFailed { .. })
    ));
}

#[tokio::test]
async fn queries_page_through_ranges_in_both_orders() {
    if !support::local_aws("queries_page_through_ranges_in_both_orders") {
        return;
    }
    let table = table("ddbquery", &["feeds"]).await;
    let writes = (0..20)
        .map(|index| BatchWrite::Put(item("feed#1", &format!("entry#{index:03}")).with("n", index)))
        .chain([
            BatchWrite::Put(item("feed#1", "checkpoint")),
            BatchWrite::Put(item("feed#2", "entry#000")),
        ])
        .collect();
    table.batch_write("feeds", writes).await.unwrap();

    let prefix = Query::partition("feed#1").range(SortKeyRange::Prefix("entry#".into()));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = table
            .query("feeds", &prefix.clone().limit(7).start_after(after.clone()))
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|item| item.i64("n").unwrap()));
        match page.last_evaluated_sk {
            Some(sk) => after = Some(sk),
            None => break,
        }
    }
    assert_eq!(seen, (0..20).collect::<Vec<_>>());

    let newest = table
        .query(
            "feeds",
            &Query::partition("feed#1")
                .range(SortKeyRange::Prefix("entry#".into()))
                .descending()
                .limit(2),
        )
        .await
        .unwrap();
    let sks: Vec<&str> = newest
        .items
        .iter()
        .map(|item| item.key.sk.as_str())
        .collect();
    assert_eq!(sks, ["entry#019", "entry#018"]);

    let ranges = [
        SortKeyRange::Between("entry#005".into(), "entry#007".into()),
        SortKeyRange::Between("entry#007".into(), "entry#005".into()),
        SortKeyRange::GreaterThan("entry#018".into()),
        SortKeyRange::AtLeast("entry#018".into()),
        SortKeyRange::LessThan("entry#".into()),
        SortKeyRange::AtMost("checkpoint".into()),
        SortKeyRange::Prefix(String::new()),
        SortKeyRange::All,
    ];
    for range in &ranges {
        let page = table
            .query("feeds", &Query::partition("feed#1").range(range.clone()))
            .await
            .unwrap();
        let expected = (0..20)
            .map(|index| format!("entry#{index:03}"))
            .chain(["checkpoint".to_owned()])
            .filter(|sk| range.contains(sk))
            .count();
        assert_eq!(page.items.len(), expected, "{range:?}");
    }
    assert!(matches!(
        table
            .query("feeds", &Query::partition("feed#1").limit(0))
            .await,
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn expired_items_are_hidden_from_reads() {
    if !support::local_aws("expired_items_are_hidden_from_reads") {
        return;
    }
    let settings: AwsSettings = support::settings("ddbttl");
    let config = settings.sdk_config().await;
    let clock = ManualClock::new(1_000_000);
    let table = DynamoTable::with_parts(
        aws_sdk_dynamodb::Client::new(&config),
        settings,
        Arc::default(),
        Arc::new(clock.clone()),
    );
    table
        .ensure_table(&TableSpec {
            name: "memo".into(),
        })
        .await
        .unwrap();
    let expiring = item("p", "a").with("ttl", 1_500_i64);
    let lasting = item("p", "b").with("ttl", 5_000_i64);
    table.put("memo", expiring.clone(), None).await.unwrap();
    table.put("memo", lasting.clone(), None).await.unwrap();
    assert!(table.get("memo", &expiring.key).await.unwrap().is_some());
    clock.set(2_000_000); // 2000 s: the first item has expired, DynamoDB has not swept it
    assert_eq!(table.get("memo", &expiring.key).await.unwrap(), None);
    let keys = [expiring.key.clone(), lasting.key.clone()];
    assert_eq!(
        table.batch_get("memo", &keys).await.unwrap(),
        vec![lasting.clone()]
    );
    let page = table.query("memo", &Query::partition("p")).await.unwrap();
    assert_eq!(page.items, vec![lasting]);
    // Conditions still see an expired item until it is swept, as in DynamoDB.
    assert!(matches!(
        table
            .put("memo", expiring.clone(), Some(Condition::ItemNotExists))
            .await,
        Err(Error::ConditionFailed { .. })
    ));
}

#[tokio::test]
async fn batches_read_and_write_many_items() {
    if !support::local_aws("batches_read_and_write_many_items") {
        return;
    }
    let table = table("ddbbatch", &["ledger"]).await;
    let mut keys = Vec::new();
    for chunk in 0..4 {
        let writes = (0..25)
            .map(|index| {
                let key = Key::new(format!("zone#{chunk}"), format!("event#{index:02}"));
                keys.push(key.clone());
                BatchWrite::Put(Item::new(key).with("blob", vec![7_u8; 2000]))
            })
            .collect();
        table.batch_write("ledger", writes).await.unwrap();
    }
    assert_eq!(keys.len(), 100);
    let mut with_duplicate = keys.clone();
    with_duplicate[99] = keys[0].clone();
    let found = table.batch_get("ledger", &with_duplicate).await.unwrap();
    assert_eq!(found.len(), 99);
    assert!(matches!(
        table
            .batch_get("ledger", &[keys.clone(), vec![keys[0].clone()]].concat())
            .await,
        Err(Error::InvalidRequest(_))
    ));
    let deletes = keys[..25].iter().cloned().map(BatchWrite::Delete).collect();
    table.batch_write("ledger", deletes).await.unwrap();
    assert_eq!(
        table.batch_get("ledger", &keys[..30]).await.unwrap().len(),
        5
    );
    let duplicate = vec![
        BatchWrite::Delete(keys[40].clone()),
        BatchWrite::Delete(keys[40].clone()),
    ];
    assert!(matches!(
        table.batch_write("ledger", duplicate).await,
        Err(Error::InvalidRequest(_))
    ));
    let too_many = (0..26)
        .map(|index| BatchWrite::Delete(keys[index].clone()))
        .collect();
    assert!(matches!(
        table.batch_write("ledger", too_many).await,
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn transactions_apply_all_or_report_why_not() {
    if !support::local_aws("transactions_apply_all_or_report_why_not") {
        return;
    }
    let table = table("ddbtx", &["ledger", "feeds"]).await;
    let operations = vec![
        TransactWrite::Put {
            table: "ledger".into(),
            item: item("zone#1", "event#1").with("kind", "chat"),
            condition: Some(Condition::ItemNotExists),
        },
        TransactWrite::Update {
            table: "feeds".into(),
            key: Key::new("feed#1", "counter"),
            update: Update::new().add("next", 1),
            condition: None,
        },
    ];
    table.transact(operations.clone()).await.unwrap();
    assert_eq!(
        table
            .get("feeds", &Key::new("feed#1", "counter"))
            .await
            .unwrap()
            .and_then(|item| item.i64("next")),
        Some(1)
    );
    let error = table.transact(operations).await.unwrap_err();
    match &error {
        Error::TransactionCanceled { reasons } => {
            assert_eq!(reasons.len(), 2, "{reasons:?}");
            assert!(
                reasons[0]
                    .as_deref()
                    .is_some_and(|reason| reason.starts_with("ConditionalCheckFailed")),
                "{reasons:?}"
            );
            assert_eq!(reasons[1], None);
        }
        other => panic!("expected a cancellation, got {other:?}"),
    }
    assert!(error.is_condition_failed());
    // Nothing of the cancelled transaction was applied.
    assert_eq!(
        table
            .get("feeds", &Key::new("feed#1", "counter"))
            .await
            .unwrap()
            .and_then(|item| item.i64("next")),
        Some(1)
    );
    let check = vec![
        TransactWrite::ConditionCheck {
            table: "ledger".into(),
            key: Key::new("zone#1", "event#1"),
            condition: Condition::eq("kind", "chat"),
        },
        TransactWrite::Delete {
            table: "feeds".into(),
            key: Key::new("feed#1", "counter"),
            condition: Some(Condition::eq("next", 1)),
        },
    ];
    table.transact(check).await.unwrap();
    assert_eq!(
        table
            .get("feeds", &Key::new("feed#1", "counter"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn errors_are_classified_and_units_counted() {
    if !support::local_aws("errors_are_classified_and_units_counted") {
        return;
    }
    let table = table("ddbcount", &["canon"]).await;
    let missing = table.get("no-such-table", &Key::new("p", "s")).await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    let oversized = item("p", "big").with("blob", vec![0_u8; 400 * 1024]);
    assert!(matches!(
        table.put("canon", oversized, None).await,
        Err(Error::ItemTooLarge { .. })
    ));
    assert!(matches!(
        table.get("canon", &Key::new("", "s")).await,
        Err(Error::InvalidRequest(_))
    ));

    let before = table.counters().snapshot();
    table
        .put("canon", item("p", "s").with("text", "y".repeat(3000)), None)
        .await
        .unwrap();
    table.get("canon", &Key::new("p", "s")).await.unwrap();
    let usage = table.counters().snapshot().since(&before);
    assert_eq!(usage.table_requests, 2);
    assert_eq!(usage.table_write_units, 3, "3 KB item: 3 write units");
    assert_eq!(usage.table_read_units, 1);
    assert_eq!((usage.table_items_written, usage.table_items_read), (1, 1));
}
