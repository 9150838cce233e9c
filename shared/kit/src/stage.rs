//! The contract between a stage and whatever drives it.
//!
//! A stage is a [`StageHandler`]: it takes one batch of queue records and reports which failed.
//! The embedded runtime, the fleet workers (`worldfleet worker`) and the Lambda binaries all
//! drive the same handler; only the source of batches differs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use worldfleet_ports::{Clock, Queue, ReceivedMessage, Table};

use crate::batch::BatchReport;

/// The ports a stage reaches the world through, built once per process.
#[derive(Clone)]
pub struct StageContext {
    pub queue: Arc<dyn Queue>,
    pub table: Arc<dyn Table>,
    pub clock: Arc<dyn Clock>,
}

impl StageContext {
    /// A context over the given ports.
    pub fn new(queue: Arc<dyn Queue>, table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self {
            queue,
            table,
            clock,
        }
    }
}

/// One stage function.
#[async_trait]
pub trait StageHandler: Send + Sync {
    /// The stage's name (`intake`, `classify`, …).
    fn name(&self) -> &'static str;

    /// The queue whose messages trigger the stage.
    fn source_queue(&self) -> &'static str;

    /// Processes one batch (at most ten records) within `remaining` time.
    async fn handle_batch(&self, records: &[ReceivedMessage], remaining: Duration) -> BatchReport;
}
