//! The table contract: DynamoDB semantics every [`Table`] adapter must show.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use worldfleet_ports::table::{MAX_ITEM_BYTES, MAX_TRANSACT};
use worldfleet_ports::{
    BatchWrite, Comparison, Condition, Error, Item, Key, Query, SortKeyRange, TTL_ATTRIBUTE, Table,
    TableSpec, TransactWrite, Update, Value,
};

/// Runs every table property against `table`, creating tables named `{namespace}-…`.
pub async fn table_contract(table: Arc<dyn Table>, namespace: &str) {
    let table = table.as_ref();
    put_then_get_round_trips_every_type(table, namespace).await;
    conditional_put_item_not_exists(table, namespace).await;
    update_conditions_compare_and_check_versions(table, namespace).await;
    concurrent_atomic_adds_sum_exactly(table, namespace).await;
    set_if_absent_keeps_an_existing_value(table, namespace).await;
    remove_drops_an_attribute(table, namespace).await;
    conditional_delete_returns_the_old_item(table, namespace).await;
    query_selects_by_prefix_between_and_bounds(table, namespace).await;
    query_pages_cover_everything_once(table, namespace).await;
    query_descending_reverses_order(table, namespace).await;
    batch_write_takes_at_most_25(table, namespace).await;
    batch_get_returns_present_items(table, namespace).await;
    transact_is_all_or_nothing(table, namespace).await;
    transact_refuses_over_100_and_one_item_twice(table, namespace).await;
    items_over_400_kb_are_refused(table, namespace).await;
    expired_items_are_invisible_to_reads(table, namespace).await;
    add_to_a_non_number_is_refused(table, namespace).await;
}

/// Ensures the suite's main table and returns its name.
async fn items_table(table: &dyn Table, property: &str, namespace: &str) -> String {
    ensure(table, property, format!("{namespace}-items")).await
}

async fn ensure(table: &dyn Table, property: &str, name: String) -> String {
    if let Err(error) = table.ensure_table(&TableSpec { name: name.clone() }).await {
        panic!("{property}: ensure_table({name}) failed: {error}");
    }
    name
}

async fn put(table: &dyn Table, property: &str, name: &str, item: Item) {
    let key = item.key.clone();
    if let Err(error) = table.put(name, item, None).await {
        panic!("{property}: put {key} failed: {error}");
    }
}

async fn get(table: &dyn Table, property: &str, name: &str, key: &Key) -> Option<Item> {
    match table.get(name, key).await {
        Ok(item) => item,
        Err(error) => panic!("{property}: get {key} failed: {error}"),
    }
}

async fn update(
    table: &dyn Table,
    property: &str,
    name: &str,
    key: &Key,
    change: Update,
    condition: Option<Condition>,
) -> Item {
    match table.update(name, key, change, condition).await {
        Ok(item) => item,
        Err(error) => panic!("{property}: update {key} failed: {error}"),
    }
}

async fn query_all(table: &dyn Table, property: &str, name: &str, query: Query) -> Vec<Item> {
    match table.query(name, &query).await {
        Ok(page) => page.items,
        Err(error) => panic!("{property}: query {query:?} failed: {error}"),
    }
}

fn sort_keys(items: &[Item]) -> Vec<&str> {
    items.iter().map(|item| item.key.sk.as_str()).collect()
}

fn assert_condition_failed<T: std::fmt::Debug>(
    property: &str,
    what: &str,
    result: Result<T, Error>,
) {
    assert!(
        matches!(result, Err(Error::ConditionFailed { .. })),
        "{property}: {what} must fail with ConditionFailed, got {result:?}"
    );
}

fn assert_invalid_request<T: std::fmt::Debug>(
    property: &str,
    what: &str,
    result: Result<T, Error>,
) {
    assert!(
        matches!(result, Err(Error::InvalidRequest(_))),
        "{property}: {what} must fail with InvalidRequest, got {result:?}"
    );
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// A put stores every value type exactly; a get of a missing key is `None`; a put replaces.
pub async fn put_then_get_round_trips_every_type(table: &dyn Table, namespace: &str) {
    const P: &str = "put_then_get_round_trips_every_type";
    let name = items_table(table, P, namespace).await;
    let key = Key::new("types", "all");
    let nested = BTreeMap::from([
        ("inner".to_owned(), Value::S("x".into())),
        ("count".to_owned(), Value::N(-7)),
    ]);
    let item = Item::new(key.clone())
        .with("s", "text \u{1F98A}")
        .with("n", i64::MIN + 1)
        .with("big", i64::MAX)
        .with("b", vec![0_u8, 1, 254, 255])
        .with("yes", true)
        .with("nothing", Value::Null)
        .with(
            "list",
            Value::L(vec![
                Value::N(1),
                Value::S("two".into()),
                Value::Bool(false),
            ]),
        )
        .with("map", Value::M(nested));
    put(table, P, &name, item.clone()).await;
    assert_eq!(
        get(table, P, &name, &key).await,
        Some(item),
        "{P}: the item read back differs from the one written"
    );
    assert_eq!(
        get(table, P, &name, &Key::new("types", "missing")).await,
        None,
        "{P}: a missing item must read as None"
    );
    let replacement = Item::new(key.clone()).with("only", 1);
    put(table, P, &name, replacement.clone()).await;
    assert_eq!(
        get(table, P, &name, &key).await,
        Some(replacement),
        "{P}: a put must replace the whole item"
    );
    let missing_table = table.get(&format!("{namespace}-no-such-table"), &key).await;
    assert!(
        matches!(missing_table, Err(Error::NotFound(_))),
        "{P}: reading an undeclared table must fail with NotFound, got {missing_table:?}"
    );
}

/// `ItemNotExists` lets the first put through and fails the second, leaving the first item.
pub async fn conditional_put_item_not_exists(table: &dyn Table, namespace: &str) {
    const P: &str = "conditional_put_item_not_exists";
    let name = items_table(table, P, namespace).await;
    let key = Key::new("once", "only");
    let first = Item::new(key.clone()).with("writer", "first");
    if let Err(error) = table
        .put(&name, first.clone(), Some(Condition::ItemNotExists))
        .await
    {
        panic!("{P}: the first conditional put failed: {error}");
    }
    let second = Item::new(key.clone()).with("writer", "second");
    let result = table
        .put(&name, second, Some(Condition::ItemNotExists))
        .await;
    assert_condition_failed(P, "a second ItemNotExists put", result);
    assert_eq!(get(table, P, &name, &key).await, Some(first));
}

/// Update conditions compare typed values; a stale version check fails and changes nothing.
pub async fn update_conditions_compare_and_check_versions(table: &dyn Table, namespace: &str) {
    const P: &str = "update_conditions_compare_and_check_versions";
    let name = items_table(table, P, namespace).await;
    let key = Key::new("versioned", "doc");
    let created = update(
        table,
        P,
        &name,
        &key,
        Update::new().set("version", 1).set("body", "v1"),
        Some(Condition::ItemNotExists),
    )
    .await;
    assert_eq!(
        created.i64("version"),
        Some(1),
        "{P}: update must return the new item"
    );
    let updated = update(
        table,
        P,
        &name,
        &key,
        Update::new().set("version", 2).set("body", "v2"),
        Some(Condition::eq("version", 1)),
    )
    .await;
    assert_eq!(updated.str("body"), Some("v2"));
    let stale = table
        .update(
            &name,
            &key,
            Update::new().set("version", 2).set("body", "lost"),
            Some(Condition::eq("version", 1)),
        )
        .await;
    assert_condition_failed(P, "an update with a stale version", stale);
    assert_eq!(
        get(table, P, &name, &key)
            .await
            .and_then(|i| i.str("body").map(str::to_owned)),
        Some("v2".to_owned()),
        "{P}: a failed update must change nothing"
    );
    let holds = [
        Condition::compare("version", Comparison::Lt, 3),
        Condition::compare("version", Comparison::Le, 2),
        Condition::compare("version", Comparison::Gt, 1),
        Condition::compare("version", Comparison::Ge, 2),
        Condition::compare("version", Comparison::Ne, 5),
        Condition::compare("missing", Comparison::Ne, 5),
        Condition::compare("body", Comparison::Gt, "v1"),
        Condition::Exists("body".into()),
        Condition::NotExists("missing".into()),
        Condition::eq("pk", "versioned"),
        Condition::And(vec![Condition::ItemExists, Condition::eq("version", 2)]),
        Condition::Or(vec![
            Condition::eq("version", 9),
            Condition::eq("body", "v2"),
        ]),
        Condition::Not(Box::new(Condition::eq("version", 9))),
    ];
    for condition in holds {
        let result = table
            .update(
                &name,
                &key,
                Update::new().add("checks", 1),
                Some(condition.clone()),
            )
            .await;
        assert!(
            result.is_ok(),
            "{P}: {condition:?} holds but the update failed: {result:?}"
        );
    }
    let fails = [
        Condition::compare("version", Comparison::Lt, 2),
        Condition::compare("version", Comparison::Gt, 2),
        Condition::eq("version", "2"),
        Condition::eq("missing", 1),
        Condition::compare("missing", Comparison::Lt, 1),
        Condition::NotExists("body".into()),
        Condition::ItemNotExists,
    ];
    for condition in fails {
        let result = table
            .update(
                &name,
                &key,
                Update::new().add("checks", 1),
                Some(condition.clone()),
            )
            .await;
        assert_condition_failed(P, &format!("an update under {condition:?}"), result);
    }
    let absent = table
        .update(
            &name,
            &Key::new("versioned", "absent"),
            Update::new().set("x", 1),
            Some(Condition::ItemExists),
        )
        .await;
    assert_condition_failed(P, "an ItemExists update of a missing item", absent);
    assert_eq!(
        get(table, P, &name, &key)
            .await
            .and_then(|i| i.i64("checks")),
        Some(13),
        "{P}: exactly the updates whose condition held must have applied"
    );
}

/// Concurrent `ADD`s on one counter sum exactly.
pub async fn concurrent_atomic_adds_sum_exactly(table: &dyn Table, namespace: &str) {
    const P: &str = "concurrent_atomic_adds_sum_exactly";
    let name = items_table(table, P, namespace).await;
    let key = Key::new("counter", "c");
    let writers = 16;
    let adds_per_writer = 8;
    let name_ref = name.as_str();
    let key_ref = &key;
    let results = join_all((0..writers).map(|writer| async move {
        for round in 0..adds_per_writer {
            let delta = (writer * adds_per_writer + round + 1) as i64;
            table
                .update(
                    name_ref,
                    key_ref,
                    Update::new().add("total", delta).add("count", 1),
                    None,
                )
                .await?;
        }
        Ok::<(), Error>(())
    }))
    .await;
    for result in results {
        if let Err(error) = result {
            panic!("{P}: a concurrent ADD failed: {error}");
        }
    }
    let total_adds = writers * adds_per_writer;
    let expected: i64 = (1..=total_adds as i64).sum();
    let item = get(table, P, &name, &key).await;
    assert_eq!(
        item.as_ref().and_then(|i| i.i64("total")),
        Some(expected),
        "{P}: concurrent ADDs lost or doubled an increment"
    );
    assert_eq!(item.and_then(|i| i.i64("count")), Some(total_adds as i64));
}

/// `set_if_absent` writes a missing attribute and leaves a present one alone.
pub async fn set_if_absent_keeps_an_existing_value(table: &dyn Table, namespace: &str) {
    const P: &str = "set_if_absent_keeps_an_existing_value";
    let name = items_table(table, P, namespace).await;
    let key = Key::new("absent", "a");
    let first = update(
        table,
        P,
        &name,
        &key,
        Update::new()
            .set_if_absent("created", 100)
            .set("touched", 1),
        None,
    )
    .await;
    assert_eq!(
        first.i64("created"),
        Some(100),
        "{P}: an absent attribute must be set"
    );
    let second = update(
        table,
        P,
        &name,
        &key,
        Update::new()
            .set_if_absent("created", 200)
            .set("touched", 2),
        None,
    )
    .await;
    assert_eq!(
        second.i64("created"),
        Some(100),
        "{P}: an existing attribute must be kept"
    );
    assert_eq!(second.i64("touched"), Some(2));
}

/// `remove` drops an attribute (and removing a missing one is harmless).
pub async fn remove_drops_an_attribute(table: &dyn Table, namespace: &str) {
    const P: &str = "remove_drops_an_attribute";
    let name = items_table(table, P, namespace).await;
    let key = Key::new("remove", "r");
    put(
        table,
        P,
        &name,
        Item::new(key.clone()).with("keep", 1).with("drop", 2),
    )
    .await;
    let updated = update(
        table,
        P,
        &name,
        &key,
        Update::new().remove("drop").remove("never-there"),
        None,
    )
    .await;
    assert_eq!(
        updated,
        Item::new(key.clone()).with("keep", 1),
        "{P}: wrong item after remove"
    );
    assert_eq!(get(table, P, &name, &key).await, Some(updated));
}

/// A conditional delete fails on a false condition and returns the removed item otherwise.
pub async fn conditional_delete_returns_the_old_item(table: &dyn Table, namespace: &str) {
    const P: &str = "conditional_delete_returns_the_old_item";
    let name = items_table(table, P, namespace).await;
    let key = Key::new("delete", "d");
    let item = Item::new(key.clone()).with("state", "done");
    put(table, P, &name, item.clone()).await;
    let refused = table
        .delete(&name, &key, Some(Condition::eq("state", "pending")))
        .await;
    assert_condition_failed(P, "a delete under a false condition", refused);
    assert_eq!(
        get(table, P, &name, &key).await,
        Some(item.clone()),
        "{P}: item lost"
    );
    match table
        .delete(&name, &key, Some(Condition::eq("state", "done")))
        .await
    {
        Ok(old) => assert_eq!(old, Some(item), "{P}: delete must return the removed item"),
        Err(error) => panic!("{P}: a delete under a true condition failed: {error}"),
    }
    assert_eq!(
        get(table, P, &name, &key).await,
        None,
        "{P}: item still there"
    );
    match table.delete(&name, &key, None).await {
        Ok(old) => assert_eq!(old, None, "{P}: deleting a missing item returns None"),
        Err(error) => panic!("{P}: deleting a missing item failed: {error}"),
    }
    let guarded = table.delete(&name, &key, Some(Condition::ItemExists)).await;
    assert_condition_failed(P, "an ItemExists delete of a missing item", guarded);
}

async fn fill_partition(table: &dyn Table, property: &str, name: &str, pk: &str, sks: &[String]) {
    for chunk in sks.chunks(25) {
        let writes = chunk
            .iter()
            .map(|sk| {
                BatchWrite::Put(Item::new(Key::new(pk, sk.as_str())).with("sk_copy", sk.as_str()))
            })
            .collect();
        if let Err(error) = table.batch_write(name, writes).await {
            panic!("{property}: batch_write failed: {error}");
        }
    }
}

/// Queries stay in their partition and select sort keys by prefix, between and bounds.
pub async fn query_selects_by_prefix_between_and_bounds(table: &dyn Table, namespace: &str) {
    const P: &str = "query_selects_by_prefix_between_and_bounds";
    let name = items_table(table, P, namespace).await;
    let pk = "query#ranges";
    let mut sks: Vec<String> = (1..=10).map(|i| format!("a#{i:02}")).collect();
    sks.extend((1..=5).map(|i| format!("b#{i:02}")));
    sks.push("a".to_owned());
    fill_partition(table, P, &name, pk, &sks).await;
    // A neighbouring partition whose key extends this one's must never leak in.
    fill_partition(table, P, &name, "query#rangesX", &["a#01".to_owned()]).await;
    fill_partition(table, P, &name, "query#range", &["a#01".to_owned()]).await;

    let all = query_all(table, P, &name, Query::partition(pk)).await;
    let mut expected: Vec<&str> = sks.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(
        sort_keys(&all),
        expected,
        "{P}: a partition query must return it in sk order"
    );
    assert!(
        all.iter().all(|item| item.key.pk == pk),
        "{P}: items of another partition leaked"
    );

    let cases = [
        (
            SortKeyRange::Prefix("a#".into()),
            (1..=10).map(|i| format!("a#{i:02}")).collect::<Vec<_>>(),
        ),
        (
            SortKeyRange::Between("a#09".into(), "b#02".into()),
            vec!["a#09", "a#10", "b#01", "b#02"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
        ),
        (
            SortKeyRange::GreaterThan("b#03".into()),
            vec!["b#04".to_owned(), "b#05".to_owned()],
        ),
        (
            SortKeyRange::AtLeast("b#04".into()),
            vec!["b#04".to_owned(), "b#05".to_owned()],
        ),
        (
            SortKeyRange::LessThan("a#02".into()),
            vec!["a".to_owned(), "a#01".to_owned()],
        ),
        (
            SortKeyRange::AtMost("a#01".into()),
            vec!["a".to_owned(), "a#01".to_owned()],
        ),
        (SortKeyRange::Prefix("c".into()), Vec::new()),
    ];
    for (range, expected) in cases {
        let items = query_all(table, P, &name, Query::partition(pk).range(range.clone())).await;
        assert_eq!(
            sort_keys(&items),
            expected,
            "{P}: wrong items for {range:?}"
        );
    }
    let limited = match table
        .query(
            &name,
            &Query::partition(pk)
                .range(SortKeyRange::Prefix("a#".into()))
                .limit(3),
        )
        .await
    {
        Ok(page) => page,
        Err(error) => panic!("{P}: a limited query failed: {error}"),
    };
    assert_eq!(
        sort_keys(&limited.items),
        ["a#01", "a#02", "a#03"],
        "{P}: limit ignored"
    );
    assert_eq!(
        limited.last_evaluated_sk.as_deref(),
        Some("a#03"),
        "{P}: a page cut by its limit must say where it stopped"
    );
    let empty = query_all(table, P, &name, Query::partition("query#nothing-here")).await;
    assert!(
        empty.is_empty(),
        "{P}: an empty partition must return no items"
    );
}

async fn collect_pages(table: &dyn Table, property: &str, name: &str, query: Query) -> Vec<String> {
    let mut seen = Vec::new();
    let mut start_after = None;
    for _ in 0..100 {
        let page = match table
            .query(name, &query.clone().start_after(start_after.clone()))
            .await
        {
            Ok(page) => page,
            Err(error) => panic!("{property}: a paged query failed: {error}"),
        };
        if let Some(limit) = query.limit {
            assert!(
                page.items.len() <= limit,
                "{property}: page larger than its limit"
            );
        }
        seen.extend(page.items.iter().map(|item| item.key.sk.clone()));
        match page.last_evaluated_sk {
            Some(last) => {
                assert_eq!(
                    page.items.last().map(|item| item.key.sk.as_str()),
                    Some(last.as_str()),
                    "{property}: last_evaluated_sk must be the page's last sort key"
                );
                start_after = Some(last);
            }
            None => return seen,
        }
    }
    panic!("{property}: pagination did not end after 100 pages");
}

/// Following `last_evaluated_sk` until it is `None` returns every item once, in order.
pub async fn query_pages_cover_everything_once(table: &dyn Table, namespace: &str) {
    const P: &str = "query_pages_cover_everything_once";
    let name = items_table(table, P, namespace).await;
    let pk = "query#pages";
    let sks: Vec<String> = (0..23).map(|i| format!("e#{i:03}")).collect();
    fill_partition(table, P, &name, pk, &sks).await;
    for limit in [1, 7, 23, 50] {
        let seen = collect_pages(table, P, &name, Query::partition(pk).limit(limit)).await;
        assert_eq!(
            seen, sks,
            "{P}: pages of {limit} did not return every item once, in order"
        );
        let mut descending = sks.clone();
        descending.reverse();
        let seen = collect_pages(
            table,
            P,
            &name,
            Query::partition(pk).limit(limit).descending(),
        )
        .await;
        assert_eq!(seen, descending, "{P}: descending pages of {limit} wrong");
    }
    let ranged = collect_pages(
        table,
        P,
        &name,
        Query::partition(pk)
            .range(SortKeyRange::Between("e#005".into(), "e#014".into()))
            .limit(4),
    )
    .await;
    assert_eq!(
        ranged,
        sks[5..=14].to_vec(),
        "{P}: paging inside a range went outside it"
    );
}

/// A descending query returns the same items in reverse sort-key order.
pub async fn query_descending_reverses_order(table: &dyn Table, namespace: &str) {
    const P: &str = "query_descending_reverses_order";
    let name = items_table(table, P, namespace).await;
    let pk = "query#descending";
    let sks: Vec<String> = (0..6).map(|i| format!("s#{i}")).collect();
    fill_partition(table, P, &name, pk, &sks).await;
    let items = query_all(table, P, &name, Query::partition(pk).descending().limit(4)).await;
    assert_eq!(
        sort_keys(&items),
        ["s#5", "s#4", "s#3", "s#2"],
        "{P}: wrong descending page"
    );
    let ranged = query_all(
        table,
        P,
        &name,
        Query::partition(pk)
            .range(SortKeyRange::LessThan("s#3".into()))
            .descending(),
    )
    .await;
    assert_eq!(
        sort_keys(&ranged),
        ["s#2", "s#1", "s#0"],
        "{P}: wrong descending range"
    );
}

/// A batch write of 25 puts and deletes applies all of them; 26 are refused.
pub async fn batch_write_takes_at_most_25(table: &dyn Table, namespace: &str) {
    const P: &str = "batch_write_takes_at_most_25";
    let name = items_table(table, P, namespace).await;
    let pk = "batch#write";
    put(table, P, &name, Item::new(Key::new(pk, "doomed"))).await;
    let mut writes: Vec<BatchWrite> = (0..24)
        .map(|i| BatchWrite::Put(Item::new(Key::new(pk, format!("w#{i:02}"))).with("i", i)))
        .collect();
    writes.push(BatchWrite::Delete(Key::new(pk, "doomed")));
    if let Err(error) = table.batch_write(&name, writes).await {
        panic!("{P}: a batch write of 25 failed: {error}");
    }
    let items = query_all(table, P, &name, Query::partition(pk)).await;
    assert_eq!(
        items.len(),
        24,
        "{P}: the batch's puts and delete were not all applied"
    );
    let too_many = (0..26)
        .map(|i| BatchWrite::Put(Item::new(Key::new(pk, format!("x#{i:02}")))))
        .collect();
    assert_invalid_request(
        P,
        "a batch write of 26",
        table.batch_write(&name, too_many).await,
    );
    let items = query_all(
        table,
        P,
        &name,
        Query::partition(pk).range(SortKeyRange::Prefix("x#".into())),
    )
    .await;
    assert!(
        items.is_empty(),
        "{P}: a refused batch write applied some writes"
    );
}

/// A batch get returns the items present (any order) and leaves missing keys out.
pub async fn batch_get_returns_present_items(table: &dyn Table, namespace: &str) {
    const P: &str = "batch_get_returns_present_items";
    let name = items_table(table, P, namespace).await;
    let pk = "batch#get";
    let present: Vec<Key> = (0..5).map(|i| Key::new(pk, format!("k#{i}"))).collect();
    for key in &present {
        put(
            table,
            P,
            &name,
            Item::new(key.clone()).with("k", key.sk.as_str()),
        )
        .await;
    }
    let mut keys = present.clone();
    keys.push(Key::new(pk, "missing"));
    let items = match table.batch_get(&name, &keys).await {
        Ok(items) => items,
        Err(error) => panic!("{P}: batch_get failed: {error}"),
    };
    let got: BTreeSet<Key> = items.iter().map(|item| item.key.clone()).collect();
    assert_eq!(
        got,
        present.into_iter().collect(),
        "{P}: wrong set of items"
    );
    assert!(
        items
            .iter()
            .all(|item| item.str("k") == Some(item.key.sk.as_str())),
        "{P}: attributes lost"
    );
    let too_many: Vec<Key> = (0..101)
        .map(|i| Key::new(pk, format!("many#{i}")))
        .collect();
    assert_invalid_request(
        P,
        "a batch get of 101 keys",
        table.batch_get(&name, &too_many).await,
    );
}

/// One false condition cancels the whole transaction, with a reason at its index.
pub async fn transact_is_all_or_nothing(table: &dyn Table, namespace: &str) {
    const P: &str = "transact_is_all_or_nothing";
    let name = items_table(table, P, namespace).await;
    let other = ensure(table, P, format!("{namespace}-other")).await;
    let account = Key::new("tx#account", "a");
    let guard = Key::new("tx#guard", "g");
    put(
        table,
        P,
        &name,
        Item::new(account.clone()).with("balance", 10),
    )
    .await;
    put(
        table,
        P,
        &other,
        Item::new(guard.clone()).with("open", false),
    )
    .await;
    let operations = |guard_value: bool| {
        vec![
            TransactWrite::Update {
                table: name.clone(),
                key: account.clone(),
                update: Update::new().add("balance", -3),
                condition: Some(Condition::compare("balance", Comparison::Ge, 3)),
            },
            TransactWrite::ConditionCheck {
                table: other.clone(),
                key: guard.clone(),
                condition: Condition::eq("open", guard_value),
            },
            TransactWrite::Put {
                table: other.clone(),
                item: Item::new(Key::new("tx#log", "1")).with("amount", 3),
                condition: Some(Condition::ItemNotExists),
            },
            TransactWrite::Delete {
                table: name.clone(),
                key: Key::new("tx#account", "missing"),
                condition: None,
            },
        ]
    };
    match table.transact(operations(true)).await {
        Err(Error::TransactionCanceled { reasons }) => {
            assert_eq!(reasons.len(), 4, "{P}: one reason slot per operation");
            assert!(
                reasons[1]
                    .as_deref()
                    .is_some_and(|r| r.starts_with("ConditionalCheckFailed")),
                "{P}: the failed check must be named at index 1, got {reasons:?}"
            );
            for index in [0, 2, 3] {
                assert_eq!(
                    reasons[index], None,
                    "{P}: operation {index} did not fail: {reasons:?}"
                );
            }
        }
        other => panic!("{P}: a transaction with a false check must be cancelled, got {other:?}"),
    }
    assert_eq!(
        get(table, P, &name, &account)
            .await
            .and_then(|i| i.i64("balance")),
        Some(10),
        "{P}: a cancelled transaction applied an update"
    );
    assert_eq!(
        get(table, P, &other, &Key::new("tx#log", "1")).await,
        None,
        "{P}: a cancelled transaction applied a put"
    );
    if let Err(error) = table.transact(operations(false)).await {
        panic!("{P}: a transaction whose conditions hold failed: {error}");
    }
    assert_eq!(
        get(table, P, &name, &account)
            .await
            .and_then(|i| i.i64("balance")),
        Some(7),
        "{P}: a committed transaction lost its update"
    );
    assert!(
        get(table, P, &other, &Key::new("tx#log", "1"))
            .await
            .is_some()
    );
}

/// A transaction of 101 operations, or naming one item twice, is refused.
pub async fn transact_refuses_over_100_and_one_item_twice(table: &dyn Table, namespace: &str) {
    const P: &str = "transact_refuses_over_100_and_one_item_twice";
    let name = items_table(table, P, namespace).await;
    let too_many = (0..=MAX_TRANSACT)
        .map(|i| TransactWrite::Put {
            table: name.clone(),
            item: Item::new(Key::new("tx#many", format!("{i:03}"))),
            condition: None,
        })
        .collect();
    assert_invalid_request(
        P,
        "a transaction of 101 operations",
        table.transact(too_many).await,
    );
    let twice = vec![
        TransactWrite::Put {
            table: name.clone(),
            item: Item::new(Key::new("tx#twice", "same")).with("n", 1),
            condition: None,
        },
        TransactWrite::Update {
            table: name.clone(),
            key: Key::new("tx#twice", "same"),
            update: Update::new().add("n", 1),
            condition: None,
        },
    ];
    assert_invalid_request(
        P,
        "a transaction touching one item twice",
        table.transact(twice).await,
    );
    assert_eq!(
        get(table, P, &name, &Key::new("tx#twice", "same")).await,
        None,
        "{P}: a refused transaction applied something"
    );
    assert!(
        query_all(table, P, &name, Query::partition("tx#many"))
            .await
            .is_empty(),
        "{P}: a refused transaction applied something"
    );
}

/// Items over 400 KB are refused by put and by an update that grows them.
pub async fn items_over_400_kb_are_refused(table: &dyn Table, namespace: &str) {
    const P: &str = "items_over_400_kb_are_refused";
    let name = items_table(table, P, namespace).await;
    let key = Key::new("large", "l");
    let too_big = Item::new(key.clone()).with("blob", vec![7_u8; MAX_ITEM_BYTES]);
    let result = table.put(&name, too_big, None).await;
    assert!(
        matches!(result, Err(Error::ItemTooLarge { .. })),
        "{P}: a 400 KB+ put must fail with ItemTooLarge, got {result:?}"
    );
    let near_limit = Item::new(key.clone()).with("blob", vec![7_u8; MAX_ITEM_BYTES - 1024]);
    if let Err(error) = table.put(&name, near_limit, None).await {
        panic!("{P}: an item just under the limit was refused: {error}");
    }
    let grown = table
        .update(
            &name,
            &key,
            Update::new().set("more", vec![1_u8; 2048]),
            None,
        )
        .await;
    assert!(
        matches!(grown, Err(Error::ItemTooLarge { .. })),
        "{P}: an update growing an item past 400 KB must fail with ItemTooLarge, got {grown:?}"
    );
    let stored = get(table, P, &name, &key).await;
    assert!(
        stored.is_some_and(|item| !item.attributes.contains_key("more")),
        "{P}: a refused update changed the item"
    );
}

/// Items whose TTL has passed are invisible to get, query and batch_get.
pub async fn expired_items_are_invisible_to_reads(table: &dyn Table, namespace: &str) {
    const P: &str = "expired_items_are_invisible_to_reads";
    let name = items_table(table, P, namespace).await;
    let pk = "ttl#items";
    let now = now_secs();
    let expired = Key::new(pk, "expired");
    let live = Key::new(pk, "live");
    let forever = Key::new(pk, "no-ttl");
    put(
        table,
        P,
        &name,
        Item::new(expired.clone()).with(TTL_ATTRIBUTE, now - 60),
    )
    .await;
    put(
        table,
        P,
        &name,
        Item::new(live.clone()).with(TTL_ATTRIBUTE, now + 3600),
    )
    .await;
    put(table, P, &name, Item::new(forever.clone()).with("x", 1)).await;
    assert_eq!(
        get(table, P, &name, &expired).await,
        None,
        "{P}: get saw an expired item"
    );
    assert!(
        get(table, P, &name, &live).await.is_some(),
        "{P}: get lost a live item"
    );
    let items = query_all(table, P, &name, Query::partition(pk)).await;
    assert_eq!(
        sort_keys(&items),
        ["live", "no-ttl"],
        "{P}: query saw an expired item"
    );
    let fetched = match table
        .batch_get(&name, &[expired, live.clone(), forever.clone()])
        .await
    {
        Ok(items) => items,
        Err(error) => panic!("{P}: batch_get failed: {error}"),
    };
    let keys: BTreeSet<Key> = fetched.into_iter().map(|item| item.key).collect();
    assert_eq!(
        keys,
        BTreeSet::from([live, forever]),
        "{P}: batch_get saw an expired item"
    );
}

/// `ADD` on an attribute that is not a number is refused and changes nothing.
pub async fn add_to_a_non_number_is_refused(table: &dyn Table, namespace: &str) {
    const P: &str = "add_to_a_non_number_is_refused";
    let name = items_table(table, P, namespace).await;
    let key = Key::new("wrongtype", "w");
    let item = Item::new(key.clone()).with("label", "text").with("n", 1);
    put(table, P, &name, item.clone()).await;
    let result = table
        .update(&name, &key, Update::new().add("label", 1).add("n", 1), None)
        .await;
    assert_invalid_request(P, "ADD on a string attribute", result);
    assert_eq!(
        get(table, P, &name, &key).await,
        Some(item),
        "{P}: a refused ADD changed the item"
    );
}
