//! The messages stages pass to each other, and the rejection reasons intake records.
//!
//! Every message carries the partition UID that owns the state it touches; the shell uses it as
//! the FIFO message group, so order holds per partition and partitions run in parallel.

use serde::{Deserialize, Serialize};

use crate::envelope::{EventKind, EventPayload};
use crate::uid::PartitionUid;

/// An event intake accepted and appended to its partition's ledger; the input of classify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedEvent {
    pub event_id: String,
    pub gateway: String,
    pub partition: PartitionUid,
    pub kind: EventKind,
    pub actor: String,
    pub participants: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faction: Option<String>,
    pub payload: EventPayload,
    pub sent_at_ms: u64,
    /// When intake appended the event to the ledger: the start of intake-to-feed latency.
    pub accepted_at_ms: u64,
}

impl AcceptedEvent {
    /// The actor followed by the participants, without repeats.
    pub fn audience(&self) -> Vec<String> {
        crate::envelope::audience_of(&self.actor, &self.participants)
    }

    /// The district that owns the event: the first two UID segments.
    pub fn district(&self) -> PartitionUid {
        self.partition.prefix(2)
    }
}

/// What an event means for the story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Greeting,
    Question,
    Threat,
    Trade,
    Lore,
    Fight,
    QuestProgress,
    Social,
    Other,
}

impl Intent {
    /// The intent's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Greeting => "greeting",
            Self::Question => "question",
            Self::Threat => "threat",
            Self::Trade => "trade",
            Self::Lore => "lore",
            Self::Fight => "fight",
            Self::QuestProgress => "quest_progress",
            Self::Social => "social",
            Self::Other => "other",
        }
    }
}

/// Which composer renders an event: a deep model, the driver model, or a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Deep,
    Driver,
    Template,
}

/// classify's decision for one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub intent: Intent,
    /// 0 (background noise) to 100 (a moment the world remembers).
    pub salience: u8,
    pub tier: Tier,
    /// Which classifier decided (`rules`, `embeddings`).
    pub classifier: String,
}

/// The input of compose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComposeRequest {
    pub event: AcceptedEvent,
    pub classification: Classification,
}

/// The composed, canonical account of one event: written once, never rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonEntry {
    pub event_id: String,
    pub partition: PartitionUid,
    pub kind: EventKind,
    pub actor: String,
    pub audience: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faction: Option<String>,
    pub intent: Intent,
    pub salience: u8,
    pub tier: Tier,
    /// The narrative line players read.
    pub text: String,
    /// Which composer wrote it (`template`, or a model name).
    pub composer: String,
    pub accepted_at_ms: u64,
    pub composed_at_ms: u64,
}

impl CanonEntry {
    /// The district that owns the event: the first two UID segments.
    pub fn district(&self) -> PartitionUid {
        self.partition.prefix(2)
    }
}

/// The input of distribute: canon to publish to feeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributeRequest {
    pub canon: CanonEntry,
}

/// Why intake refused an envelope. The code is stable; gateways act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Larger than 64 KiB: split the payload.
    Oversized,
    /// Not a JSON object, or a field of the wrong type, or an unknown field.
    Malformed,
    /// A version this service does not speak.
    UnsupportedVersion,
    /// A field's value is out of its allowed range or shape.
    InvalidField,
    /// The partition UID fails validation.
    BadUid,
    /// The gateway id has no key configured.
    UnknownGateway,
    /// The HMAC does not match: wrong key, or the envelope was altered.
    BadSignature,
    /// `sent_at_ms` is outside ±300 s of intake's clock.
    ClockSkew,
    /// The event id was already accepted; this copy is a replay and was not applied again.
    Replayed,
    /// The event id was already accepted with different content.
    EventIdConflict,
    /// The actor is over their event rate; retry later.
    RateLimited,
}

impl RejectReason {
    /// Every reason, for metrics and reports.
    pub const ALL: [RejectReason; 11] = [
        Self::Oversized,
        Self::Malformed,
        Self::UnsupportedVersion,
        Self::InvalidField,
        Self::BadUid,
        Self::UnknownGateway,
        Self::BadSignature,
        Self::ClockSkew,
        Self::Replayed,
        Self::EventIdConflict,
        Self::RateLimited,
    ];

    /// The stable wire code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Malformed => "malformed",
            Self::UnsupportedVersion => "unsupported_version",
            Self::InvalidField => "invalid_field",
            Self::BadUid => "bad_uid",
            Self::UnknownGateway => "unknown_gateway",
            Self::BadSignature => "bad_signature",
            Self::ClockSkew => "clock_skew",
            Self::Replayed => "replayed",
            Self::EventIdConflict => "event_id_conflict",
            Self::RateLimited => "rate_limited",
        }
    }

    /// Parses a stable wire code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }
}

impl From<&crate::error::DomainError> for RejectReason {
    fn from(error: &crate::error::DomainError) -> Self {
        use crate::error::DomainError;
        match error {
            DomainError::InvalidUid { .. } => Self::BadUid,
            DomainError::Malformed(_) => Self::Malformed,
            DomainError::UnsupportedVersion(_) => Self::UnsupportedVersion,
            DomainError::InvalidField { .. } | DomainError::InvalidFeed { .. } => {
                Self::InvalidField
            }
            DomainError::Oversized { .. } => Self::Oversized,
            DomainError::BadSignature => Self::BadSignature,
            DomainError::Canonicalisation(_) => Self::Malformed,
        }
    }
}
