//! The embedded table: DynamoDB semantics over fjall, conditions checked on the writer thread.

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::{Arc, PoisonError};

use async_trait::async_trait;
use fjall::Keyspace;
use worldfleet_ports::table::{MAX_BATCH_GET, MAX_BATCH_WRITE, MAX_QUERY_PAGE_BYTES, MAX_TRANSACT};
use worldfleet_ports::{
    BatchWrite, Condition, Error, Item, Key, Query, QueryPage, Result, SortKeyRange, TTL_ATTRIBUTE,
    Table, TableSpec, TransactWrite, Update,
};

use crate::codec;
use crate::store::Shared;
use crate::writer::{Answer, Space, Staging, storage_error};

const TABLE_META_PREFIX: &[u8] = b"table/";
/// Longest table name (DynamoDB's limit).
const MAX_TABLE_NAME: usize = 255;
/// Longest partition key, in bytes (DynamoDB's limit).
const MAX_PK_BYTES: usize = 2048;
/// Longest sort key, in bytes (DynamoDB's limit).
const MAX_SK_BYTES: usize = 1024;

/// The table port over the embedded store. Cheap to share; all clones see the same data.
pub struct EmbeddedTable {
    shared: Arc<Shared>,
    /// When writes are answered; with [`Answer::Durable`] reads also wait until what they
    /// could have seen is durable.
    answer: Answer,
}

pub(crate) fn load_tables(shared: &Shared) -> Result<()> {
    let mut tables = shared
        .tables
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    shared.with_spaces(|spaces| {
        for entry in spaces.meta.prefix(TABLE_META_PREFIX) {
            let key = entry.key().map_err(storage_error)?;
            let name = String::from_utf8_lossy(&key[TABLE_META_PREFIX.len()..]).into_owned();
            tables.insert(name);
        }
        Ok(())
    })
}

fn condition_failed(table: &str, key: &Key) -> Error {
    Error::ConditionFailed {
        table: table.to_owned(),
        pk: key.pk.clone(),
        sk: key.sk.clone(),
    }
}

fn validate_key(key: &Key) -> Result<()> {
    if key.pk.is_empty() || key.sk.is_empty() {
        return Err(Error::InvalidRequest(
            "key attributes must not be empty".into(),
        ));
    }
    if key.pk.len() > MAX_PK_BYTES || key.sk.len() > MAX_SK_BYTES {
        return Err(Error::InvalidRequest(format!(
            "key {key} is longer than DynamoDB allows"
        )));
    }
    Ok(())
}

/// Reads the stored item under `item_key`, expired or not.
fn read_raw(items: &Keyspace, item_key: &[u8], key: &Key) -> Result<Option<Item>> {
    match items.get(item_key).map_err(storage_error)? {
        Some(value) => Ok(Some(Item {
            key: key.clone(),
            attributes: codec::decode_attributes(&value)?,
        })),
        None => Ok(None),
    }
}

/// Reads the item under `item_key` as the writer's current group leaves it, expired or not.
fn read_staged(staging: &Staging<'_>, item_key: &[u8], key: &Key) -> Result<Option<Item>> {
    match staging.get(Space::Items, item_key)? {
        Some(value) => Ok(Some(Item {
            key: key.clone(),
            attributes: codec::decode_attributes(&value)?,
        })),
        None => Ok(None),
    }
}

/// Stages the item (and its TTL index entry).
fn stage_put(staging: &mut Staging<'_>, item_key: Vec<u8>, item: &Item) {
    if let Some(expiry) = item.i64(TTL_ATTRIBUTE).filter(|expiry| *expiry >= 0) {
        let mut index_key = Vec::with_capacity(8 + item_key.len());
        index_key.extend_from_slice(&(expiry as u64).to_be_bytes());
        index_key.extend_from_slice(&item_key);
        staging.insert(Space::Ttl, index_key, &[][..]);
    }
    staging.insert(
        Space::Items,
        item_key,
        codec::encode_attributes(&item.attributes),
    );
}

fn passes(condition: Option<&Condition>, current: Option<&Item>) -> bool {
    condition.is_none_or(|condition| condition.evaluate(current))
}

impl EmbeddedTable {
    pub(crate) fn new(shared: Arc<Shared>, answer: Answer) -> Self {
        Self { shared, answer }
    }

    /// For an acknowledging handle, waits until everything the read just made could have
    /// seen is durable, so that the caller never shows what a crash could take back.
    async fn reads_durable(&self) -> Result<()> {
        if self.answer == Answer::Durable {
            self.shared.writer.wait_durable().await?;
        }
        Ok(())
    }

    /// Every live (unexpired) item of `table`, as a DynamoDB `Scan` would return them: grouped
    /// by partition (partitions in the store's own order, shorter keys first), each
    /// partition's items in sort-key order. Whole, not paged: for offline tools such as
    /// `worldfleet replay` and for tests, never for a stage.
    pub fn scan(&self, table: &str) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        self.scan_each(table, |item| {
            items.push(item);
            Ok(())
        })?;
        Ok(items)
    }

    /// [`Self::scan`], one item at a time: `visit` sees each live item in the same order and
    /// may stop the scan with an error. Nothing is collected, so a table of any size is read in
    /// constant memory (the chaos comparison digests millions of rows this way).
    pub fn scan_each(&self, table: &str, mut visit: impl FnMut(Item) -> Result<()>) -> Result<()> {
        self.shared.counters.table_request();
        self.check_table(table)?;
        let mut prefix = Vec::with_capacity(2 + table.len());
        prefix.extend_from_slice(&(table.len() as u16).to_be_bytes());
        prefix.extend_from_slice(table.as_bytes());
        let now_secs = self.now_secs();
        self.shared.with_spaces(|spaces| {
            for entry in spaces.items.prefix(&prefix) {
                let (key, value) = entry.into_inner().map_err(storage_error)?;
                let (_, pk, sk) = codec::split_item_key(&key)?;
                let item = Item {
                    key: Key::new(pk, sk),
                    attributes: codec::decode_attributes(&value)?,
                };
                if !item.is_expired(now_secs) {
                    visit(item)?;
                }
            }
            Ok(())
        })
    }

    fn check_table(&self, table: &str) -> Result<()> {
        let declared = self
            .shared
            .tables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(table);
        if declared {
            Ok(())
        } else {
            Err(Error::NotFound(format!("table {table}")))
        }
    }

    fn now_secs(&self) -> u64 {
        self.shared.clock.now_secs()
    }

    /// Reads a live (unexpired) item.
    fn read_live(&self, table: &str, key: &Key) -> Result<Option<Item>> {
        let item_key = codec::item_key(table, &key.pk, &key.sk);
        let item = self
            .shared
            .with_spaces(|spaces| read_raw(&spaces.items, &item_key, key))?;
        Ok(item.filter(|item| !item.is_expired(self.now_secs())))
    }

    fn count_write(&self, item: Option<&Item>, transactional: bool) {
        let bytes = item.map_or(1, Item::size_bytes);
        self.shared.counters.item_written(bytes, transactional);
    }
}

/// Lower and upper bound of a key range.
type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The key bounds of a query over one partition, `start_after` applied.
fn query_bounds(prefix: &[u8], query: &Query) -> Result<KeyBounds> {
    let with = |sk: &str| {
        let mut key = prefix.to_vec();
        key.extend_from_slice(sk.as_bytes());
        key
    };
    // Sort keys are UTF-8, which never contains 0xFF: `x ++ [0xFF]` is above every `x ++ sk`.
    let above = |sk: &str| {
        let mut key = with(sk);
        key.push(0xFF);
        key
    };
    let (mut lower, mut upper) = match &query.range {
        SortKeyRange::All => (Bound::Included(with("")), Bound::Excluded(above(""))),
        SortKeyRange::Prefix(start) => {
            (Bound::Included(with(start)), Bound::Excluded(above(start)))
        }
        SortKeyRange::Between(low, high) => {
            if low > high {
                return Err(Error::InvalidRequest(format!(
                    "BETWEEN {low:?} AND {high:?}: the lower bound is above the upper"
                )));
            }
            (Bound::Included(with(low)), Bound::Included(with(high)))
        }
        SortKeyRange::GreaterThan(bound) => {
            (Bound::Excluded(with(bound)), Bound::Excluded(above("")))
        }
        SortKeyRange::AtLeast(bound) => (Bound::Included(with(bound)), Bound::Excluded(above(""))),
        SortKeyRange::LessThan(bound) => (Bound::Included(with("")), Bound::Excluded(with(bound))),
        SortKeyRange::AtMost(bound) => (Bound::Included(with("")), Bound::Included(with(bound))),
    };
    if let Some(start) = &query.start_after {
        let start = with(start);
        if query.ascending {
            let tighter = match &lower {
                Bound::Included(low) => start >= *low,
                Bound::Excluded(low) => start > *low,
                Bound::Unbounded => true,
            };
            if tighter {
                lower = Bound::Excluded(start);
            }
        } else {
            let tighter = match &upper {
                Bound::Included(high) => start <= *high,
                Bound::Excluded(high) => start < *high,
                Bound::Unbounded => true,
            };
            if tighter {
                upper = Bound::Excluded(start);
            }
        }
    }
    Ok((lower, upper))
}

fn empty_range(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(low), Bound::Included(high)) => low > high,
        (Bound::Included(low) | Bound::Excluded(low), Bound::Excluded(high))
        | (Bound::Excluded(low), Bound::Included(high)) => low >= high,
        _ => false,
    }
}

#[async_trait]
impl Table for EmbeddedTable {
    async fn ensure_table(&self, spec: &TableSpec) -> Result<()> {
        let name = &spec.name;
        let valid = (3..=MAX_TABLE_NAME).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !valid {
            return Err(Error::InvalidRequest(format!(
                "table name {name:?} must be 3-255 characters of [a-zA-Z0-9_.-]"
            )));
        }
        if self.check_table(name).is_ok() {
            return Ok(());
        }
        let mut key = TABLE_META_PREFIX.to_vec();
        key.extend_from_slice(name.as_bytes());
        self.shared
            .writer
            .execute(Answer::Durable, move |staging| {
                staging.insert(Space::Meta, key, &[][..]);
                Ok(())
            })
            .await?;
        self.shared
            .tables
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone());
        Ok(())
    }

    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>> {
        self.shared.counters.table_request();
        self.check_table(table)?;
        validate_key(key)?;
        let item = self.read_live(table, key)?;
        self.shared
            .counters
            .item_read(item.as_ref().map_or(1, Item::size_bytes));
        self.reads_durable().await?;
        Ok(item)
    }

    async fn batch_get(&self, table: &str, keys: &[Key]) -> Result<Vec<Item>> {
        self.shared.counters.table_request();
        self.check_table(table)?;
        if keys.len() > MAX_BATCH_GET {
            return Err(Error::InvalidRequest(format!(
                "batch_get of {} keys; the limit is {MAX_BATCH_GET}",
                keys.len()
            )));
        }
        let mut seen = HashSet::with_capacity(keys.len());
        for key in keys {
            validate_key(key)?;
            if !seen.insert(key) {
                return Err(Error::InvalidRequest(format!(
                    "batch_get names {key} twice"
                )));
            }
        }
        let mut items = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(item) = self.read_live(table, key)? {
                self.shared.counters.item_read(item.size_bytes());
                items.push(item);
            }
        }
        self.reads_durable().await?;
        Ok(items)
    }

    async fn put(&self, table: &str, item: Item, condition: Option<Condition>) -> Result<()> {
        self.shared.counters.table_request();
        self.check_table(table)?;
        validate_key(&item.key)?;
        item.validate()?;
        self.count_write(Some(&item), false);
        let table = table.to_owned();
        self.shared
            .writer
            .execute(self.answer, move |staging| {
                let item_key = codec::item_key(&table, &item.key.pk, &item.key.sk);
                if condition.is_some() {
                    let current = read_staged(staging, &item_key, &item.key)?;
                    if !passes(condition.as_ref(), current.as_ref()) {
                        return Err(condition_failed(&table, &item.key));
                    }
                }
                stage_put(staging, item_key, &item);
                Ok(())
            })
            .await
    }

    async fn update(
        &self,
        table: &str,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item> {
        self.shared.counters.table_request();
        self.check_table(table)?;
        validate_key(key)?;
        update.validate()?;
        let table = table.to_owned();
        let key = key.clone();
        let item = self
            .shared
            .writer
            .execute(self.answer, move |staging| {
                let item_key = codec::item_key(&table, &key.pk, &key.sk);
                let current = read_staged(staging, &item_key, &key)?;
                if !passes(condition.as_ref(), current.as_ref()) {
                    return Err(condition_failed(&table, &key));
                }
                let next = update.apply(&key, current)?;
                stage_put(staging, item_key, &next);
                Ok(next)
            })
            .await?;
        self.count_write(Some(&item), false);
        Ok(item)
    }

    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>> {
        self.shared.counters.table_request();
        self.check_table(table)?;
        validate_key(key)?;
        let table = table.to_owned();
        let key = key.clone();
        let removed = self
            .shared
            .writer
            .execute(self.answer, move |staging| {
                let item_key = codec::item_key(&table, &key.pk, &key.sk);
                let current = read_staged(staging, &item_key, &key)?;
                if !passes(condition.as_ref(), current.as_ref()) {
                    return Err(condition_failed(&table, &key));
                }
                if current.is_some() {
                    staging.remove(Space::Items, item_key);
                }
                Ok(current)
            })
            .await?;
        self.count_write(removed.as_ref(), false);
        Ok(removed)
    }

    async fn query(&self, table: &str, query: &Query) -> Result<QueryPage> {
        self.shared.counters.table_request();
        self.check_table(table)?;
        if query.pk.is_empty() || query.pk.len() > MAX_PK_BYTES {
            return Err(Error::InvalidRequest(
                "query needs a valid partition key".into(),
            ));
        }
        if query.limit == Some(0) {
            return Err(Error::InvalidRequest(
                "query limit must be at least 1".into(),
            ));
        }
        let prefix = codec::partition_prefix(table, &query.pk);
        let (lower, upper) = query_bounds(&prefix, query)?;
        let mut page = QueryPage::default();
        if empty_range(&lower, &upper) {
            self.shared.counters.query_read(0, 0);
            return Ok(page);
        }
        let limit = query.limit.unwrap_or(usize::MAX);
        let now_secs = self.now_secs();
        let mut bytes = 0;
        let cut = self.shared.with_spaces(|spaces| {
            let range = spaces.items.range::<Vec<u8>, _>((lower, upper));
            let mut entries: Box<dyn Iterator<Item = fjall::Guard>> = if query.ascending {
                Box::new(range)
            } else {
                Box::new(range.rev())
            };
            for entry in entries.by_ref() {
                let (key, value) = entry.into_inner().map_err(storage_error)?;
                let sk = std::str::from_utf8(&key[prefix.len()..])
                    .map_err(|_| Error::Permanent("corrupt sort key".into()))?;
                let item = Item {
                    key: Key::new(query.pk.clone(), sk),
                    attributes: codec::decode_attributes(&value)?,
                };
                if item.is_expired(now_secs) {
                    continue;
                }
                let size = item.size_bytes();
                if !page.items.is_empty() && bytes + size > MAX_QUERY_PAGE_BYTES {
                    return Ok(true);
                }
                bytes += size;
                page.items.push(item);
                if page.items.len() >= limit {
                    return Ok(entries.next().is_some());
                }
            }
            Ok(false)
        })?;
        if cut {
            page.last_evaluated_sk = page.items.last().map(|item| item.key.sk.clone());
        }
        self.shared.counters.query_read(bytes, page.items.len());
        self.reads_durable().await?;
        Ok(page)
    }

    async fn batch_write(&self, table: &str, writes: Vec<BatchWrite>) -> Result<()> {
        self.shared.counters.table_request();
        self.check_table(table)?;
        if writes.len() > MAX_BATCH_WRITE {
            return Err(Error::InvalidRequest(format!(
                "batch_write of {} entries; the limit is {MAX_BATCH_WRITE}",
                writes.len()
            )));
        }
        let mut seen = HashSet::with_capacity(writes.len());
        for write in &writes {
            let key = match write {
                BatchWrite::Put(item) => {
                    item.validate()?;
                    &item.key
                }
                BatchWrite::Delete(key) => key,
            };
            validate_key(key)?;
            if !seen.insert(key.clone()) {
                return Err(Error::InvalidRequest(format!(
                    "batch_write names {key} twice"
                )));
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        for write in &writes {
            match write {
                BatchWrite::Put(item) => self.count_write(Some(item), false),
                BatchWrite::Delete(_) => self.count_write(None, false),
            }
        }
        let table = table.to_owned();
        self.shared
            .writer
            .execute(self.answer, move |staging| {
                for write in &writes {
                    match write {
                        BatchWrite::Put(item) => {
                            let item_key = codec::item_key(&table, &item.key.pk, &item.key.sk);
                            stage_put(staging, item_key, item);
                        }
                        BatchWrite::Delete(key) => {
                            staging.remove(Space::Items, codec::item_key(&table, &key.pk, &key.sk));
                        }
                    }
                }
                Ok(())
            })
            .await
    }

    async fn transact(&self, operations: Vec<TransactWrite>) -> Result<()> {
        self.shared.counters.table_request();
        if operations.is_empty() || operations.len() > MAX_TRANSACT {
            return Err(Error::InvalidRequest(format!(
                "transact of {} operations; 1 to {MAX_TRANSACT} allowed",
                operations.len()
            )));
        }
        let mut seen = HashSet::with_capacity(operations.len());
        for operation in &operations {
            let (table, key) = operation.target();
            self.check_table(table)?;
            validate_key(key)?;
            if !seen.insert((table, key)) {
                return Err(Error::InvalidRequest(format!(
                    "transaction touches {table} item {key} more than once"
                )));
            }
            match operation {
                TransactWrite::Put { item, .. } => item.validate()?,
                TransactWrite::Update { update, .. } => update.validate()?,
                TransactWrite::Delete { .. } | TransactWrite::ConditionCheck { .. } => {}
            }
        }
        drop(seen);
        let written = self
            .shared
            .writer
            .execute(self.answer, move |staging| {
                let mut reasons = Vec::with_capacity(operations.len());
                let mut currents = Vec::with_capacity(operations.len());
                for operation in &operations {
                    let (table, key) = operation.target();
                    let item_key = codec::item_key(table, &key.pk, &key.sk);
                    let current = read_staged(staging, &item_key, key)?;
                    let condition = match operation {
                        TransactWrite::Put { condition, .. }
                        | TransactWrite::Update { condition, .. }
                        | TransactWrite::Delete { condition, .. } => condition.as_ref(),
                        TransactWrite::ConditionCheck { condition, .. } => Some(condition),
                    };
                    reasons.push(
                        (!passes(condition, current.as_ref()))
                            .then(|| "ConditionalCheckFailed".to_owned()),
                    );
                    currents.push((item_key, current));
                }
                if reasons.iter().any(Option::is_some) {
                    return Err(Error::TransactionCanceled { reasons });
                }
                let mut written = Vec::with_capacity(operations.len());
                for (operation, (item_key, current)) in operations.into_iter().zip(currents) {
                    match operation {
                        TransactWrite::Put { item, .. } => {
                            stage_put(staging, item_key, &item);
                            written.push(Some(item.size_bytes()));
                        }
                        TransactWrite::Update { key, update, .. } => {
                            let next = update.apply(&key, current)?;
                            stage_put(staging, item_key, &next);
                            written.push(Some(next.size_bytes()));
                        }
                        TransactWrite::Delete { .. } => {
                            staging.remove(Space::Items, item_key);
                            written.push(Some(current.as_ref().map_or(1, Item::size_bytes)));
                        }
                        TransactWrite::ConditionCheck { .. } => written.push(None),
                    }
                }
                Ok(written)
            })
            .await?;
        for bytes in written {
            match bytes {
                Some(bytes) => self.shared.counters.item_written(bytes, true),
                // A condition check costs reads, as DynamoDB bills it.
                None => self.shared.counters.item_read(1),
            }
        }
        Ok(())
    }
}
