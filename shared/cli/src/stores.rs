//! Opening the store an offline subcommand (`feed`, `rejections`, `dlq`) works on: an embedded
//! store directory written by `worldfleet run --data-dir` or `serve --data-dir`, or DynamoDB
//! and SQS with `--aws` (settings and endpoints from the environment).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use worldfleet_embedded::{EmbeddedStore, StoreOptions};
use worldfleet_ports::{Clock, Queue, Table};

/// The tables and queues of an opened store; [`OpenTables::close`] closes an embedded store
/// cleanly.
pub struct OpenTables {
    pub table: Arc<dyn Table>,
    pub queue: Arc<dyn Queue>,
    store: Option<EmbeddedStore>,
}

impl OpenTables {
    /// DynamoDB with `aws`, else the embedded store in `data_dir` (which must exist).
    pub async fn open(
        data_dir: Option<&Path>,
        aws: bool,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        if aws {
            let context = worldfleet_lambda::aws_context().await?;
            return Ok(Self {
                table: Arc::clone(&context.table),
                queue: Arc::clone(&context.queue),
                store: None,
            });
        }
        let data_dir = data_dir.context("--data-dir (or --aws)")?;
        if !data_dir.exists() {
            anyhow::bail!(
                "no store at {} (run `worldfleet run --data-dir {}` first)",
                data_dir.display(),
                data_dir.display()
            );
        }
        let options = StoreOptions {
            janitor_interval: None,
            receive_recheck: Duration::from_millis(100),
            ..StoreOptions::default()
        };
        let store = EmbeddedStore::open(data_dir, clock, options)
            .with_context(|| format!("open the store in {}", data_dir.display()))?;
        Ok(Self {
            table: store.table(),
            queue: store.queue(),
            store: Some(store),
        })
    }

    /// Releases the tables and closes an embedded store.
    pub fn close(self) {
        drop(self.table);
        drop(self.queue);
        if let Some(store) = self.store {
            store.close();
        }
    }
}
