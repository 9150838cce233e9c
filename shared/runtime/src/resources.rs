//! The queues and tables every deployment declares: the narrative path's and the world
//! simulation's (`WORLD_QUEUES`, `WORLD_TABLES`).
//!
//! The embedded runtime declares them through the ports; the AWS path declares the same set in
//! `infra/template.yaml`, and its local deploy reads them from there.

use std::time::Duration;

use worldfleet_domain::names::{
    ALL_QUEUES, ALL_TABLES, WORLD_QUEUES, WORLD_TABLES, dead_letter_queue,
};
use worldfleet_ports::{Queue, QueueSpec, Result, Table, TableSpec};

/// How queues are declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Visibility timeout of every work queue (≥ 6× the handler's time budget).
    pub visibility_timeout: Duration,
    /// Receives before a message moves to its dead-letter queue.
    pub max_receive_count: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
        }
    }
}

/// The spec of every work queue and its dead-letter queue, dead-letter queues first.
pub fn queue_specs(settings: QueueSettings) -> Vec<QueueSpec> {
    let mut specs = Vec::new();
    for queue in ALL_QUEUES.into_iter().chain(WORLD_QUEUES) {
        let dead_letter = dead_letter_queue(queue);
        specs.push(QueueSpec::dead_letter(&dead_letter));
        let mut spec =
            QueueSpec::with_dead_letter(queue, &dead_letter, settings.visibility_timeout);
        spec.max_receive_count = settings.max_receive_count;
        specs.push(spec);
    }
    specs
}

/// Creates every queue and table that does not exist yet.
pub async fn declare(queue: &dyn Queue, table: &dyn Table, settings: QueueSettings) -> Result<()> {
    for spec in queue_specs(settings) {
        queue.ensure_queue(&spec).await?;
    }
    for name in ALL_TABLES.into_iter().chain(WORLD_TABLES) {
        table
            .ensure_table(&TableSpec {
                name: name.to_owned(),
            })
            .await?;
    }
    Ok(())
}
