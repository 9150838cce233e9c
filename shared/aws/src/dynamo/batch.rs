//! BatchGetItem and BatchWriteItem: one request a round, with what DynamoDB leaves
//! unprocessed sent again after a backoff until the retry policy's attempts are spent.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::{DeleteRequest, KeysAndAttributes, PutRequest, WriteRequest};
use worldfleet_ports::table::{MAX_BATCH_GET, MAX_BATCH_WRITE};
use worldfleet_ports::{BatchWrite, Error, Item, Key, Result};

use super::value::{AttributeMap, item_from_map, item_to_map, key_from_map, key_to_map};
use super::{DynamoTable, check_key, key_bytes};
use crate::classify::for_resource;
use crate::retry::{Repeat, RetryCounters, RetryPolicy};

impl DynamoTable {
    /// Reads up to [`MAX_BATCH_GET`] keys of one table (duplicates read once).
    pub(super) async fn batch_get_items(&self, table: &str, keys: &[Key]) -> Result<Vec<Item>> {
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
        let mut rounds = UnprocessedRounds::new(self.inner.settings.retry, &self.inner.retries);
        let mut items = Vec::new();
        while !pending.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending.clone()))
                .consistent_read(true)
                .build()
                .map_err(|error| Error::InvalidRequest(error.to_string()))?;
            let output = self
                .request("BatchGetItem", Repeat::Safe, || {
                    self.inner
                        .client
                        .batch_get_item()
                        .request_items(physical.clone(), request.clone())
                        .send()
                })
                .await
                .map_err(|error| for_resource(error, "table", table))?;
            if let Some(found) = output
                .responses()
                .and_then(|responses| responses.get(&physical))
            {
                for map in found {
                    let item = item_from_map(map)?;
                    self.read(table, item.size_bytes());
                    items.extend(self.visible(item));
                }
            }
            pending = output
                .unprocessed_keys()
                .and_then(|unprocessed| unprocessed.get(&physical))
                .map(|left| left.keys().to_vec())
                .unwrap_or_default();
            if !pending.is_empty() {
                rounds
                    .back_off(|| format!("{} keys of {table}", pending.len()))
                    .await?;
            }
        }
        Ok(items)
    }

    /// Writes or deletes up to [`MAX_BATCH_WRITE`] distinct items of one table.
    pub(super) async fn batch_write_items(
        &self,
        table: &str,
        writes: Vec<BatchWrite>,
    ) -> Result<()> {
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
        let mut rounds = UnprocessedRounds::new(self.inner.settings.retry, &self.inner.retries);
        while !pending.is_empty() {
            let output = self
                .request("BatchWriteItem", Repeat::Safe, || {
                    self.inner
                        .client
                        .batch_write_item()
                        .request_items(physical.clone(), pending.clone())
                        .send()
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
                    self.written(table, *bytes, false);
                }
            }
            sizes.retain(|key, _| unprocessed_keys.contains(key));
            pending = left;
            if !pending.is_empty() {
                rounds
                    .back_off(|| format!("{} writes to {table}", pending.len()))
                    .await?;
            }
        }
        Ok(())
    }
}

/// The rounds of one batch call: what a round leaves unprocessed goes again after a backoff.
struct UnprocessedRounds<'a> {
    policy: RetryPolicy,
    retries: &'a RetryCounters,
    round: u32,
}

impl<'a> UnprocessedRounds<'a> {
    fn new(policy: RetryPolicy, retries: &'a RetryCounters) -> Self {
        Self {
            policy,
            retries,
            round: 0,
        }
    }

    /// Backs off before the next round for what is still unprocessed (`unprocessed` says
    /// what, e.g. "3 keys of ledger"); gives up throttled once the policy's attempts are spent.
    async fn back_off(&mut self, unprocessed: impl FnOnce() -> String) -> Result<()> {
        self.round += 1;
        if self.round >= self.policy.max_attempts {
            let error = Error::Throttled(format!(
                "{} still unprocessed after {} rounds",
                unprocessed(),
                self.round
            ));
            self.retries.handed_back(&error);
            return Err(error);
        }
        self.retries.unprocessed_round();
        tokio::time::sleep(self.policy.backoff(self.round - 1)).await;
        Ok(())
    }
}
