//! TransactWriteItems: one all-or-nothing request across tables, idempotent by its client
//! request token, retried whole when every cancellation reason is transient.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem};
use worldfleet_ports::table::MAX_TRANSACT;
use worldfleet_ports::{Error, Key, Result, TransactWrite, Update};

use super::value::{item_to_map, key_to_map};
use super::{DynamoTable, WithExpressions, check_key, expressions, key_bytes};
use crate::classify::classify_sdk;
use crate::retry::Repeat;

impl DynamoTable {
    /// Applies up to [`MAX_TRANSACT`] writes and condition checks, each on a distinct item,
    /// all or none.
    pub(super) async fn transact_writes(&self, operations: Vec<TransactWrite>) -> Result<()> {
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
                        self.inner.retries.cancelled_transaction();
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
                self.inner.retries.retrying(&error);
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            self.inner.retries.handed_back(&error);
            return Err(error);
        }
        for operation in &operations {
            let (table, _) = operation.target();
            match operation {
                TransactWrite::Put { item, .. } => self.written(table, item.size_bytes(), true),
                TransactWrite::Update { key, update, .. } => {
                    self.written(table, update_bytes(key, update), true)
                }
                TransactWrite::Delete { key, .. } => self.written(table, key_bytes(key), true),
                TransactWrite::ConditionCheck { key, .. } => self.read(table, key_bytes(key)),
            }
        }
        Ok(())
    }

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
                    .with_expressions(expressions)
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
                    .set_update_expression(expressions.update.clone())
                    .with_expressions(expressions)
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
                    .with_expressions(expressions)
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
                    .with_expressions(expressions)
                    .build()
                    .map_err(invalid)?;
                TransactWriteItem::builder().condition_check(check).build()
            }
        };
        Ok(item)
    }
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
