//! The intake stage handler: the async shell around [`crate::validate::check`].
//!
//! A batch goes through three steps. First every record is validated (in parallel), and a
//! redelivered one is looked up in the ledger: our own earlier attempt may already have
//! appended it. Then the records that still need a rate token are counted per player and each
//! player's tokens are taken in **one** conditional write, granted in queue order (the first
//! records of a player get the tokens the bucket holds, the rest are refused as rate-limited).
//! Last, per record (records naming the same event id — an envelope and its replay in one batch
//! — in queue order, so the first one owns the ledger entry): append to the ledger with a
//! conditional put on (partition, event id), or record the refusal. The accepted events of the
//! whole batch are routed with batched sends, in record order, no record of a FIFO group after
//! its first failure. A crash anywhere leaves the record undeleted; on redelivery the ledger
//! entry, which remembers the queue message that wrote it, tells "my own earlier attempt —
//! finish routing" from "a replay — refuse it".

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

/// What is left to do for one record once the batch's checks and token takes are done.
enum Step {
    /// Record this refusal (the envelope is malformed, forged, stale or over its rate).
    Refuse(Refusal),
    /// A redelivery whose event is in the ledger: finish routing it, or refuse it as a replay.
    Resume(Validated, Item),
    /// Valid, with its rate token: append it to the ledger and route it.
    Append(Validated),
    /// The ledger lookup or the token take failed; the record is tried again.
    Fail(RecordError),
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

    /// The first step for one record: validate it and, when it was delivered before, look for
    /// its ledger entry (our own earlier attempt may have appended it and spent its token).
    async fn prepare(&self, record: &ReceivedMessage, now_ms: u64) -> Step {
        let validated = match check(
            record.body.as_bytes(),
            &self.config.gateways,
            now_ms,
            self.config.clock_window,
        ) {
            Ok(validated) => validated,
            Err(refusal) => return Step::Refuse(refusal),
        };
        if record.receive_count > 1 {
            let envelope = &validated.envelope;
            let ledger_key = Key::new(envelope.partition.as_str(), envelope.event_id.as_str());
            match self.context.table.get(LEDGER_TABLE, &ledger_key).await {
                Ok(Some(existing)) => return Step::Resume(validated, existing),
                Ok(None) => {}
                Err(error) => return Step::Fail(RecordError::classify(IntakeError::from(error))),
            }
        }
        Step::Append(validated)
    }

    /// The second step: each player's tokens for the batch in one take, granted to the
    /// player's records in queue order; the records left without one are refused.
    async fn take_tokens(&self, steps: &mut [Step], now_ms: u64) {
        let mut wanted: Vec<(String, Vec<usize>)> = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            if let Step::Append(validated) = step {
                let actor = &validated.envelope.actor;
                match wanted.iter_mut().find(|(player, _)| player == actor) {
                    Some((_, indices)) => indices.push(index),
                    None => wanted.push((actor.clone(), vec![index])),
                }
            }
        }
        let limit = self.config.rate_limit;
        let grants = futures::future::join_all(wanted.iter().map(|(player, indices)| {
            ratelimit::take_tokens(
                self.context.table.as_ref(),
                RATE_LIMITS_TABLE,
                player,
                limit,
                now_ms,
                u32::try_from(indices.len()).unwrap_or(u32::MAX),
            )
        }))
        .await;
        for ((_, indices), grant) in wanted.iter().zip(grants) {
            let granted = match grant {
                Ok(granted) => granted as usize,
                Err(error) => {
                    let error = RecordError::classify(error);
                    for &index in indices {
                        steps[index] = Step::Fail(error.clone());
                    }
                    continue;
                }
            };
            for &index in &indices[granted.min(indices.len())..] {
                if let Step::Append(validated) = &steps[index] {
                    steps[index] = Step::Refuse(self.over_rate(validated));
                }
            }
        }
    }

    fn over_rate(&self, validated: &Validated) -> Refusal {
        let envelope = &validated.envelope;
        Refusal {
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
        }
    }

    /// The last step for one record: record its refusal, or append it and route it.
    async fn admit(
        &self,
        record: &ReceivedMessage,
        step: &Step,
        now_ms: u64,
    ) -> Result<Admission, RecordError> {
        let admitted = match step {
            Step::Refuse(refusal) => self.refuse(record, refusal, now_ms).await,
            Step::Fail(error) => return Err(error.clone()),
            Step::Resume(validated, existing) => {
                worldfleet_kit::batch::record_event_id(validated.envelope.event_id.as_str());
                self.resume_or_refuse(record, validated, existing, now_ms)
                    .await
            }
            Step::Append(validated) => {
                worldfleet_kit::batch::record_event_id(validated.envelope.event_id.as_str());
                self.append(record, validated, now_ms).await
            }
        };
        admitted.map_err(RecordError::classify)
    }

    /// Appends a validated envelope that holds its rate token to the ledger, unless its event
    /// id is there already.
    async fn append(
        &self,
        record: &ReceivedMessage,
        validated: &Validated,
        now_ms: u64,
    ) -> Result<Admission> {
        let envelope = &validated.envelope;
        let ledger_key = Key::new(envelope.partition.as_str(), envelope.event_id.as_str());
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
                routed_message(validated, now_ms)
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
                self.resume_or_refuse(record, validated, &existing, now_ms)
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
        let now_ms = self.context.clock.now_ms();
        let mut steps =
            futures::future::join_all(records.iter().map(|record| self.prepare(record, now_ms)))
                .await;
        self.take_tokens(&mut steps, now_ms).await;
        let steps = &steps;
        forward_batch_keyed(
            &self.context,
            records,
            claimed_event_id,
            |record| async move {
                // `record` is one of `records`: its step is the one at its position.
                let Some(step) = records
                    .iter()
                    .position(|candidate| std::ptr::eq(candidate, record))
                    .and_then(|index| steps.get(index))
                else {
                    return Err(RecordError::permanent("a record outside its batch"));
                };
                match self.admit(record, step, now_ms).await? {
                    Admission::Routed(queue, message) => Ok(Some((queue, message))),
                    Admission::Refused => Ok(None),
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
