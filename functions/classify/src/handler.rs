//! The classify stage handler: decide, forward the decision to compose.
//!
//! classify writes nothing. Its decision travels in the compose request, and compose's canon
//! put — conditional on the event having no canon yet — is the one point where an event's
//! decision becomes final. A retry that decides differently (the pool came back, or went away)
//! sends a second request under the same deduplication id, the event id: within the queue's
//! five-minute window the queue drops it; after it, compose finds canon written and forwards
//! that canon unchanged, so the second decision is never composed or published.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use worldfleet_domain::names::{CLASSIFY_QUEUE, COMPOSE_QUEUE};
use worldfleet_domain::{AcceptedEvent, Classification, ComposeRequest};
use worldfleet_kit::{BatchReport, RecordError, StageContext, StageHandler, forward_batch};
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
    classifier: Classifier,
}

impl Classify {
    /// classify over `context` with `classifier`.
    pub fn with_classifier(context: StageContext, classifier: Classifier) -> Self {
        Self {
            context,
            classifier,
        }
    }

    /// The classifier in use.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    async fn decide(&self, record: &ReceivedMessage) -> Result<OutgoingMessage, RecordError> {
        let event: AcceptedEvent = serde_json::from_str(&record.body)
            .map_err(|error| RecordError::permanent(format!("not an accepted event: {error}")))?;
        worldfleet_kit::batch::record_event_id(&event.event_id);
        let decision = self.classifier.classify(&event).await;
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

    async fn handle_batch(&self, records: &[ReceivedMessage], _remaining: Duration) -> BatchReport {
        forward_batch(&self.context, records, |record| async move {
            self.decide(record)
                .await
                .map(|message| Some((COMPOSE_QUEUE, message)))
        })
        .await
    }
}
