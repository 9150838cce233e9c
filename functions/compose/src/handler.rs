//! The compose stage handler: render, write canon once, forward to distribute.

use std::time::Duration;

use async_trait::async_trait;
use worldfleet_domain::names::{CANON_TABLE, COMPOSE_QUEUE, DISTRIBUTE_QUEUE};
use worldfleet_domain::{CanonEntry, ComposeRequest, DistributeRequest, Tier};
use worldfleet_kit::{BatchReport, RecordError, StageContext, StageHandler, forward_batch};
use worldfleet_ports::{Condition, OutgoingMessage, ReceivedMessage};

use crate::composer::{Composer, Line};
use worldfleet_tables::canon;

/// The compose stage.
pub struct Compose {
    context: StageContext,
    composer: Composer,
}

impl Compose {
    /// compose over `context` with `composer`.
    pub fn with_composer(context: StageContext, composer: Composer) -> Self {
        Self { context, composer }
    }

    /// The composer in use.
    pub fn composer(&self) -> &Composer {
        &self.composer
    }

    async fn compose(&self, record: &ReceivedMessage) -> Result<OutgoingMessage, RecordError> {
        let request: ComposeRequest = serde_json::from_str(&record.body)
            .map_err(|error| RecordError::permanent(format!("not a compose request: {error}")))?;
        let event = &request.event;
        worldfleet_kit::batch::record_event_id(&event.event_id);
        let line = match &self.composer {
            Composer::Templates => Line {
                text: crate::template::render(&request),
                composer: crate::template::COMPOSER.to_owned(),
            },
            Composer::Models(models) => {
                // A model line costs money: a redelivery whose canon is already written
                // forwards that canon without asking a model again.
                if request.classification.tier != Tier::Template
                    && let Some(existing) = self.existing_canon(event).await?
                {
                    return self.forward(existing);
                }
                models
                    .compose(
                        self.context.table.as_ref(),
                        self.context.clock.now_secs(),
                        &request,
                    )
                    .await?
            }
        };
        let composed = CanonEntry {
            event_id: event.event_id.clone(),
            partition: event.partition.clone(),
            kind: event.kind,
            actor: event.actor.clone(),
            audience: event.audience(),
            faction: event.faction.clone(),
            intent: request.classification.intent,
            salience: request.classification.salience,
            tier: request.classification.tier,
            text: line.text,
            composer: line.composer,
            accepted_at_ms: event.accepted_at_ms,
            composed_at_ms: self.context.clock.now_ms(),
        };
        let item = canon::to_item(&composed).map_err(RecordError::permanent)?;
        let written = match self
            .context
            .table
            .put(CANON_TABLE, item, Some(Condition::ItemNotExists))
            .await
        {
            Ok(()) => composed,
            Err(error) if error.is_condition_failed() => self
                .existing_canon(event)
                .await?
                .ok_or_else(|| RecordError::retryable("canon vanished after a failed put"))?,
            Err(error) if error.is_retryable() => return Err(RecordError::retryable(error)),
            Err(error) => return Err(RecordError::permanent(error)),
        };
        self.forward(written)
    }

    /// The canon already written for `event`, if any.
    async fn existing_canon(
        &self,
        event: &worldfleet_domain::AcceptedEvent,
    ) -> Result<Option<CanonEntry>, RecordError> {
        let key = canon::key(event.partition.as_str(), &event.event_id);
        let Some(existing) = self
            .context
            .table
            .get(CANON_TABLE, &key)
            .await
            .map_err(RecordError::retryable)?
        else {
            return Ok(None);
        };
        tracing::info!(event_id = %event.event_id, "canon already written; forwarding it unchanged");
        canon::from_item(&existing)
            .map(Some)
            .map_err(RecordError::permanent)
    }

    fn forward(&self, written: CanonEntry) -> Result<OutgoingMessage, RecordError> {
        let scene = written.partition.prefix(3);
        let event_id = written.event_id.clone();
        let body = serde_json::to_string(&DistributeRequest { canon: written })
            .map_err(|error| RecordError::permanent(format!("encode: {error}")))?;
        // Grouped by scene: a scene's events reach distribute together, with one audience, so
        // distribute can coalesce them into one feed page per recipient.
        Ok(OutgoingMessage::fifo(body, scene.as_str(), &event_id))
    }
}

#[async_trait]
impl StageHandler for Compose {
    fn name(&self) -> &'static str {
        "compose"
    }

    fn source_queue(&self) -> &'static str {
        COMPOSE_QUEUE
    }

    fn describe(&self) -> String {
        format!("compose: {}", self.composer.describe())
    }

    async fn handle_batch(&self, records: &[ReceivedMessage], _remaining: Duration) -> BatchReport {
        forward_batch(&self.context, records, |record| async move {
            self.compose(record)
                .await
                .map(|message| Some((DISTRIBUTE_QUEUE, message)))
        })
        .await
    }
}
