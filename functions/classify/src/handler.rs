//! The classify stage handler: decide once per event, forward to compose.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use worldfleet_domain::names::{CLASSIFY_QUEUE, COMPOSE_QUEUE, IDEMPOTENCY_TABLE};
use worldfleet_domain::{AcceptedEvent, Classification, ComposeRequest};
use worldfleet_kit::{
    BatchReport, IdempotencyConfig, IdempotencyStore, RecordError, StageContext, StageHandler,
    forward_batch,
};
use worldfleet_ports::{OutgoingMessage, ReceivedMessage};

use crate::embedding::EmbeddingClassifier;
use crate::rules;

/// Which classifier decides.
#[derive(Clone)]
pub enum Classifier {
    /// Keyword and structure rules only.
    Rules,
    /// Embedding similarity, falling back to the rules per event.
    Embeddings(Arc<EmbeddingClassifier>),
}

impl Classifier {
    /// What classifies, for logs and run summaries.
    pub fn describe(&self) -> String {
        match self {
            Self::Rules => "rules".to_owned(),
            Self::Embeddings(classifier) => classifier.describe(),
        }
    }

    /// Classifies `event`.
    pub async fn classify(&self, event: &AcceptedEvent) -> Classification {
        match self {
            Self::Rules => rules::classify(event),
            Self::Embeddings(classifier) => classifier.classify(event).await,
        }
    }
}

/// The classify stage.
pub struct Classify {
    context: StageContext,
    decisions: IdempotencyStore,
    classifier: Classifier,
}

impl Classify {
    /// classify over `context` with `classifier`.
    pub fn with_classifier(context: StageContext, classifier: Classifier) -> Self {
        let decisions = IdempotencyStore::new(
            Arc::clone(&context.table),
            IDEMPOTENCY_TABLE,
            Arc::clone(&context.clock),
            IdempotencyConfig::default(),
        );
        Self {
            context,
            decisions,
            classifier,
        }
    }

    /// The classifier in use.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    async fn decide(
        &self,
        record: &ReceivedMessage,
        remaining: Duration,
    ) -> Result<OutgoingMessage, RecordError> {
        let event: AcceptedEvent = serde_json::from_str(&record.body)
            .map_err(|error| RecordError::permanent(format!("not an accepted event: {error}")))?;
        worldfleet_kit::batch::record_event_id(&event.event_id);
        let key = format!("classify#{}", event.event_id);
        let decision = self
            .decisions
            .run(&key, record.body.as_bytes(), remaining, || async {
                Ok::<Classification, std::convert::Infallible>(
                    self.classifier.classify(&event).await,
                )
            })
            .await
            .map_err(RecordError::classify)?
            .into_inner();
        let partition = event.partition.to_string();
        let event_id = event.event_id.clone();
        let request = ComposeRequest {
            event,
            classification: decision,
        };
        let body = serde_json::to_string(&request)
            .map_err(|error| RecordError::permanent(format!("encode: {error}")))?;
        Ok(OutgoingMessage::fifo(body, &partition, &event_id))
    }
}

#[async_trait]
impl StageHandler for Classify {
    fn name(&self) -> &'static str {
        "classify"
    }

    fn source_queue(&self) -> &'static str {
        CLASSIFY_QUEUE
    }

    fn describe(&self) -> String {
        format!("classify: {}", self.classifier.describe())
    }

    async fn handle_batch(&self, records: &[ReceivedMessage], remaining: Duration) -> BatchReport {
        forward_batch(&self.context, records, |record| async move {
            self.decide(record, remaining)
                .await
                .map(|message| Some((COMPOSE_QUEUE, message)))
        })
        .await
    }
}
