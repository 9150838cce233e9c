//! [`DynamoTable`]: the table port over Amazon DynamoDB (or DynamoDB Local).
//!
//! Every port call becomes one DynamoDB request (batches retry their unprocessed part), with
//! conditions and updates translated by [`expression`]. Reads are strongly consistent and drop
//! items whose `ttl` has passed, because DynamoDB's own TTL sweep can lag by days.
//!
//! Table administration lives in `admin`, the batch calls with their unprocessed-item rounds in
//! `batch`, TransactWriteItems in `transact`; the single-item reads and writes and the query
//! are here, over one request helper (counted, classified, retried) and one helper for the
//! conditional single-item writes.

pub mod expression;
pub mod value;

mod admin;
mod batch;
mod transact;

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::builders::{
    ConditionCheckBuilder, DeleteBuilder, PutBuilder, UpdateBuilder,
};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use worldfleet_ports::{
    BatchWrite, Clock, Condition, Error, Item, Key, OperationCounters, Query, QueryPage, Result,
    SystemClock, Table, TableSpec, TransactWrite, Update, UsageSnapshot,
};

use crate::classify::{SdkResult, ServiceError, counted_request, for_item, for_resource};
use crate::retry::{Repeat, RetryCounters, RetrySnapshot};
use crate::settings::AwsSettings;
use expression::{ExpressionBuilder, NormalisedRange, normalise_range};
use value::{item_from_map, item_to_map, key_from_map, key_to_map};

/// Most requests one `query` makes to fill a page that lost expired items.
const MAX_QUERY_ROUNDS: u32 = 10;

/// The table port over DynamoDB. Clones share the client and counters.
#[derive(Clone)]
pub struct DynamoTable {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    settings: AwsSettings,
    counters: Arc<OperationCounters>,
    retries: RetryCounters,
    /// The same units again, by logical table: where a stage's bill goes.
    by_table: std::sync::Mutex<std::collections::BTreeMap<String, Arc<OperationCounters>>>,
    clock: Arc<dyn Clock>,
}

impl DynamoTable {
    /// An adapter over a DynamoDB client, expiring items by the system clock.
    pub fn new(client: Client, settings: AwsSettings) -> Self {
        Self::with_parts(
            client,
            settings,
            Arc::new(OperationCounters::default()),
            Arc::new(SystemClock),
        )
    }

    /// An adapter with shared counters and a clock of the caller's choosing.
    pub fn with_parts(
        client: Client,
        settings: AwsSettings,
        counters: Arc<OperationCounters>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                settings,
                counters,
                retries: RetryCounters::default(),
                by_table: Default::default(),
                clock,
            }),
        }
    }

    /// An adapter from an SDK configuration.
    pub fn from_sdk_config(config: &SdkConfig, settings: AwsSettings) -> Self {
        Self::new(Client::new(config), settings)
    }

    /// An adapter configured from the environment ([`AwsSettings::from_env`]).
    pub async fn from_env() -> crate::Result<Self> {
        AwsSettings::adapter_from_env(Self::from_sdk_config).await
    }

    /// Requests and capacity units counted so far.
    pub fn counters(&self) -> &Arc<OperationCounters> {
        &self.inner.counters
    }

    /// What this adapter's retries did so far.
    pub fn retries(&self) -> RetrySnapshot {
        self.inner.retries.snapshot()
    }

    /// The units counted so far, by logical table (requests are counted only in
    /// [`Self::counters`]: a transaction or batch spans tables).
    pub fn usage_by_table(&self) -> std::collections::BTreeMap<String, UsageSnapshot> {
        let by_table = self
            .inner
            .by_table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by_table
            .iter()
            .map(|(table, counters)| (table.clone(), counters.snapshot()))
            .collect()
    }

    fn table_counters(&self, table: &str) -> Arc<OperationCounters> {
        let mut by_table = self
            .inner
            .by_table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Every item counted looks its table up; only a table's first item allocates its name.
        if let Some(counters) = by_table.get(table) {
            return Arc::clone(counters);
        }
        Arc::clone(by_table.entry(table.to_owned()).or_default())
    }

    /// Counts an item of `bytes` written to `table`.
    fn written(&self, table: &str, bytes: usize, transactional: bool) {
        self.inner.counters.item_written(bytes, transactional);
        self.table_counters(table)
            .item_written(bytes, transactional);
    }

    /// Counts an item of `bytes` read from `table`.
    fn read(&self, table: &str, bytes: usize) {
        self.inner.counters.item_read(bytes);
        self.table_counters(table).item_read(bytes);
    }

    /// Counts a query over `bytes` in `items` items of `table`.
    fn queried(&self, table: &str, bytes: usize, items: usize) {
        self.inner.counters.query_read(bytes, items);
        self.table_counters(table).query_read(bytes, items);
    }

    /// The settings (stack prefix, retry policy) this adapter uses.
    pub fn settings(&self) -> &AwsSettings {
        &self.inner.settings
    }

    fn physical(&self, table: &str) -> String {
        self.inner.settings.physical_name(table)
    }

    fn now_secs(&self) -> u64 {
        self.inner.clock.now_secs()
    }

    /// One DynamoDB request, counted as a table request ([`counted_request`]).
    async fn request<T, E, F, Fut>(&self, operation: &str, repeat: Repeat, send: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = SdkResult<T, E>>,
        E: ServiceError,
    {
        let inner = &self.inner;
        let count = || inner.counters.table_request();
        let counting = (count, &inner.retries);
        counted_request(&inner.settings.retry, operation, repeat, counting, send).await
    }

    /// One single-item write (PutItem, UpdateItem or DeleteItem) of `key` in `table`: `send`
    /// issues an attempt on the physical table with the expressions of `condition` and
    /// `update`. A write that must not be applied twice is not repeated after an ambiguous
    /// failure ([`repeat_of_write`]); failures name the item and the table.
    async fn write_item<T, E, F, Fut>(
        &self,
        operation: &str,
        target: (&str, &Key),
        condition: Option<&Condition>,
        update: Option<&Update>,
        send: F,
    ) -> Result<T>
    where
        F: Fn(&Client, String, Expressions) -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let (table, key) = target;
        let physical = self.physical(table);
        let expressions = expressions(condition, update);
        let repeat = repeat_of_write(operation, condition, update);
        self.request(operation, repeat, || {
            send(&self.inner.client, physical.clone(), expressions.clone())
        })
        .await
        .map_err(|error| for_resource(for_item(error, table, key), "table", table))
    }

    fn visible(&self, item: Item) -> Option<Item> {
        (!item.is_expired(self.now_secs())).then_some(item)
    }
}

/// Whether a single-item write may be repeated after an ambiguous failure (a timeout or 5xx
/// of an attempt that may have been applied).
///
/// Unconditional puts, updates without counters and deletes are idempotent. A counter (`ADD`)
/// would count twice, unless the caller marked the update [`Update::repeatable`]. A
/// conditional write is repeatable when applying it cannot falsify its own condition, so that
/// a repeat of an applied attempt passes again and rewrites the same values: an update (no
/// counters) whose condition reads only attributes it does not write (and, at most, that the
/// item exists), or a put whose condition is that the item exists. `claim = mine` guarding a
/// `SET status = COMPLETED` is such a write; `attribute_not_exists` guarding a first write is
/// not (the repeat would fail the condition its own first attempt made false).
fn repeat_of_write(
    operation: &str,
    condition: Option<&Condition>,
    update: Option<&Update>,
) -> Repeat {
    if update.is_some_and(|update| !update.add.is_empty() && !update.repeatable) {
        return Repeat::Unsafe;
    }
    let Some(condition) = condition else {
        return Repeat::Safe;
    };
    let written: Option<Vec<&str>> = match (operation, update) {
        ("UpdateItem", Some(update)) if update.add.is_empty() => Some(
            update
                .set
                .iter()
                .chain(&update.set_if_absent)
                .map(|(name, _)| name.as_str())
                .chain(update.remove.iter().map(String::as_str))
                .collect(),
        ),
        // A put rewrites every attribute: only conditions on the item's existence survive it.
        ("PutItem", None) => None,
        _ => return Repeat::Unsafe,
    };
    if survives_own_write(condition, written.as_deref(), true) {
        Repeat::Safe
    } else {
        Repeat::Unsafe
    }
}

/// True when a write that leaves the item in place and writes `written` (`None`: every
/// attribute) cannot turn `condition` from true to false (`positive`), or from false to true
/// under an odd number of `Not`s.
fn survives_own_write(condition: &Condition, written: Option<&[&str]>, positive: bool) -> bool {
    let untouched = |attribute: &str| written.is_some_and(|names| !names.contains(&attribute));
    match condition {
        // The write never removes the item, but may create it.
        Condition::ItemExists => positive,
        Condition::ItemNotExists => !positive,
        Condition::Exists(attribute) | Condition::NotExists(attribute) => untouched(attribute),
        Condition::Compare { attribute, .. } => untouched(attribute),
        Condition::And(conditions) | Condition::Or(conditions) => conditions
            .iter()
            .all(|condition| survives_own_write(condition, written, positive)),
        Condition::Not(condition) => survives_own_write(condition, written, !positive),
    }
}

/// Refuses a key with an empty partition or sort key, which DynamoDB would refuse too.
fn check_key(key: &Key) -> Result<()> {
    if key.pk.is_empty() || key.sk.is_empty() {
        return Err(Error::InvalidRequest(
            "key attributes must not be empty".to_owned(),
        ));
    }
    Ok(())
}

/// Bytes of a key as DynamoDB sizes it (the floor of any write's size).
fn key_bytes(key: &Key) -> usize {
    2 + key.pk.len() + 2 + key.sk.len()
}

/// A condition's (and update's) expression, names and values.
#[derive(Clone)]
struct Expressions {
    condition: Option<String>,
    update: Option<String>,
    names: Option<HashMap<String, String>>,
    values: Option<HashMap<String, AttributeValue>>,
}

/// The expressions of a write: its condition and update, over one set of placeholders.
fn expressions(condition: Option<&Condition>, update: Option<&Update>) -> Expressions {
    let mut builder = ExpressionBuilder::new();
    let update = update.map(|update| builder.update(update));
    let condition = condition.map(|condition| builder.condition(condition));
    Expressions {
        condition,
        update,
        names: builder.names(),
        values: builder.values(),
    }
}

/// Requests and transaction parts that take a condition expression with its names and values.
trait WithExpressions {
    /// Sets the condition expression and the names and values of every expression (the update
    /// expression, where there is one, is set by the caller).
    fn with_expressions(self, expressions: Expressions) -> Self;
}

macro_rules! with_expressions {
    ($($builder:ty),* $(,)?) => {$(
        impl WithExpressions for $builder {
            fn with_expressions(self, expressions: Expressions) -> Self {
                self.set_condition_expression(expressions.condition)
                    .set_expression_attribute_names(expressions.names)
                    .set_expression_attribute_values(expressions.values)
            }
        }
    )*};
}

with_expressions!(
    PutItemFluentBuilder,
    UpdateItemFluentBuilder,
    DeleteItemFluentBuilder,
    PutBuilder,
    UpdateBuilder,
    DeleteBuilder,
    ConditionCheckBuilder,
);

#[async_trait]
impl Table for DynamoTable {
    async fn ensure_table(&self, spec: &TableSpec) -> Result<()> {
        self.create_table(spec).await
    }

    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>> {
        check_key(key)?;
        let physical = self.physical(table);
        let key_map = key_to_map(key);
        let output = self
            .request("GetItem", Repeat::Safe, || {
                self.inner
                    .client
                    .get_item()
                    .table_name(physical.clone())
                    .set_key(Some(key_map.clone()))
                    .consistent_read(true)
                    .send()
            })
            .await
            .map_err(|error| for_resource(error, "table", table))?;
        match output.item() {
            Some(map) => {
                let item = item_from_map(map)?;
                self.read(table, item.size_bytes());
                Ok(self.visible(item))
            }
            None => {
                // A miss still costs a read unit.
                self.queried(table, 0, 0);
                Ok(None)
            }
        }
    }

    async fn batch_get(&self, table: &str, keys: &[Key]) -> Result<Vec<Item>> {
        self.batch_get_items(table, keys).await
    }

    async fn put(&self, table: &str, item: Item, condition: Option<Condition>) -> Result<()> {
        item.validate()?;
        let map = item_to_map(&item);
        self.write_item(
            "PutItem",
            (table, &item.key),
            condition.as_ref(),
            None,
            |client, physical, expressions| {
                client
                    .put_item()
                    .table_name(physical)
                    .set_item(Some(map.clone()))
                    .with_expressions(expressions)
                    .send()
            },
        )
        .await?;
        self.written(table, item.size_bytes(), false);
        Ok(())
    }

    async fn update(
        &self,
        table: &str,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item> {
        check_key(key)?;
        update.validate()?;
        let key_map = key_to_map(key);
        let output = self
            .write_item(
                "UpdateItem",
                (table, key),
                condition.as_ref(),
                Some(&update),
                |client, physical, expressions| {
                    client
                        .update_item()
                        .table_name(physical)
                        .set_key(Some(key_map.clone()))
                        .set_update_expression(expressions.update.clone())
                        .with_expressions(expressions)
                        .return_values(ReturnValue::AllNew)
                        .send()
                },
            )
            .await?;
        let item = match output.attributes() {
            Some(map) => item_from_map(map)?,
            None => Item::new(key.clone()),
        };
        self.written(table, item.size_bytes(), false);
        Ok(item)
    }

    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>> {
        check_key(key)?;
        let key_map = key_to_map(key);
        let output = self
            .write_item(
                "DeleteItem",
                (table, key),
                condition.as_ref(),
                None,
                |client, physical, expressions| {
                    client
                        .delete_item()
                        .table_name(physical)
                        .set_key(Some(key_map.clone()))
                        .with_expressions(expressions)
                        .return_values(ReturnValue::AllOld)
                        .send()
                },
            )
            .await?;
        let removed = output.attributes().map(item_from_map).transpose()?;
        let bytes = removed.as_ref().map_or(key_bytes(key), Item::size_bytes);
        self.written(table, bytes, false);
        Ok(removed.and_then(|item| self.visible(item)))
    }

    async fn query(&self, table: &str, query: &Query) -> Result<QueryPage> {
        if query.pk.is_empty() {
            return Err(Error::InvalidRequest(
                "query without a partition key".into(),
            ));
        }
        if query.limit == Some(0) {
            return Err(Error::InvalidRequest(
                "query limit must be at least 1".into(),
            ));
        }
        let range = match normalise_range(&query.range) {
            NormalisedRange::Query(range) => range,
            NormalisedRange::Empty => return Ok(QueryPage::default()),
        };
        let physical = self.physical(table);
        let mut builder = ExpressionBuilder::new();
        let key_condition = builder.key_condition(&query.pk, &range);
        let now = self.now_secs();
        let mut items = Vec::new();
        let mut start_after = query.start_after.clone();
        let mut rounds = 0;
        // Expired items are dropped after DynamoDB's `Limit` applied, so a page that lost some
        // is topped up with further requests, rather than coming back short or empty.
        let more = loop {
            rounds += 1;
            let limit = query.limit.map(|limit| limit - items.len());
            let start_key = start_after
                .as_ref()
                .map(|sk| key_to_map(&Key::new(query.pk.clone(), sk.clone())));
            let output = self
                .request("Query", Repeat::Safe, || {
                    self.inner
                        .client
                        .query()
                        .table_name(physical.clone())
                        .key_condition_expression(key_condition.clone())
                        .set_expression_attribute_names(builder.names())
                        .set_expression_attribute_values(builder.values())
                        .scan_index_forward(query.ascending)
                        .set_limit(limit.map(|limit| limit.min(i32::MAX as usize) as i32))
                        .set_exclusive_start_key(start_key.clone())
                        .consistent_read(true)
                        .send()
                })
                .await
                .map_err(|error| for_resource(error, "table", table))?;
            let mut bytes = 0;
            for map in output.items() {
                let item = item_from_map(map)?;
                bytes += item.size_bytes();
                if !item.is_expired(now) {
                    items.push(item);
                }
            }
            self.queried(table, bytes, output.items().len());
            let last_evaluated = output
                .last_evaluated_key()
                .filter(|key| !key.is_empty())
                .map(key_from_map)
                .transpose()?
                .map(|key| key.sk);
            let Some(last_evaluated) = last_evaluated else {
                break None;
            };
            let short = query.limit.is_some_and(|limit| items.len() < limit);
            if (items.is_empty() || short) && rounds < MAX_QUERY_ROUNDS {
                start_after = Some(last_evaluated);
                continue;
            }
            break Some(last_evaluated);
        };
        // Continue after the last item returned; expired items behind it are read again and
        // dropped again, which costs reads but never skips a live item.
        let last_evaluated_sk =
            more.map(|raw| items.last().map_or(raw, |item| item.key.sk.clone()));
        Ok(QueryPage {
            items,
            last_evaluated_sk,
        })
    }

    async fn batch_write(&self, table: &str, writes: Vec<BatchWrite>) -> Result<()> {
        self.batch_write_items(table, writes).await
    }

    async fn transact(&self, operations: Vec<TransactWrite>) -> Result<()> {
        self.transact_writes(operations).await
    }
}

#[cfg(test)]
mod tests {
    use worldfleet_ports::Comparison;

    use super::*;

    #[test]
    fn only_writes_that_cannot_falsify_their_own_condition_are_repeated() {
        let completes = Update::new().set("status", "COMPLETED").remove("expiry");
        let mine = Condition::eq("claim", "c-1");
        assert_eq!(
            repeat_of_write("UpdateItem", Some(&mine), Some(&completes)),
            Repeat::Safe
        );
        let mark = Update::new().set("completed", true);
        assert_eq!(
            repeat_of_write("UpdateItem", Some(&Condition::ItemExists), Some(&mark)),
            Repeat::Safe
        );
        // The update writes what its condition reads: a repeat would fail it.
        let moves = Update::new().set("claim", "c-2");
        assert_eq!(
            repeat_of_write("UpdateItem", Some(&mine), Some(&moves)),
            Repeat::Unsafe
        );
        // A first write: its own first attempt makes the item exist.
        assert_eq!(
            repeat_of_write("UpdateItem", Some(&Condition::ItemNotExists), Some(&mark)),
            Repeat::Unsafe
        );
        assert_eq!(
            repeat_of_write(
                "UpdateItem",
                Some(&Condition::Not(Box::new(Condition::ItemExists))),
                Some(&mark)
            ),
            Repeat::Unsafe
        );
        let either = Condition::Or(vec![
            Condition::ItemExists,
            Condition::compare("ttl", Comparison::Le, 5),
        ]);
        assert_eq!(
            repeat_of_write("UpdateItem", Some(&either), Some(&mark)),
            Repeat::Safe
        );
        // Counters count twice, unless the caller accepts it.
        let counts = Update::new().add("n", 1);
        assert_eq!(
            repeat_of_write("UpdateItem", None, Some(&counts)),
            Repeat::Unsafe
        );
        assert_eq!(
            repeat_of_write("UpdateItem", None, Some(&counts.repeatable())),
            Repeat::Safe
        );
        // Puts rewrite every attribute; deletes remove the item.
        assert_eq!(repeat_of_write("PutItem", None, None), Repeat::Safe);
        assert_eq!(
            repeat_of_write("PutItem", Some(&Condition::ItemExists), None),
            Repeat::Safe
        );
        assert_eq!(
            repeat_of_write("PutItem", Some(&mine), None),
            Repeat::Unsafe
        );
        assert_eq!(
            repeat_of_write("PutItem", Some(&Condition::ItemNotExists), None),
            Repeat::Unsafe
        );
        assert_eq!(
            repeat_of_write("DeleteItem", Some(&Condition::ItemExists), None),
            Repeat::Unsafe
        );
        assert_eq!(repeat_of_write("DeleteItem", None, None), Repeat::Safe);
    }
}
