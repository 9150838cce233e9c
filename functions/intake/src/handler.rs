//! The intake stage handler: the async shell around [`crate::validate::check`].
//!
//! Per record (records in parallel, except that records naming the same event id — an envelope
//! and its replay in one batch — run in queue order, so the first one owns the ledger entry):
//! validate; take a rate token; append to the ledger with a conditional put on (partition,
//! event id). Then the accepted events of the whole batch are routed with batched sends, in
//! record order, no record of a FIFO group after its first failure. A crash anywhere leaves
//! the record undeleted; on redelivery the ledger entry, which remembers the queue message that
//! wrote it, tells "my own earlier attempt — finish routing" from "a replay — refuse it".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use worldfleet_domain::names::{
    CLASSIFY_QUEUE, ECOLOGY_INPUT_QUEUE, INTAKE_QUEUE, LEDGER_TABLE, MARKET_QUEUE,
    RATE_LIMITS_TABLE, REJECTIONS_TABLE,
};
use worldfleet_domain::{AcceptedEvent, Envelope, EventKind, RejectReason};
use worldfleet_kit::{BatchReport, RecordError, StageContext, StageHandler, forward_batch_keyed};
use worldfleet_ports::{Condition, Item, Key, OutgoingMessage, ReceivedMessage};

use crate::config::IntakeConfig;
use crate::error::{IntakeError, Result};
use crate::validate::{Refusal, Validated, check};
use crate::{ratelimit, rejections};

/// The queue each kind of event goes to next: narrative to classify, trades to their
/// station's market, captures and breed requests to their cell's ecology inputs. Every queue
/// is FIFO with the partition UID (station, cell, scene) as the message group.
pub fn route(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Dialogue | EventKind::Action | EventKind::Combat | EventKind::Quest => {
            CLASSIFY_QUEUE
        }
        EventKind::Trade => MARKET_QUEUE,
        EventKind::Capture | EventKind::Breed => ECOLOGY_INPUT_QUEUE,
    }
}

/// Counters since start (process-local; the tables are the durable record).
#[derive(Debug, Default)]
pub struct IntakeCounters {
    pub accepted: AtomicU64,
    pub rejected: [AtomicU64; RejectReason::ALL.len()],
}

impl IntakeCounters {
    /// Rejections so far, by reason.
    pub fn rejected_by_reason(&self) -> Vec<(RejectReason, u64)> {
        RejectReason::ALL
            .iter()
            .zip(&self.rejected)
            .map(|(reason, count)| (*reason, count.load(Ordering::Relaxed)))
            .collect()
    }
}

/// The intake stage.
pub struct Intake {
    context: StageContext,
    config: Arc<IntakeConfig>,
    counters: Arc<IntakeCounters>,
}

enum Admission {
    /// Accepted: send this message to this queue.
    Routed(&'static str, OutgoingMessage),
    Refused,
}

impl Intake {
    /// intake over `context` with `config`.
    pub fn new(context: StageContext, config: IntakeConfig) -> Self {
        Self {
            context,
            config: Arc::new(config),
            counters: Arc::new(IntakeCounters::default()),
        }
    }

    /// Live counters.
    pub fn counters(&self) -> Arc<IntakeCounters> {
        Arc::clone(&self.counters)
    }

    async fn admit(&self, record: &ReceivedMessage) -> Result<Admission> {
        let raw = record.body.as_bytes();
        let now_ms = self.context.clock.now_ms();
        let validated = match check(raw, &self.config.gateways, now_ms, self.config.clock_window) {
            Ok(validated) => validated,
            Err(refusal) => return self.refuse(record, &refusal, now_ms).await,
        };
        let envelope = &validated.envelope;
        worldfleet_kit::batch::record_event_id(envelope.event_id.as_str());
        let ledger_key = Key::new(envelope.partition.as_str(), envelope.event_id.as_str());
        // On a redelivery, our own earlier attempt may already have appended (and spent a
        // token): look before spending another.
        if record.receive_count > 1
            && let Some(existing) = self.context.table.get(LEDGER_TABLE, &ledger_key).await?
        {
            return self
                .resume_or_refuse(record, &validated, &existing, now_ms)
                .await;
        }
        let granted = ratelimit::take_token(
            self.context.table.as_ref(),
            RATE_LIMITS_TABLE,
            &envelope.actor,
            self.config.rate_limit,
            now_ms,
        )
        .await?;
        if !granted {
            let refusal = Refusal {
                reason: RejectReason::RateLimited,
                detail: format!(
                    "player {} is over {} events/s (burst {}); the event was not applied. Send \
                     the same envelope again later under a new SQS MessageDeduplicationId (e.g. \
                     `{}#2`): a FIFO queue silently drops a repeated deduplication id for 5 \
                     minutes, and the ledger, keyed by the event id, keeps the event from being \
                     applied twice",
                    envelope.actor,
                    self.config.rate_limit.per_second,
                    self.config.rate_limit.burst,
                    envelope.event_id
                ),
                gateway: Some(envelope.gateway.clone()),
                event_id: Some(envelope.event_id.clone()),
            };
            return self.refuse(record, &refusal, now_ms).await;
        }
        let entry = Item::new(ledger_key.clone())
            .with("gateway", envelope.gateway.as_str())
            .with("kind", envelope.kind.as_str())
            .with("actor", envelope.actor.as_str())
            .with("content_hash", validated.content_hash.clone())
            .with("envelope", record.body.as_str())
            .with("accepted_at_ms", now_ms as i64)
            .with("message_id", record.message_id.as_str());
        match self
            .context
            .table
            .put(LEDGER_TABLE, entry, Some(Condition::ItemNotExists))
            .await
        {
            Ok(()) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                routed_message(&validated, now_ms)
            }
            Err(error) if error.is_condition_failed() => {
                let existing = self
                    .context
                    .table
                    .get(LEDGER_TABLE, &ledger_key)
                    .await?
                    .ok_or_else(|| {
                        IntakeError::Port(worldfleet_ports::Error::Unavailable(
                            "ledger entry vanished after a failed append".into(),
                        ))
                    })?;
                self.resume_or_refuse(record, &validated, &existing, now_ms)
                    .await
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The event id is already in the ledger: finish our own interrupted attempt, or refuse.
    async fn resume_or_refuse(
        &self,
        record: &ReceivedMessage,
        validated: &Validated,
        existing: &Item,
        now_ms: u64,
    ) -> Result<Admission> {
        let envelope = &validated.envelope;
        if existing.str("message_id") == Some(record.message_id.as_str()) {
            let accepted_at_ms = existing.i64("accepted_at_ms").unwrap_or(now_ms as i64) as u64;
            tracing::info!(event_id = %envelope.event_id, "resuming routing of an event this message already appended");
            return routed_message(validated, accepted_at_ms);
        }
        let refusal = if existing.bytes("content_hash") == Some(validated.content_hash.as_slice()) {
            Refusal {
                reason: RejectReason::Replayed,
                detail: format!(
                    "event {} was already accepted; this copy was not applied again (no action needed)",
                    envelope.event_id
                ),
                gateway: Some(envelope.gateway.clone()),
                event_id: Some(envelope.event_id.clone()),
            }
        } else {
            Refusal {
                reason: RejectReason::EventIdConflict,
                detail: format!(
                    "event id {} was already accepted with different content (actor, \
                     participants, partition or payload differ), so this envelope was not \
                     applied. A retry of that event needs nothing more: it is in the ledger (a \
                     retry may re-stamp sent_at_ms, nothing else). A different action needs an \
                     event id of its own",
                    envelope.event_id
                ),
                gateway: Some(envelope.gateway.clone()),
                event_id: Some(envelope.event_id.clone()),
            }
        };
        self.refuse(record, &refusal, now_ms).await
    }

    async fn refuse(
        &self,
        record: &ReceivedMessage,
        refusal: &Refusal,
        now_ms: u64,
    ) -> Result<Admission> {
        rejections::record(
            self.context.table.as_ref(),
            REJECTIONS_TABLE,
            record.body.as_bytes(),
            refusal,
            &record.message_id,
            now_ms,
        )
        .await?;
        let index = RejectReason::ALL
            .iter()
            .position(|reason| *reason == refusal.reason)
            .unwrap_or(0);
        self.counters.rejected[index].fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            reason = refusal.reason.code(),
            gateway = refusal.gateway.as_deref().unwrap_or("unknown"),
            event_id = refusal.event_id.as_deref().unwrap_or("-"),
            detail = %refusal.detail,
            "envelope refused"
        );
        Ok(Admission::Refused)
    }
}

/// The event intake routes for `envelope`, accepted into the ledger at `accepted_at_ms`: also
/// what a replay of a ledger entry feeds the stages after intake.
pub fn accepted_event(envelope: &Envelope, accepted_at_ms: u64) -> AcceptedEvent {
    AcceptedEvent {
        event_id: envelope.event_id.clone(),
        gateway: envelope.gateway.clone(),
        partition: envelope.partition.clone(),
        kind: envelope.kind,
        actor: envelope.actor.clone(),
        participants: envelope.participants.clone(),
        faction: envelope.faction.clone(),
        payload: envelope.payload.clone(),
        sent_at_ms: envelope.sent_at_ms,
        accepted_at_ms,
    }
}

fn routed_message(validated: &Validated, accepted_at_ms: u64) -> Result<Admission> {
    let envelope = &validated.envelope;
    let event = accepted_event(envelope, accepted_at_ms);
    let body = serde_json::to_string(&event).map_err(|error| IntakeError::Encode {
        what: "accepted event",
        reason: error.to_string(),
    })?;
    let message = OutgoingMessage::fifo(body, envelope.partition.as_str(), &envelope.event_id);
    Ok(Admission::Routed(route(envelope.kind), message))
}

#[async_trait]
impl StageHandler for Intake {
    fn name(&self) -> &'static str {
        "intake"
    }

    fn source_queue(&self) -> &'static str {
        INTAKE_QUEUE
    }

    fn describe(&self) -> String {
        match self.config.gateways.source() {
            Some((source, every)) => format!(
                "intake: gateway keys from {source}, read again every {} s",
                every.as_secs()
            ),
            None => "intake: gateway keys fixed at start-up".to_owned(),
        }
    }

    async fn handle_batch(&self, records: &[ReceivedMessage], _remaining: Duration) -> BatchReport {
        // Keys from a secret are read again once their refresh interval has passed.
        self.config.gateways.refresh_if_due().await;
        forward_batch_keyed(
            &self.context,
            records,
            claimed_event_id,
            |record| async move {
                match self.admit(record).await {
                    Ok(Admission::Routed(queue, message)) => Ok(Some((queue, message))),
                    Ok(Admission::Refused) => Ok(None),
                    Err(error) => Err(RecordError::classify(error)),
                }
            },
        )
        .await
    }
}

/// The event id an envelope claims, read without validating anything else: records naming the
/// same one are admitted in queue order. `None` for a body that names none, or too large to be
/// an envelope (either is refused, so it needs no order).
fn claimed_event_id(record: &ReceivedMessage) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Claimed {
        event_id: String,
    }
    if record.body.len() > worldfleet_domain::envelope::MAX_ENVELOPE_BYTES {
        return None;
    }
    serde_json::from_str::<Claimed>(&record.body)
        .ok()
        .map(|claimed| claimed.event_id)
}
