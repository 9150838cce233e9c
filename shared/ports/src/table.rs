//! The table port: DynamoDB semantics over items keyed by partition and sort key.
//!
//! Every table has a string partition key `pk` and a string sort key `sk`; other attributes
//! are typed [`Value`]s. The numeric type is a signed 64-bit integer (money and fractions are
//! stored fixed-point). An item whose [`TTL_ATTRIBUTE`] (Unix seconds) is in the past is
//! invisible to `get`, `batch_get` and `query` in every adapter — expiry is decided in code, and
//! the store's own TTL sweep is only the janitor — but, as in DynamoDB, conditions still see it
//! until it is swept, so code that relies on expiry states it in its condition.
//!
//! [`Condition::evaluate`] and [`Update::apply`] are the reference semantics: the embedded
//! adapter runs them directly, the DynamoDB adapter translates them into expressions, and the
//! contract suite checks both agree.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The attribute holding an item's expiry, Unix seconds.
pub const TTL_ATTRIBUTE: &str = "ttl";
/// Largest item, in bytes (names and values, keys included).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Most writes in one `batch_write`.
pub const MAX_BATCH_WRITE: usize = 25;
/// Most keys in one `batch_get`.
pub const MAX_BATCH_GET: usize = 100;
/// Most operations in one `transact`.
pub const MAX_TRANSACT: usize = 100;
/// Largest query page, in bytes.
pub const MAX_QUERY_PAGE_BYTES: usize = 1024 * 1024;

/// A typed attribute value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    S(String),
    N(i64),
    B(Vec<u8>),
    Bool(bool),
    Null,
    L(Vec<Value>),
    M(BTreeMap<String, Value>),
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::S(text) => Some(text),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::N(number) => Some(*number),
            _ => None,
        }
    }

    /// The bytes, if this is a binary value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::B(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// Size as DynamoDB accounts it, in bytes.
    pub fn size_bytes(&self) -> usize {
        match self {
            Self::S(text) => text.len(),
            Self::N(number) => number.unsigned_abs().to_string().len().div_ceil(2) + 1,
            Self::B(bytes) => bytes.len(),
            Self::Bool(_) | Self::Null => 1,
            Self::L(values) => {
                3 + values
                    .iter()
                    .map(|value| 1 + value.size_bytes())
                    .sum::<usize>()
            }
            Self::M(map) => {
                3 + map
                    .iter()
                    .map(|(name, value)| 1 + name.len() + value.size_bytes())
                    .sum::<usize>()
            }
        }
    }

    fn compare(&self, other: &Value) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Self::S(left), Self::S(right)) => Some(left.cmp(right)),
            (Self::N(left), Self::N(right)) => Some(left.cmp(right)),
            (Self::B(left), Self::B(right)) => Some(left.cmp(right)),
            (Self::Bool(left), Self::Bool(right)) if left == right => {
                Some(std::cmp::Ordering::Equal)
            }
            (Self::Null, Self::Null) => Some(std::cmp::Ordering::Equal),
            (left, right) if left == right => Some(std::cmp::Ordering::Equal),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Self::S(text.to_owned())
    }
}
impl From<String> for Value {
    fn from(text: String) -> Self {
        Self::S(text)
    }
}
impl From<i64> for Value {
    fn from(number: i64) -> Self {
        Self::N(number)
    }
}
impl From<bool> for Value {
    fn from(flag: bool) -> Self {
        Self::Bool(flag)
    }
}
impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Self {
        Self::B(bytes)
    }
}

/// Non-key attributes of an item.
pub type Attributes = BTreeMap<String, Value>;

/// An item's primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    /// A key from partition and sort key.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.pk, self.sk)
    }
}

/// A whole item: key and attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub key: Key,
    pub attributes: Attributes,
}

impl Item {
    /// An item with no attributes yet.
    pub fn new(key: Key) -> Self {
        Self {
            key,
            attributes: Attributes::new(),
        }
    }

    /// Adds an attribute (builder style).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.to_owned(), value.into());
        self
    }

    /// An attribute by name (`pk` and `sk` included).
    pub fn attribute(&self, name: &str) -> Option<Value> {
        match name {
            "pk" => Some(Value::S(self.key.pk.clone())),
            "sk" => Some(Value::S(self.key.sk.clone())),
            _ => self.attributes.get(name).cloned(),
        }
    }

    /// A string attribute.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).and_then(Value::as_str)
    }

    /// A numeric attribute.
    pub fn i64(&self, name: &str) -> Option<i64> {
        self.attributes.get(name).and_then(Value::as_i64)
    }

    /// A binary attribute.
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.attributes.get(name).and_then(Value::as_bytes)
    }

    /// Size as DynamoDB accounts it, in bytes.
    pub fn size_bytes(&self) -> usize {
        2 + self.key.pk.len()
            + 2
            + self.key.sk.len()
            + self
                .attributes
                .iter()
                .map(|(name, value)| name.len() + value.size_bytes())
                .sum::<usize>()
    }

    /// Refuses items over [`MAX_ITEM_BYTES`] or with reserved attribute names.
    pub fn validate(&self) -> Result<()> {
        if self.key.pk.is_empty() || self.key.sk.is_empty() {
            return Err(Error::InvalidRequest(
                "key attributes must not be empty".to_owned(),
            ));
        }
        if self.attributes.contains_key("pk") || self.attributes.contains_key("sk") {
            return Err(Error::InvalidRequest(
                "`pk` and `sk` are key attributes, not item attributes".to_owned(),
            ));
        }
        let size = self.size_bytes();
        if size > MAX_ITEM_BYTES {
            return Err(Error::ItemTooLarge {
                size,
                limit: MAX_ITEM_BYTES,
            });
        }
        Ok(())
    }

    /// True when the item's TTL is set and at or before `now_secs`.
    pub fn is_expired(&self, now_secs: u64) -> bool {
        self.i64(TTL_ATTRIBUTE)
            .is_some_and(|expiry| expiry >= 0 && (expiry as u64) <= now_secs)
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A condition on the item a write targets (a DynamoDB `ConditionExpression`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    /// The item exists.
    ItemExists,
    /// The item does not exist.
    ItemNotExists,
    /// The attribute is present.
    Exists(String),
    /// The attribute is absent.
    NotExists(String),
    /// `attribute OP value`; false when the attribute is absent or of another type
    /// (except `Ne`, which is true then, as in DynamoDB).
    Compare {
        attribute: String,
        op: Comparison,
        value: Value,
    },
    /// Every condition holds.
    And(Vec<Condition>),
    /// At least one condition holds.
    Or(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
}

impl Condition {
    /// `attribute = value`.
    pub fn eq(attribute: &str, value: impl Into<Value>) -> Self {
        Self::Compare {
            attribute: attribute.to_owned(),
            op: Comparison::Eq,
            value: value.into(),
        }
    }

    /// The item is absent, or expired at `now_secs` ([`Item::is_expired`]) and not yet swept.
    /// Reads skip an expired item while the store still holds it (DynamoDB's sweep can lag by
    /// days), so a write that follows a read which found nothing must use this, not
    /// [`Condition::ItemNotExists`], which the stored item would fail.
    pub fn absent_or_expired(now_secs: u64) -> Self {
        Self::Or(vec![
            Self::ItemNotExists,
            Self::compare(TTL_ATTRIBUTE, Comparison::Le, now_secs as i64),
        ])
    }

    /// `attribute OP value`.
    pub fn compare(attribute: &str, op: Comparison, value: impl Into<Value>) -> Self {
        Self::Compare {
            attribute: attribute.to_owned(),
            op,
            value: value.into(),
        }
    }

    /// Evaluates the condition against the current item (`None`: no item).
    pub fn evaluate(&self, item: Option<&Item>) -> bool {
        match self {
            Self::ItemExists => item.is_some(),
            Self::ItemNotExists => item.is_none(),
            Self::Exists(name) => item.and_then(|item| item.attribute(name)).is_some(),
            Self::NotExists(name) => item.and_then(|item| item.attribute(name)).is_none(),
            Self::Compare {
                attribute,
                op,
                value,
            } => {
                let current = item.and_then(|item| item.attribute(attribute));
                let ordering = current.as_ref().and_then(|current| current.compare(value));
                match (op, ordering) {
                    (Comparison::Ne, None) => true,
                    (_, None) => false,
                    (Comparison::Eq, Some(ordering)) => ordering.is_eq(),
                    (Comparison::Ne, Some(ordering)) => !ordering.is_eq(),
                    (Comparison::Lt, Some(ordering)) => ordering.is_lt(),
                    (Comparison::Le, Some(ordering)) => ordering.is_le(),
                    (Comparison::Gt, Some(ordering)) => ordering.is_gt(),
                    (Comparison::Ge, Some(ordering)) => ordering.is_ge(),
                }
            }
            Self::And(conditions) => conditions.iter().all(|condition| condition.evaluate(item)),
            Self::Or(conditions) => conditions.iter().any(|condition| condition.evaluate(item)),
            Self::Not(condition) => !condition.evaluate(item),
        }
    }
}

/// An update to one item (a DynamoDB `UpdateExpression`); creates the item when absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// `SET name = value`.
    pub set: Vec<(String, Value)>,
    /// `SET name = if_not_exists(name, value)`.
    pub set_if_absent: Vec<(String, Value)>,
    /// `ADD name delta` on a number (an absent attribute counts as 0): atomic counters.
    pub add: Vec<(String, i64)>,
    /// `REMOVE name`.
    pub remove: Vec<String>,
    /// The caller accepts this update being applied twice when an attempt fails ambiguously
    /// (timed out, or a 5xx, after the store may have applied it), so an adapter that retries
    /// may repeat it: a counter whose occasional overcount is harmless. Without it, an update
    /// with counters is not repeated after such a failure (the caller gets the error). Plain
    /// `SET`s need no mark: an adapter repeats them when their condition allows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeatable: bool,
}

impl Update {
    /// An empty update.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `SET name = value`.
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set.push((name.to_owned(), value.into()));
        self
    }

    /// Adds `SET name = if_not_exists(name, value)`.
    pub fn set_if_absent(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set_if_absent.push((name.to_owned(), value.into()));
        self
    }

    /// Adds `ADD name delta`.
    pub fn add(mut self, name: &str, delta: i64) -> Self {
        self.add.push((name.to_owned(), delta));
        self
    }

    /// Adds `REMOVE name`.
    pub fn remove(mut self, name: &str) -> Self {
        self.remove.push(name.to_owned());
        self
    }

    /// Marks the update [`Update::repeatable`]: applying it twice after an ambiguous failure
    /// is acceptable.
    pub fn repeatable(mut self) -> Self {
        self.repeatable = true;
        self
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.set
            .iter()
            .map(|(name, _)| name.as_str())
            .chain(self.set_if_absent.iter().map(|(name, _)| name.as_str()))
            .chain(self.add.iter().map(|(name, _)| name.as_str()))
            .chain(self.remove.iter().map(String::as_str))
    }

    /// Refuses empty updates, key attributes and the same attribute named twice.
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        let mut any = false;
        for name in self.names() {
            any = true;
            if name == "pk" || name == "sk" {
                return Err(Error::InvalidRequest(
                    "an update cannot change key attributes".into(),
                ));
            }
            if name.is_empty() || !seen.insert(name) {
                return Err(Error::InvalidRequest(format!(
                    "attribute {name:?} appears twice or is empty in one update"
                )));
            }
        }
        if !any {
            return Err(Error::InvalidRequest(
                "an update must change something".into(),
            ));
        }
        Ok(())
    }

    /// Applies the update to `current` (or to a new item under `key`), returning the new item.
    pub fn apply(&self, key: &Key, current: Option<Item>) -> Result<Item> {
        let mut item = current.unwrap_or_else(|| Item::new(key.clone()));
        for (name, value) in &self.set {
            item.attributes.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.set_if_absent {
            item.attributes
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
        for (name, delta) in &self.add {
            let current = match item.attributes.get(name) {
                None => 0,
                Some(Value::N(number)) => *number,
                Some(_) => {
                    return Err(Error::InvalidRequest(format!(
                        "ADD on {name:?}, which is not a number"
                    )));
                }
            };
            let next = current
                .checked_add(*delta)
                .ok_or_else(|| Error::InvalidRequest(format!("ADD overflows {name:?}")))?;
            item.attributes.insert(name.clone(), Value::N(next));
        }
        for name in &self.remove {
            item.attributes.remove(name);
        }
        item.validate()?;
        Ok(item)
    }
}

/// Which sort keys a query covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SortKeyRange {
    All,
    /// `begins_with(sk, prefix)`.
    Prefix(String),
    /// `sk BETWEEN low AND high`, both inclusive.
    Between(String, String),
    GreaterThan(String),
    AtLeast(String),
    LessThan(String),
    AtMost(String),
}

impl SortKeyRange {
    /// The sort keys that start with `prefix`, from `from` (inclusive) to the last of them: a
    /// read that resumes inside a prefix without walking what lies before `from`. The upper
    /// bound is `prefix` followed by DEL (0x7f), above every ASCII key with that prefix — the
    /// sort keys this crate's users write under a prefix are ASCII.
    pub fn prefix_from(prefix: &str, from: impl Into<String>) -> Self {
        let from = from.into();
        debug_assert!(from.starts_with(prefix), "{from:?} is outside {prefix:?}");
        Self::Between(from, format!("{prefix}\u{7f}"))
    }

    /// True when `sk` is in the range.
    pub fn contains(&self, sk: &str) -> bool {
        match self {
            Self::All => true,
            Self::Prefix(prefix) => sk.starts_with(prefix.as_str()),
            Self::Between(low, high) => sk >= low.as_str() && sk <= high.as_str(),
            Self::GreaterThan(bound) => sk > bound.as_str(),
            Self::AtLeast(bound) => sk >= bound.as_str(),
            Self::LessThan(bound) => sk < bound.as_str(),
            Self::AtMost(bound) => sk <= bound.as_str(),
        }
    }
}

/// A query over one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    pub pk: String,
    pub range: SortKeyRange,
    /// Most items in the page.
    pub limit: Option<usize>,
    /// Ascending sort-key order when true.
    pub ascending: bool,
    /// Continue after this sort key (the previous page's `last_evaluated_sk`).
    pub start_after: Option<String>,
}

impl Query {
    /// Every item of a partition, ascending.
    pub fn partition(pk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            range: SortKeyRange::All,
            limit: None,
            ascending: true,
            start_after: None,
        }
    }

    /// Restricts the sort keys.
    pub fn range(mut self, range: SortKeyRange) -> Self {
        self.range = range;
        self
    }

    /// Caps the page size.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Descending order.
    pub fn descending(mut self) -> Self {
        self.ascending = false;
        self
    }

    /// Continues after `sk`.
    pub fn start_after(mut self, sk: Option<String>) -> Self {
        self.start_after = sk;
        self
    }
}

/// One page of query results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryPage {
    pub items: Vec<Item>,
    /// Present when more items may follow: pass it as the next query's `start_after`.
    pub last_evaluated_sk: Option<String>,
}

/// One entry of a `batch_write`: unconditional put or delete.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchWrite {
    Put(Item),
    Delete(Key),
}

/// One operation of an all-or-nothing transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactWrite {
    Put {
        table: String,
        item: Item,
        condition: Option<Condition>,
    },
    Update {
        table: String,
        key: Key,
        update: Update,
        condition: Option<Condition>,
    },
    Delete {
        table: String,
        key: Key,
        condition: Option<Condition>,
    },
    ConditionCheck {
        table: String,
        key: Key,
        condition: Condition,
    },
}

impl TransactWrite {
    /// The table and key the operation targets.
    pub fn target(&self) -> (&str, &Key) {
        match self {
            Self::Put { table, item, .. } => (table, &item.key),
            Self::Update { table, key, .. }
            | Self::Delete { table, key, .. }
            | Self::ConditionCheck { table, key, .. } => (table, key),
        }
    }
}

/// How a table is declared: every table has keys `pk` (S) and `sk` (S) and TTL on `ttl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    pub name: String,
}

/// A key-value table with DynamoDB semantics.
#[async_trait]
pub trait Table: Send + Sync {
    /// Creates the table if it does not exist.
    async fn ensure_table(&self, spec: &TableSpec) -> Result<()>;

    /// Reads one item (strongly consistent); expired items read as absent.
    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>>;

    /// Reads up to 100 items by key, in no particular order; missing ones are left out.
    async fn batch_get(&self, table: &str, keys: &[Key]) -> Result<Vec<Item>>;

    /// Writes a whole item if `condition` holds ([`Error::ConditionFailed`] otherwise).
    async fn put(&self, table: &str, item: Item, condition: Option<Condition>) -> Result<()>;

    /// Updates (or creates) an item if `condition` holds; returns the item as it now is.
    async fn update(
        &self,
        table: &str,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item>;

    /// Deletes an item if `condition` holds; returns the item it removed, if any.
    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>>;

    /// One page of a partition, by sort-key range.
    async fn query(&self, table: &str, query: &Query) -> Result<QueryPage>;

    /// Up to 25 unconditional puts and deletes; not atomic, but all applied when it returns Ok.
    async fn batch_write(&self, table: &str, writes: Vec<BatchWrite>) -> Result<()>;

    /// Up to 100 operations over any tables, all applied or none
    /// ([`Error::TransactionCanceled`] with a reason per operation).
    async fn transact(&self, operations: Vec<TransactWrite>) -> Result<()>;
}

/// Every item of partition `pk` of `table_name` in `range`, following the pages of [`Table::query`].
pub async fn query_all(
    table: &dyn Table,
    table_name: &str,
    pk: &str,
    range: SortKeyRange,
) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut start_after = None;
    loop {
        let query = Query::partition(pk)
            .range(range.clone())
            .start_after(start_after);
        let page = table.query(table_name, &query).await?;
        items.extend(page.items);
        match page.last_evaluated_sk {
            Some(last) => start_after = Some(last),
            None => return Ok(items),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Item {
        Item::new(Key::new("p", "s"))
            .with("n", 5)
            .with("s", "abc")
            .with("flag", true)
    }

    #[test]
    fn absent_or_expired_holds_for_an_item_a_read_would_skip() {
        let expiring = item().with(TTL_ATTRIBUTE, 100);
        let condition = Condition::absent_or_expired(100);
        assert!(condition.evaluate(None));
        assert!(condition.evaluate(Some(&expiring)));
        assert!(!Condition::absent_or_expired(99).evaluate(Some(&expiring)));
        assert!(!condition.evaluate(Some(&item())));
    }

    #[test]
    fn conditions_follow_dynamodb() {
        let item = item();
        assert!(Condition::ItemExists.evaluate(Some(&item)));
        assert!(Condition::ItemNotExists.evaluate(None));
        assert!(Condition::compare("n", Comparison::Lt, 6).evaluate(Some(&item)));
        assert!(!Condition::compare("n", Comparison::Lt, "6").evaluate(Some(&item)));
        assert!(Condition::compare("missing", Comparison::Ne, 1).evaluate(Some(&item)));
        assert!(!Condition::eq("missing", 1).evaluate(Some(&item)));
        assert!(Condition::eq("pk", "p").evaluate(Some(&item)));
        let either = Condition::Or(vec![
            Condition::NotExists("n".into()),
            Condition::eq("n", 5),
        ]);
        assert!(either.evaluate(Some(&item)));
        assert!(!Condition::Not(Box::new(either)).evaluate(Some(&item)));
    }

    #[test]
    fn updates_create_count_and_refuse_bad_shapes() {
        let key = Key::new("p", "s");
        let created = Update::new()
            .add("count", 3)
            .set("name", "x")
            .apply(&key, None)
            .unwrap();
        assert_eq!(created.i64("count"), Some(3));
        let updated = Update::new()
            .add("count", -1)
            .set_if_absent("name", "y")
            .remove("missing")
            .apply(&key, Some(created))
            .unwrap();
        assert_eq!(updated.i64("count"), Some(2));
        assert_eq!(updated.str("name"), Some("x"));
        assert!(
            Update::new()
                .add("name", 1)
                .apply(&key, Some(updated))
                .is_err()
        );
        assert!(Update::new().set("a", 1).add("a", 1).validate().is_err());
        assert!(Update::new().validate().is_err());
        assert!(Update::new().set("pk", "x").validate().is_err());
    }

    #[test]
    fn item_size_limit_and_expiry() {
        let big = Item::new(Key::new("p", "s")).with("blob", vec![0_u8; MAX_ITEM_BYTES]);
        assert!(matches!(big.validate(), Err(Error::ItemTooLarge { .. })));
        let expiring = item().with(TTL_ATTRIBUTE, 100);
        assert!(expiring.is_expired(100));
        assert!(!expiring.is_expired(99));
        assert!(!item().is_expired(u64::MAX));
    }

    #[test]
    fn sort_key_ranges() {
        assert!(SortKeyRange::Prefix("feed#".into()).contains("feed#1"));
        assert!(SortKeyRange::Between("a".into(), "c".into()).contains("c"));
        assert!(!SortKeyRange::GreaterThan("c".into()).contains("c"));
        let resumed = SortKeyRange::prefix_from("obs#", "obs#0005");
        assert!(resumed.contains("obs#0005") && resumed.contains("obs#9999~z"));
        assert!(!resumed.contains("obs#0004"), "before the start");
        assert!(
            !resumed.contains("obt#0000") && !resumed.contains("page#1"),
            "another prefix"
        );
    }
}
