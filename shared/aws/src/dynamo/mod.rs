//! [`DynamoTable`]: the table port over Amazon DynamoDB (or DynamoDB Local).
//!
//! Every port call becomes one DynamoDB request (batches retry their unprocessed part), with
//! conditions and updates translated by [`expression`]. Reads are strongly consistent and drop
//! items whose `ttl` has passed, because DynamoDB's own TTL sweep can lag by days.

pub mod expression;
pub mod value;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, ConditionCheck, Delete, DeleteRequest, KeySchemaElement,
    KeyType, KeysAndAttributes, Put, PutRequest, ReturnValue, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, WriteRequest,
};
use tracing::{debug, warn};
use worldfleet_ports::table::{MAX_BATCH_GET, MAX_BATCH_WRITE, MAX_TRANSACT};
use worldfleet_ports::{
    BatchWrite, Clock, Condition, Error, Item, Key, OperationCounters, Query, QueryPage, Result,
    SystemClock, TTL_ATTRIBUTE, Table, TableSpec, TransactWrite, Update,
};

use crate::classify::{classify_sdk, for_item, for_resource};
use crate::retry::Repeat;
use crate::settings::AwsSettings;
use expression::{ExpressionBuilder, NormalisedRange, normalise_range};
use value::{AttributeMap, item_from_map, item_to_map, key_from_map, key_to_map};

/// Most requests one `query` makes to fill a page that lost expired items.
const MAX_QUERY_ROUNDS: u32 = 10;
/// How long `ensure_table` waits for a new table to become active.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(120);

/// The table port over DynamoDB. Clones share the client and counters.
#[derive(Clone)]
pub struct DynamoTable {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    settings: AwsSettings,
    counters: Arc<OperationCounters>,
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
        let settings = AwsSettings::from_env()?;
        let config = settings.sdk_config().await;
        Ok(Self::from_sdk_config(&config, settings))
    }

    /// Requests and capacity units counted so far.
    pub fn counters(&self) -> &Arc<OperationCounters> {
        &self.inner.counters
    }

    /// The settings (stack prefix, retry policy) this adapter uses.
    pub fn settings(&self) -> &AwsSettings {
        &self.inner.settings
    }

    /// The logical names of every table under this adapter's stack prefix.
    pub async fn list_tables(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let from = start.clone();
            let output = self
                .request("ListTables", Repeat::Safe, || {
                    let call = self
                        .inner
                        .client
                        .list_tables()
                        .set_exclusive_start_table_name(from.clone())
                        .send();
                    async move { call.await.map_err(|error| classify_sdk(&error)) }
                })
                .await?;
            for physical in output.table_names() {
                if let Some(logical) = self.inner.settings.logical_name(physical) {
                    names.push(logical.to_owned());
                }
            }
            match output.last_evaluated_table_name() {
                Some(last) => start = Some(last.to_owned()),
                None => break,
            }
        }
        names.sort();
        Ok(names)
    }

    /// Deletes a table (tests and teardown); a missing table is not an error.
    pub async fn delete_table(&self, table: &str) -> Result<()> {
        let physical = self.physical(table);
        let result = self
            .request("DeleteTable", Repeat::Safe, || {
                let call = self
                    .inner
                    .client
                    .delete_table()
                    .table_name(physical.clone())
                    .send();
                async move { call.await.map_err(|error| classify_sdk(&error)) }
            })
            .await;
        match result {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn physical(&self, table: &str) -> String {
        self.inner.settings.physical_name(table)
    }

    fn now_secs(&self) -> u64 {
        self.inner.clock.now_secs()
    }

    /// One DynamoDB request: counted per attempt, retried by the policy for `repeat`.
    async fn request<T, F, Fut>(&self, operation: &str, repeat: Repeat, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.inner
            .settings
            .retry
            .run_request(operation, repeat, || {
                self.inner.counters.table_request();
                call()
            })
            .await
    }

    /// Polls until the table is ACTIVE (immediately on DynamoDB Local).
    async fn wait_until_active(&self, table: &str, physical: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_WAIT;
        loop {
            let output = self
                .request("DescribeTable", Repeat::Safe, || {
                    let call = self
                        .inner
                        .client
                        .describe_table()
                        .table_name(physical)
                        .send();
                    async move { call.await.map_err(|error| classify_sdk(&error)) }
                })
                .await
                .map_err(|error| for_resource(error, "table", table))?;
            let status = output
                .table()
                .and_then(|description| description.table_status());
            if matches!(status, Some(TableStatus::Active) | None) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "table {table} still {status:?} after {TABLE_ACTIVE_WAIT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Turns on TTL on `ttl`; an emulator without TTL support only earns a warning, since
    /// expiry is enforced in code and the sweep is only the janitor.
    async fn enable_ttl(&self, table: &str, physical: &str) -> Result<()> {
        let described = self
            .request("DescribeTimeToLive", Repeat::Safe, || {
                let call = self
                    .inner
                    .client
                    .describe_time_to_live()
                    .table_name(physical)
                    .send();
                async move { call.await.map_err(|error| classify_sdk(&error)) }
            })
            .await;
        if let Ok(output) = &described {
            let status = output
                .time_to_live_description()
                .and_then(|description| description.time_to_live_status());
            if matches!(
                status,
                Some(TimeToLiveStatus::Enabled) | Some(TimeToLiveStatus::Enabling)
            ) {
                return Ok(());
            }
        }
        let specification = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(|error| Error::InvalidRequest(error.to_string()))?;
        let updated = self
            .request("UpdateTimeToLive", Repeat::Safe, || {
                let call = self
                    .inner
                    .client
                    .update_time_to_live()
                    .table_name(physical)
                    .time_to_live_specification(specification.clone())
                    .send();
                async move { call.await.map_err(|error| classify_sdk(&error)) }
            })
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(Error::InvalidRequest(reason)) if reason.contains("already enabled") => Ok(()),
            Err(error) if error.is_retryable() => Err(error),
            Err(error) => {
                warn!(table, %error, "could not enable TTL; expired items are still hidden by reads");
                Ok(())
            }
        }
    }

    fn visible(&self, item: Item) -> Option<Item> {
        (!item.is_expired(self.now_secs())).then_some(item)
    }
}

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

/// A rough size of the item an update leaves: the key and every value it sets.
fn update_bytes(key: &Key, update: &Update) -> usize {
    key_bytes(key)
        + update
            .set
            .iter()
            .chain(update.set_if_absent.iter())
            .map(|(name, value)| name.len() + value.size_bytes())
            .sum::<usize>()
        + update
            .add
            .iter()
            .map(|(name, _)| name.len() + 21)
            .sum::<usize>()
}

/// A condition's expression, names and values.
struct Expressions {
    condition: Option<String>,
    update: Option<String>,
    names: Option<HashMap<String, String>>,
    values: Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
}

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

/// Codes of cancellation reasons that a later attempt may not meet.
fn transient_cancellation(reason: &str) -> bool {
    [
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
    ]
    .iter()
    .any(|code| reason.starts_with(code))
}

/// `reasons[i]` for operation `i`: `None` when it did not fail, else `"Code: message"`.
fn cancellation_reasons(error: &TransactWriteItemsError, operations: usize) -> Vec<Option<String>> {
    let TransactWriteItemsError::TransactionCanceledException(cancelled) = error else {
        return vec![None; operations];
    };
    let listed = cancelled.cancellation_reasons();
    if !listed.is_empty() {
        return listed
            .iter()
            .map(|reason| match reason.code() {
                None | Some("None") => None,
                Some(code) => Some(match reason.message() {
                    Some(message) if !message.is_empty() => format!("{code}: {message}"),
                    _ => code.to_owned(),
                }),
            })
            .collect();
    }
    // Fall back on the message, which lists the codes: "... reasons [None, ConditionalCheckFailed]".
    let message =
        aws_smithy_types::error::metadata::ProvideErrorMetadata::message(error).unwrap_or_default();
    match message
        .rsplit_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
    {
        Some((list, _)) => list
            .split(',')
            .map(str::trim)
            .map(|code| (code != "None" && !code.is_empty()).then(|| code.to_owned()))
            .collect(),
        None => vec![Some(message.to_owned()); operations],
    }
}

#[async_trait]
impl Table for DynamoTable {
    async fn ensure_table(&self, spec: &TableSpec) -> Result<()> {
        let physical = self.physical(&spec.name);
        let definition = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|error| Error::InvalidRequest(error.to_string()))
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|error| Error::InvalidRequest(error.to_string()))
        };
        let definitions = vec![definition("pk")?, definition("sk")?];
        let schema = vec![key("pk", KeyType::Hash)?, key("sk", KeyType::Range)?];
        let created = self
            .request("CreateTable", Repeat::Safe, || {
                let call = self
                    .inner
                    .client
                    .create_table()
                    .table_name(physical.clone())
                    .set_attribute_definitions(Some(definitions.clone()))
                    .set_key_schema(Some(schema.clone()))
                    .billing_mode(BillingMode::PayPerRequest)
                    .send();
                async move { call.await.map_err(|error| classify_sdk(&error)) }
            })
            .await;
        match created {
            Ok(_) => debug!(table = %spec.name, %physical, "table created"),
            // ResourceInUseException: it exists (or is being created) already.
            Err(Error::Permanent(reason)) if reason.contains("ResourceInUse") => {}
            Err(Error::InvalidRequest(reason)) if reason.contains("already exists") => {}
            Err(error) => return Err(error),
        }
        self.wait_until_active(&spec.name, &physical).await?;
        self.enable_ttl(&spec.name, &physical).await
    }

    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>> {
        check_key(key)?;
        let physical = self.physical(table);
        let key_map = key_to_map(key);
        let output = self
            .request("GetItem", Repeat::Safe, || {
                let call = self
                    .inner
                    .client
                    .get_item()
                    .table_name(physical.clone())
                    .set_key(Some(key_map.clone()))
                    .consistent_read(true)
                    .send();
                async move { call.await.map_err(|error| classify_sdk(&error)) }
            })
            .await
            .map_err(|error| for_resource(error, "table", table))?;
        match output.item() {
            Some(map) => {
                let item = item_from_map(map)?;
                self.inner.counters.item_read(item.size_bytes());
                Ok(self.visible(item))
            }
            None => {
                // A miss still costs a read unit.
                self.inner.counters.query_read(0, 0);
                Ok(None)
            }
        }
    }

    async fn batch_get(&self, table: &str, keys: &[Key]) -> Result<Vec<Item>> {
        if keys.len() > MAX_BATCH_GET {
            return Err(Error::InvalidRequest(format!(
                "{} keys in one batch get; the limit is {MAX_BATCH_GET}",
                keys.len()
            )));
        }
        for key in keys {
            check_key(key)?;
        }
        // DynamoDB refuses duplicate keys; reading one twice is the same as once.
        let distinct: BTreeSet<&Key> = keys.iter().collect();
        let mut pending: Vec<AttributeMap> = distinct.into_iter().map(key_to_map).collect();
        let physical = self.physical(table);
        let policy = self.inner.settings.retry;
        let mut items = Vec::new();
        let mut round = 0;
        while !pending.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending.clone()))
                .consistent_read(true)
                .build()
                .map_err(|error| Error::InvalidRequest(error.to_string()))?;
            let output = self
                .request("BatchGetItem", Repeat::Safe, || {
                    let call = self
                        .inner
                        .client
                        .batch_get_item()
                        .request_items(physical.clone(), request.clone())
                        .send();
                    async move { call.await.map_err(|error| classify_sdk(&error)) }
                })
                .await
                .map_err(|error| for_resource(error, "table", table))?;
            if let Some(found) = output
                .responses()
                .and_then(|responses| responses.get(&physical))
            {
                for map in found {
                    let item = item_from_map(map)?;
                    self.inner.counters.item_read(item.size_bytes());
                    items.extend(self.visible(item));
                }
            }
            pending = output
                .unprocessed_keys()
                .and_then(|unprocessed| unprocessed.get(&physical))
                .map(|left| left.keys().to_vec())
                .unwrap_or_default();
            if !pending.is_empty() {
                round += 1;
                if round >= policy.max_attempts {
                    return Err(Error::Throttled(format!(
                        "{} keys of {table} still unprocessed after {round} rounds",
                        pending.len()
                    )));
                }
                tokio::time::sleep(policy.backoff(round - 1)).await;
            }
        }
        Ok(items)
    }

    async fn put(&self, table: &str, item: Item, condition: Option<Condition>) -> Result<()> {
        item.validate()?;
        let physical = self.physical(table);
        let map = item_to_map(&item);
        let expressions = expressions(condition.as_ref(), None);
        let repeat = if condition.is_some() {
            Repeat::Unsafe
        } else {
            Repeat::Safe
        };
        self.request("PutItem", repeat, || {
            let call = self
                .inner
                .client
                .put_item()
                .table_name(physical.clone())
                .set_item(Some(map.clone()))
                .set_condition_expression(expressions.condition.clone())
                .set_expression_attribute_names(expressions.names.clone())
                .set_expression_attribute_values(expressions.values.clone())
                .send();
            async move { call.await.map_err(|error| classify_sdk(&error)) }
        })
        .await
        .map_err(|error| for_resource(for_item(error, table, &item.key), "table", table))?;
        self.inner.counters.item_written(item.size_bytes(), false);
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
        let physical = self.physical(table);
        let key_map = key_to_map(key);
        let expressions = expressions(condition.as_ref(), Some(&update));
        // Counters and conditional updates must not be applied twice.
        let repeat = if condition.is_some() || !update.add.is_empty() {
            Repeat::Unsafe
        } else {
            Repeat::Safe
        };
        let output = self
            .request("UpdateItem", repeat, || {
                let call = self
                    .inner
                    .client
                    .update_item()
                    .table_name(physical.clone())
                    .set_key(Some(key_map.clone()))
                    .set_update_expression(expressions.update.clone())
                    .set_condition_expression(expressions.condition.clone())
                    .set_expression_attribute_names(expressions.names.clone())
                    .set_expression_attribute_values(expressions.values.clone())
                    .return_values(ReturnValue::AllNew)
                    .send();
                async move { call.await.map_err(|error| classify_sdk(&error)) }
            })
            .await
            .map_err(|error| for_resource(for_item(error, table, key), "table", table))?;
        let item = match output.attributes() {
            Some(map) => item_from_map(map)?,
            None => Item::new(key.clone()),
        };
        self.inner.counters.item_written(item.size_bytes(), false);
        Ok(item)
    }

    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>> {
        check_key(key)?;
        let physical = self.physical(table);
        let key_map = key_to_map(key);
        let expressions = expressions(condition.as_ref(), None);
        let repeat = if condition.is_some() {
            Repeat::Unsafe
        } else {
            Repeat::Safe
        };
        let output = self
            .request("DeleteItem", repeat, || {
                let call = self
                    .inner
                    .client
                    .delete_item()
                    .table_name(physical.clone())
                    .set_key(Some(key_map.clone()))
                    .set_condition_expression(expressions.condition.clone())
                    .set_expression_attribute_names(expressions.names.clone())
                    .set_expression_attribute_values(expressions.values.clone())
                    .return_values(ReturnValue::AllOld)
                    .send();
                async move { call.await.map_err(|error| classify_sdk(&error)) }
            })
            .await
            .map_err(|error| for_resource(for_item(error, table, key), "table", table))?;
        let removed = output.attributes().map(item_from_map).transpose()?;
        let bytes = removed.as_ref().map_or(key_bytes(key), Item::size_bytes);
        self.inner.counters.item_written(bytes, false);
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
                    let call = self
                        .inner
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
                        .send();
                    async move { call.await.map_err(|error| classify_sdk(&error)) }
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
            self.inner.counters.query_read(bytes, output.items().len());
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
        if writes.len() > MAX_BATCH_WRITE {
            return Err(Error::InvalidRequest(format!(
                "{} writes in one batch; the limit is {MAX_BATCH_WRITE}",
                writes.len()
            )));
        }
        let mut seen = BTreeSet::new();
        let mut pending = Vec::with_capacity(writes.len());
        let mut sizes = HashMap::new();
        for write in &writes {
            let (key, request, bytes) = match write {
                BatchWrite::Put(item) => {
                    item.validate()?;
                    let put = PutRequest::builder()
                        .set_item(Some(item_to_map(item)))
                        .build()
                        .map_err(|error| Error::InvalidRequest(error.to_string()))?;
                    (
                        &item.key,
                        WriteRequest::builder().put_request(put).build(),
                        item.size_bytes(),
                    )
                }
                BatchWrite::Delete(key) => {
                    check_key(key)?;
                    let delete = DeleteRequest::builder()
                        .set_key(Some(key_to_map(key)))
                        .build()
                        .map_err(|error| Error::InvalidRequest(error.to_string()))?;
                    (
                        key,
                        WriteRequest::builder().delete_request(delete).build(),
                        key_bytes(key),
                    )
                }
            };
            if !seen.insert(key.clone()) {
                return Err(Error::InvalidRequest(format!(
                    "item {key} appears twice in one batch write"
                )));
            }
            sizes.insert(key.clone(), bytes);
            pending.push(request);
        }
        let physical = self.physical(table);
        let policy = self.inner.settings.retry;
        let mut round = 0;
        while !pending.is_empty() {
            let output = self
                .request("BatchWriteItem", Repeat::Safe, || {
                    let call = self
                        .inner
                        .client
                        .batch_write_item()
                        .request_items(physical.clone(), pending.clone())
                        .send();
                    async move { call.await.map_err(|error| classify_sdk(&error)) }
                })
                .await
                .map_err(|error| for_resource(error, "table", table))?;
            let left = output
                .unprocessed_items()
                .and_then(|unprocessed| unprocessed.get(&physical))
                .cloned()
                .unwrap_or_default();
            let unprocessed_keys: BTreeSet<Key> = left
                .iter()
                .filter_map(|request| {
                    request
                        .put_request()
                        .map(|put| put.item())
                        .or_else(|| request.delete_request().map(|delete| delete.key()))
                        .and_then(|map| key_from_map(map).ok())
                })
                .collect();
            for (key, bytes) in &sizes {
                if !unprocessed_keys.contains(key) {
                    self.inner.counters.item_written(*bytes, false);
                }
            }
            sizes.retain(|key, _| unprocessed_keys.contains(key));
            pending = left;
            if !pending.is_empty() {
                round += 1;
                if round >= policy.max_attempts {
                    return Err(Error::Throttled(format!(
                        "{} writes to {table} still unprocessed after {round} rounds",
                        pending.len()
                    )));
                }
                tokio::time::sleep(policy.backoff(round - 1)).await;
            }
        }
        Ok(())
    }

    async fn transact(&self, operations: Vec<TransactWrite>) -> Result<()> {
        if operations.len() > MAX_TRANSACT {
            return Err(Error::InvalidRequest(format!(
                "{} operations in one transaction; the limit is {MAX_TRANSACT}",
                operations.len()
            )));
        }
        if operations.is_empty() {
            return Ok(());
        }
        let mut items = Vec::with_capacity(operations.len());
        let mut targets = BTreeSet::new();
        for operation in &operations {
            let (table, key) = operation.target();
            check_key(key)?;
            if !targets.insert((table.to_owned(), key.clone())) {
                return Err(Error::InvalidRequest(format!(
                    "item {key} of {table} appears twice in one transaction"
                )));
            }
            items.push(self.transact_item(operation)?);
        }
        let policy = self.inner.settings.retry;
        let mut token = uuid::Uuid::new_v4().to_string();
        let mut attempt = 0;
        loop {
            self.inner.counters.table_request();
            let result = self
                .inner
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .client_request_token(token.clone())
                .send()
                .await;
            let error = match result {
                Ok(_) => break,
                Err(SdkError::ServiceError(service))
                    if matches!(
                        service.err(),
                        TransactWriteItemsError::TransactionCanceledException(_)
                    ) =>
                {
                    let reasons = cancellation_reasons(service.err(), operations.len());
                    let transient = reasons.iter().flatten().count() > 0
                        && reasons
                            .iter()
                            .flatten()
                            .all(|reason| transient_cancellation(reason));
                    if transient && attempt + 1 < policy.max_attempts {
                        // Nothing was applied: a fresh token makes the retry a new transaction.
                        token = uuid::Uuid::new_v4().to_string();
                        tokio::time::sleep(policy.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(Error::TransactionCanceled { reasons });
                }
                Err(other) => classify_sdk(&other),
            };
            // The client request token makes a repeat of an applied transaction a no-op.
            if Repeat::Safe.should_retry(&error) && attempt + 1 < policy.max_attempts {
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            return Err(error);
        }
        for operation in &operations {
            match operation {
                TransactWrite::Put { item, .. } => {
                    self.inner.counters.item_written(item.size_bytes(), true)
                }
                TransactWrite::Update { key, update, .. } => self
                    .inner
                    .counters
                    .item_written(update_bytes(key, update), true),
                TransactWrite::Delete { key, .. } => {
                    self.inner.counters.item_written(key_bytes(key), true)
                }
                TransactWrite::ConditionCheck { key, .. } => {
                    self.inner.counters.item_read(key_bytes(key))
                }
            }
        }
        Ok(())
    }
}

impl DynamoTable {
    fn transact_item(&self, operation: &TransactWrite) -> Result<TransactWriteItem> {
        let invalid = |error: aws_smithy_types::error::operation::BuildError| {
            Error::InvalidRequest(error.to_string())
        };
        let item = match operation {
            TransactWrite::Put {
                table,
                item,
                condition,
            } => {
                item.validate()?;
                let expressions = expressions(condition.as_ref(), None);
                let put = Put::builder()
                    .table_name(self.physical(table))
                    .set_item(Some(item_to_map(item)))
                    .set_condition_expression(expressions.condition)
                    .set_expression_attribute_names(expressions.names)
                    .set_expression_attribute_values(expressions.values)
                    .build()
                    .map_err(invalid)?;
                TransactWriteItem::builder().put(put).build()
            }
            TransactWrite::Update {
                table,
                key,
                update,
                condition,
            } => {
                update.validate()?;
                let expressions = expressions(condition.as_ref(), Some(update));
                let update = aws_sdk_dynamodb::types::Update::builder()
                    .table_name(self.physical(table))
                    .set_key(Some(key_to_map(key)))
                    .set_update_expression(expressions.update)
                    .set_condition_expression(expressions.condition)
                    .set_expression_attribute_names(expressions.names)
                    .set_expression_attribute_values(expressions.values)
                    .build()
                    .map_err(invalid)?;
                TransactWriteItem::builder().update(update).build()
            }
            TransactWrite::Delete {
                table,
                key,
                condition,
            } => {
                let expressions = expressions(condition.as_ref(), None);
                let delete = Delete::builder()
                    .table_name(self.physical(table))
                    .set_key(Some(key_to_map(key)))
                    .set_condition_expression(expressions.condition)
                    .set_expression_attribute_names(expressions.names)
                    .set_expression_attribute_values(expressions.values)
                    .build()
                    .map_err(invalid)?;
                TransactWriteItem::builder().delete(delete).build()
            }
            TransactWrite::ConditionCheck {
                table,
                key,
                condition,
            } => {
                let expressions = expressions(Some(condition), None);
                let check = ConditionCheck::builder()
                    .table_name(self.physical(table))
                    .set_key(Some(key_to_map(key)))
                    .set_condition_expression(expressions.condition)
                    .set_expression_attribute_names(expressions.names)
                    .set_expression_attribute_values(expressions.values)
                    .build()
                    .map_err(invalid)?;
                TransactWriteItem::builder().condition_check(check).build()
            }
        };
        Ok(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_cancellations_are_recognised() {
        assert!(transient_cancellation("TransactionConflict: busy"));
        assert!(!transient_cancellation("ConditionalCheckFailed: no"));
    }

    #[test]
    fn update_sizes_cover_key_and_values() {
        let key = Key::new("p", "s");
        let update = Update::new().set("name", "abc").add("n", 1);
        assert_eq!(update_bytes(&key, &update), 6 + 4 + 3 + 1 + 21);
    }
}
