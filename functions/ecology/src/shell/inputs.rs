//! The ecology input stage: captures, breed requests and migrants, stored under their cell
//! until the cell's next tick consumes them (see [`super::store`] for the exactly-once rule).

use std::time::Duration;

use async_trait::async_trait;
use worldfleet_domain::names::ECOLOGY_INPUT_QUEUE;
use worldfleet_domain::{AcceptedEvent, EventPayload};
use worldfleet_kit::{BatchReport, RecordError, StageContext, StageHandler, process_batch};
use worldfleet_ports::{Error, ReceivedMessage};

use super::MigrantMessage;
use super::store::{PendingInput, store_pending};
use crate::error::{EcologyError, Result};
use crate::sim::{BreedRequest, CELL_UID_DEPTH, CaptureRequest, CreatureId};

/// What became of one input message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Now pending under its cell.
    Pending,
    /// Already pending or already consumed: a re-delivery, dropped.
    Duplicate,
    /// No such cell: refused (logged; a gateway sent a capture for a cell that never existed).
    UnknownCell,
}

/// The ecology input stage.
pub struct EcologyInputStage {
    context: StageContext,
}

impl EcologyInputStage {
    /// The stage over `context`.
    pub fn new(context: StageContext) -> Self {
        Self { context }
    }

    /// Decodes a message body into its cell and input.
    pub fn decode(body: &str) -> Result<(String, PendingInput)> {
        if let Ok(message) = serde_json::from_str::<MigrantMessage>(body) {
            let cell = message.migrant.destination.to_string();
            return Ok((cell, PendingInput::Arrival(message.migrant)));
        }
        let event: AcceptedEvent = serde_json::from_str(body)
            .map_err(|error| EcologyError::corrupt("ecology input", error))?;
        if event.partition.depth() != CELL_UID_DEPTH {
            return Err(EcologyError::corrupt(
                format!("event {}", event.event_id),
                "a capture or breed partition is realm/zone/cell",
            ));
        }
        let input = match &event.payload {
            EventPayload::Capture(capture) => PendingInput::Capture(CaptureRequest {
                request_id: event.event_id.clone(),
                player_id: event.actor.clone(),
                creature_id: CreatureId::parse(&capture.creature)?,
            }),
            EventPayload::Breed(breed) => PendingInput::Breed(BreedRequest {
                request_id: event.event_id.clone(),
                player_id: event.actor.clone(),
                parent_a: CreatureId::parse(&breed.parent_a)?,
                parent_b: CreatureId::parse(&breed.parent_b)?,
            }),
            _ => {
                return Err(EcologyError::corrupt(
                    format!("event {}", event.event_id),
                    "not a capture or breed request",
                ));
            }
        };
        Ok((event.partition.to_string(), input))
    }

    /// Stores one input as pending, once.
    pub async fn store(&self, cell: &str, input: &PendingInput) -> Result<Stored> {
        match self
            .context
            .table
            .transact(store_pending(cell, input)?)
            .await
        {
            Ok(()) => Ok(Stored::Pending),
            Err(Error::TransactionCanceled { reasons })
                if reasons.get(2).is_some_and(Option::is_some) =>
            {
                tracing::warn!(cell, input = %input.key(), "input for a cell that does not exist; refused");
                Ok(Stored::UnknownCell)
            }
            Err(error) if error.is_condition_failed() => Ok(Stored::Duplicate),
            Err(error) => Err(error.into()),
        }
    }
}

#[async_trait]
impl StageHandler for EcologyInputStage {
    fn name(&self) -> &'static str {
        "ecology-input"
    }

    fn source_queue(&self) -> &'static str {
        ECOLOGY_INPUT_QUEUE
    }

    async fn handle_batch(&self, records: &[ReceivedMessage], _remaining: Duration) -> BatchReport {
        process_batch(records, true, |record| async move {
            let (cell, input) = Self::decode(&record.body).map_err(RecordError::permanent)?;
            self.store(&cell, &input)
                .await
                .map(|_| ())
                .map_err(RecordError::classify)
        })
        .await
    }
}
