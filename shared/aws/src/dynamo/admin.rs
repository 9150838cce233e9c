//! Table administration: creating a table with the port's key schema, waiting until it is
//! active, turning on TTL, listing and deleting the tables under the stack prefix.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use tracing::{debug, warn};
use worldfleet_ports::{Error, Result, TTL_ATTRIBUTE, TableSpec};

use super::DynamoTable;
use super::value::{AttributeMap, item_from_map};
use crate::classify::for_resource;
use crate::retry::Repeat;

/// How long `ensure_table` waits for a new table to become active.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(120);

impl DynamoTable {
    /// The logical names of every table under this adapter's stack prefix.
    pub async fn list_tables(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let from = start.clone();
            let output = self
                .request("ListTables", Repeat::Safe, || {
                    self.inner
                        .client
                        .list_tables()
                        .set_exclusive_start_table_name(from.clone())
                        .send()
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

    /// How many items a table holds and their bytes as DynamoDB sizes them (the basis of its
    /// storage bill), by scanning it: for benchmarks and reports, not the hot path.
    pub async fn stored_bytes(&self, table: &str) -> Result<(u64, u64)> {
        let physical = self.physical(table);
        let (mut items, mut bytes) = (0u64, 0u64);
        let mut start: Option<AttributeMap> = None;
        loop {
            let from = start.clone();
            let output = self
                .request("Scan", Repeat::Safe, || {
                    self.inner
                        .client
                        .scan()
                        .table_name(physical.clone())
                        .set_exclusive_start_key(from.clone())
                        .send()
                })
                .await
                .map_err(|error| for_resource(error, "table", table))?;
            for map in output.items() {
                items += 1;
                bytes += item_from_map(map)?.size_bytes() as u64;
            }
            match output.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        Ok((items, bytes))
    }

    /// Deletes a table (tests and teardown); a missing table is not an error.
    pub async fn delete_table(&self, table: &str) -> Result<()> {
        let physical = self.physical(table);
        let result = self
            .request("DeleteTable", Repeat::Safe, || {
                self.inner
                    .client
                    .delete_table()
                    .table_name(physical.clone())
                    .send()
            })
            .await;
        match result {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Creates the table (keys `pk` and `sk`, on demand) unless it exists, waits until it is
    /// active and turns on TTL.
    pub(super) async fn create_table(&self, spec: &TableSpec) -> Result<()> {
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
                self.inner
                    .client
                    .create_table()
                    .table_name(physical.clone())
                    .set_attribute_definitions(Some(definitions.clone()))
                    .set_key_schema(Some(schema.clone()))
                    .billing_mode(BillingMode::PayPerRequest)
                    .send()
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

    /// Polls until the table is ACTIVE (immediately on DynamoDB Local).
    async fn wait_until_active(&self, table: &str, physical: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_WAIT;
        loop {
            let output = self
                .request("DescribeTable", Repeat::Safe, || {
                    self.inner
                        .client
                        .describe_table()
                        .table_name(physical)
                        .send()
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
                self.inner
                    .client
                    .describe_time_to_live()
                    .table_name(physical)
                    .send()
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
                self.inner
                    .client
                    .update_time_to_live()
                    .table_name(physical)
                    .time_to_live_specification(specification.clone())
                    .send()
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
}
