//! The gateway envelope, version 1: one signed JSON document per game event.
//!
//! A gateway signs the envelope with HMAC-SHA256 under its own key. The signed bytes are the
//! JSON Canonicalization Scheme (RFC 8785) form of the envelope object *without* its
//! `signature` member, so a gateway in any language can sign with a stock JCS library. The
//! signature is 64 lowercase hex characters (upper case is refused: one signature, one
//! spelling). Verification works on the object exactly as received (not on a
//! re-serialisation), and compares in constant time. The object is read by
//! [`crate::json::parse_value`], which refuses duplicate member names at any depth.
//!
//! The published JSON Schema is `events/schema/envelope.v1.json`; this module is the
//! authoritative parser and refuses unknown fields.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::error::{DomainError, Result};
use crate::uid::{PartitionUid, validate_identifier};

/// Envelopes larger than this are refused before they are parsed.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// The only envelope version this build speaks.
pub const ENVELOPE_VERSION: u64 = 1;
/// Intake's default clock window: an envelope whose `sent_at_ms` is further than this from
/// intake's clock is refused as stale or from the future (`WORLDFLEET_CLOCK_WINDOW_SECS`
/// changes it). Ledger compaction relies on it: nothing older can be accepted again.
pub const DEFAULT_CLOCK_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);
/// At most this many participants per event (fan-out is bounded at the edge).
pub const MAX_PARTICIPANTS: usize = 64;
/// Longest free text in a payload, in characters.
pub const MAX_TEXT_CHARS: usize = 2_000;

type HmacSha256 = Hmac<Sha256>;

/// The kind of game event; decides the payload shape and where intake routes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A player or NPC says something.
    Dialogue,
    /// A player does something in the scene.
    Action,
    /// A blow is struck.
    Combat,
    /// Quest progress.
    Quest,
    /// A market transaction at a station (partition `region/station`).
    Trade,
    /// A player capturing a creature in a cell (partition `realm/zone/cell`).
    Capture,
    /// A player asking two creatures of a cell to breed (partition `realm/zone/cell`).
    Breed,
}

impl EventKind {
    /// Every kind, in schema order.
    pub const ALL: [EventKind; 7] = [
        Self::Dialogue,
        Self::Action,
        Self::Combat,
        Self::Quest,
        Self::Trade,
        Self::Capture,
        Self::Breed,
    ];

    /// The depth range of this kind's partition UID: `gm_event/district/scene[/slot]` for
    /// narrative, `region/station` for trades, `realm/zone/cell` for the ecology.
    pub fn partition_depth(self) -> (usize, usize) {
        match self {
            Self::Dialogue | Self::Action | Self::Combat | Self::Quest => (3, 4),
            Self::Trade => (2, 2),
            Self::Capture | Self::Breed => (3, 3),
        }
    }

    /// True for the kinds that drive the world simulation rather than the narrative path.
    pub fn is_world(self) -> bool {
        matches!(self, Self::Trade | Self::Capture | Self::Breed)
    }

    /// The kind's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dialogue => "dialogue",
            Self::Action => "action",
            Self::Combat => "combat",
            Self::Quest => "quest",
            Self::Trade => "trade",
            Self::Capture => "capture",
            Self::Breed => "breed",
        }
    }
}

/// How a combat exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CombatOutcome {
    Hit,
    Miss,
    Defeat,
    Flee,
}

/// Where a quest stands after this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestStatus {
    Started,
    Advanced,
    Completed,
    Failed,
}

/// Kind-specific payload. Its shape is chosen by [`EventKind`], not by a tag inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventPayload {
    Dialogue(DialoguePayload),
    Action(ActionPayload),
    Combat(CombatPayload),
    Quest(QuestPayload),
    Trade(TradePayload),
    Capture(CapturePayload),
    Breed(BreedPayload),
}

/// `dialogue`: something said, optionally to someone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialoguePayload {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// `action`: a verb, optionally on a target, optionally described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionPayload {
    pub verb: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `combat`: one exchange against a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CombatPayload {
    pub target: String,
    pub outcome: CombatOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<u32>,
}

/// `quest`: a quest moved to a step and status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestPayload {
    pub quest: String,
    pub step: u32,
    pub status: QuestStatus,
}

/// Which way a trade goes, seen from the player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradeSide {
    /// The player buys from the station.
    Buy,
    /// The player sells to the station.
    Sell,
}

/// Largest quantity one trade may move.
pub const MAX_TRADE_QUANTITY: u64 = 1_000_000_000;
/// Longest creature id, in bytes (`realm/zone/cell~tick~ordinal`).
pub const MAX_CREATURE_ID_BYTES: usize = 192;

/// `trade`: a market transaction at the station named by the partition; the transaction id
/// is the event id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradePayload {
    pub good: String,
    pub side: TradeSide,
    /// Units, `1..=1_000_000_000`.
    pub quantity: u64,
}

/// `capture`: the actor captures a creature of the cell named by the partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapturePayload {
    pub creature: String,
}

/// `breed`: the actor asks two creatures of the cell named by the partition to breed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreedPayload {
    pub parent_a: String,
    pub parent_b: String,
}

/// Refuses a creature id outside 1–192 bytes of `[A-Za-z0-9._:/~-]`.
pub fn validate_creature_id(field: &'static str, raw: &str) -> Result<()> {
    let valid = !raw.is_empty()
        && raw.len() <= MAX_CREATURE_ID_BYTES
        && raw
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._:/~-".contains(&byte));
    if valid {
        Ok(())
    } else {
        Err(DomainError::InvalidField {
            field,
            reason: "must be 1-192 characters of [A-Za-z0-9._:/~-]".to_owned(),
        })
    }
}

impl EventPayload {
    /// Parses `value` as the payload of `kind`, refusing unknown fields.
    pub fn from_value(kind: EventKind, value: Value) -> Result<Self> {
        let parsed = match kind {
            EventKind::Dialogue => serde_json::from_value(value).map(Self::Dialogue),
            EventKind::Action => serde_json::from_value(value).map(Self::Action),
            EventKind::Combat => serde_json::from_value(value).map(Self::Combat),
            EventKind::Quest => serde_json::from_value(value).map(Self::Quest),
            EventKind::Trade => serde_json::from_value(value).map(Self::Trade),
            EventKind::Capture => serde_json::from_value(value).map(Self::Capture),
            EventKind::Breed => serde_json::from_value(value).map(Self::Breed),
        };
        let payload = parsed.map_err(|error| DomainError::InvalidField {
            field: "payload",
            reason: format!("not a valid {} payload: {error}", kind.as_str()),
        })?;
        payload.validate()?;
        Ok(payload)
    }

    /// The payload's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Dialogue(_) => EventKind::Dialogue,
            Self::Action(_) => EventKind::Action,
            Self::Combat(_) => EventKind::Combat,
            Self::Quest(_) => EventKind::Quest,
            Self::Trade(_) => EventKind::Trade,
            Self::Capture(_) => EventKind::Capture,
            Self::Breed(_) => EventKind::Breed,
        }
    }

    /// The player-written text the payload carries, if any.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Dialogue(dialogue) => Some(&dialogue.text),
            Self::Action(action) => action.text.as_deref(),
            Self::Combat(_)
            | Self::Quest(_)
            | Self::Trade(_)
            | Self::Capture(_)
            | Self::Breed(_) => None,
        }
    }

    fn validate(&self) -> Result<()> {
        let check_text = |field: &'static str, text: &str| {
            if text.chars().count() > MAX_TEXT_CHARS {
                return Err(DomainError::InvalidField {
                    field,
                    reason: format!("longer than {MAX_TEXT_CHARS} characters"),
                });
            }
            refuse_control_characters(field, text, &['\n', '\r', '\t'])
        };
        let check_name = |field: &'static str, text: &str| {
            if text.is_empty() || text.chars().count() > 64 {
                return Err(DomainError::InvalidField {
                    field,
                    reason: "must be 1-64 characters".to_owned(),
                });
            }
            refuse_control_characters(field, text, &[])
        };
        match self {
            Self::Dialogue(dialogue) => {
                if dialogue.text.trim().is_empty() {
                    return Err(DomainError::InvalidField {
                        field: "payload.text",
                        reason: "must not be empty".to_owned(),
                    });
                }
                check_text("payload.text", &dialogue.text)?;
                if let Some(to) = &dialogue.to {
                    validate_identifier("payload.to", to)?;
                }
            }
            Self::Action(action) => {
                check_name("payload.verb", &action.verb)?;
                if let Some(target) = &action.target {
                    check_name("payload.target", target)?;
                }
                if let Some(text) = &action.text {
                    check_text("payload.text", text)?;
                }
            }
            Self::Combat(combat) => check_name("payload.target", &combat.target)?,
            Self::Quest(quest) => check_name("payload.quest", &quest.quest)?,
            Self::Trade(trade) => {
                validate_identifier("payload.good", &trade.good)?;
                if !(1..=MAX_TRADE_QUANTITY).contains(&trade.quantity) {
                    return Err(DomainError::InvalidField {
                        field: "payload.quantity",
                        reason: format!("must be 1-{MAX_TRADE_QUANTITY}"),
                    });
                }
            }
            Self::Capture(capture) => validate_creature_id("payload.creature", &capture.creature)?,
            Self::Breed(breed) => {
                validate_creature_id("payload.parent_a", &breed.parent_a)?;
                validate_creature_id("payload.parent_b", &breed.parent_b)?;
            }
        }
        Ok(())
    }
}

/// Refuses a control character (NUL, escape, the C1 controls, ...) in player-written text,
/// other than those in `allowed`: no game needs them, and a NUL cuts a C string short.
fn refuse_control_characters(field: &'static str, text: &str, allowed: &[char]) -> Result<()> {
    match text
        .chars()
        .find(|c| c.is_control() && !allowed.contains(c))
    {
        Some(control) => Err(DomainError::InvalidField {
            field,
            reason: format!("holds the control character U+{:04X}", u32::from(control)),
        }),
        None => Ok(()),
    }
}

/// A parsed, structurally valid envelope (its signature not yet checked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Schema version; always 1 here.
    pub v: u64,
    /// The posting gateway; selects the key that must have signed the envelope.
    pub gateway: String,
    /// Idempotency key chosen by the gateway: a ULID or a UUIDv7, unique per gateway.
    pub event_id: String,
    /// When the gateway sent the event, Unix milliseconds.
    pub sent_at_ms: u64,
    /// The partition that owns the event's state: `gm_event/district/scene[/slot]` for
    /// narrative kinds, `region/station` for trades, `realm/zone/cell` for captures and breeds.
    pub partition: PartitionUid,
    /// What happened.
    pub kind: EventKind,
    /// The player who caused it.
    pub actor: String,
    /// Players present who should hear of it (the actor is implied).
    pub participants: Vec<String>,
    /// The actor's faction, for per-faction feeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faction: Option<String>,
    /// Kind-specific payload.
    pub payload: EventPayload,
}

/// The wire form, used only to refuse unknown fields and wrong types with serde's messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnvelope {
    v: u64,
    gateway: String,
    event_id: String,
    sent_at_ms: u64,
    partition: String,
    kind: EventKind,
    actor: String,
    participants: Vec<String>,
    #[serde(default)]
    faction: Option<String>,
    payload: Value,
    signature: String,
}

/// A received envelope: the typed fields, the signature and the exact bytes that were signed.
#[derive(Debug, Clone)]
pub struct ReceivedEnvelope {
    pub envelope: Envelope,
    /// The signature as sent (refused by [`Self::verify`] unless 64 lowercase hex characters).
    pub signature: String,
    /// JCS bytes of the received object minus `signature`.
    pub signed_bytes: Vec<u8>,
    /// JCS bytes of the received object minus `signature` and `sent_at_ms`: what the event
    /// *is*, whenever it was sent. A retry re-stamped with a later `sent_at_ms` (and signed
    /// again) has the same content, so intake treats it as the same event, not a conflict.
    pub content_bytes: Vec<u8>,
}

impl ReceivedEnvelope {
    /// Parses raw envelope bytes: size, JSON, version, fields, UIDs and payload, in that order,
    /// so the first failure is the most fundamental one.
    pub fn parse(raw: &[u8]) -> Result<Self> {
        if raw.len() > MAX_ENVELOPE_BYTES {
            return Err(DomainError::Oversized {
                size: raw.len(),
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        let mut object: Map<String, Value> = crate::json::parse_object(raw)?;
        match object.get("v") {
            Some(Value::Number(version)) if version.as_u64() == Some(ENVELOPE_VERSION) => {}
            Some(Value::Number(version)) => {
                return Err(DomainError::UnsupportedVersion(
                    version.as_u64().unwrap_or(0),
                ));
            }
            _ => {
                return Err(DomainError::InvalidField {
                    field: "v",
                    reason: "missing or not an integer".to_owned(),
                });
            }
        }
        let wire: WireEnvelope = serde_json::from_value(Value::Object(object.clone()))
            .map_err(|error| DomainError::Malformed(error.to_string()))?;
        object.remove("signature");
        let mut unsigned = Value::Object(object);
        let signed_bytes = canonical_bytes(&unsigned)?;
        if let Value::Object(fields) = &mut unsigned {
            fields.remove("sent_at_ms");
        }
        let content_bytes = canonical_bytes(&unsigned)?;
        let (envelope, signature) = Envelope::from_wire(wire)?;
        Ok(Self {
            envelope,
            signature,
            signed_bytes,
            content_bytes,
        })
    }

    /// Checks the signature against `key` in constant time. A signature that is not
    /// [canonically spelled](is_canonical_signature) does not match, whatever it decodes to.
    pub fn verify(&self, key: &[u8]) -> Result<()> {
        if !is_canonical_signature(&self.signature) {
            return Err(DomainError::BadSignature);
        }
        let expected = hex::decode(&self.signature).map_err(|_| DomainError::BadSignature)?;
        let mut mac = HmacSha256::new_from_slice(key).map_err(|_| DomainError::BadSignature)?;
        mac.update(&self.signed_bytes);
        mac.verify_slice(&expected)
            .map_err(|_| DomainError::BadSignature)
    }
}

impl Envelope {
    fn from_wire(wire: WireEnvelope) -> Result<(Self, String)> {
        validate_identifier("gateway", &wire.gateway)?;
        validate_event_id(&wire.event_id)?;
        let (min_depth, max_depth) = wire.kind.partition_depth();
        let partition = PartitionUid::parse_with_depth(&wire.partition, min_depth, max_depth)?;
        validate_identifier("actor", &wire.actor)?;
        if wire.participants.len() > MAX_PARTICIPANTS {
            return Err(DomainError::InvalidField {
                field: "participants",
                reason: format!("more than {MAX_PARTICIPANTS} participants"),
            });
        }
        for participant in &wire.participants {
            validate_identifier("participants", participant)?;
        }
        if let Some(faction) = &wire.faction {
            validate_identifier("faction", faction)?;
        }
        let payload = EventPayload::from_value(wire.kind, wire.payload)?;
        let envelope = Self {
            v: wire.v,
            gateway: wire.gateway,
            event_id: wire.event_id,
            sent_at_ms: wire.sent_at_ms,
            partition,
            kind: wire.kind,
            actor: wire.actor,
            participants: wire.participants,
            faction: wire.faction,
            payload,
        };
        Ok((envelope, wire.signature))
    }

    /// Signs the envelope with `key` and returns the JSON document a gateway posts.
    pub fn sign(&self, key: &[u8]) -> Result<String> {
        let mut value = serde_json::to_value(self)
            .map_err(|error| DomainError::Canonicalisation(error.to_string()))?;
        let signature = signature_hex(key, &canonical_bytes(&value)?)?;
        if let Value::Object(object) = &mut value {
            object.insert("signature".to_owned(), Value::String(signature));
        }
        serde_json::to_string(&value)
            .map_err(|error| DomainError::Canonicalisation(error.to_string()))
    }

    /// Everyone who should hear of the event: the actor, then participants, without repeats.
    pub fn audience(&self) -> Vec<String> {
        audience_of(&self.actor, &self.participants)
    }
}

/// Everyone who should hear of an event: `actor` first, then `participants`, without repeats.
pub fn audience_of(actor: &str, participants: &[String]) -> Vec<String> {
    let mut audience = Vec::with_capacity(participants.len() + 1);
    audience.push(actor.to_owned());
    for participant in participants {
        if !audience.contains(participant) {
            audience.push(participant.clone());
        }
    }
    audience
}

/// RFC 8785 canonical bytes of `value`.
pub fn canonical_bytes(value: &Value) -> Result<Vec<u8>> {
    serde_json_canonicalizer::to_vec(value)
        .map_err(|error| DomainError::Canonicalisation(error.to_string()))
}

/// Lowercase hex HMAC-SHA256 of `bytes` under `key`.
pub fn signature_hex(key: &[u8], bytes: &[u8]) -> Result<String> {
    let mut mac = HmacSha256::new_from_slice(key)
        .map_err(|error| DomainError::Canonicalisation(error.to_string()))?;
    mac.update(bytes);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Length of a signature: 32 bytes of HMAC-SHA256 as hex.
pub const SIGNATURE_HEX_CHARS: usize = 64;

/// True when `signature` is spelled the one way a signature may be: 64 lowercase hex
/// characters. `hex` would also decode upper case, but one signature must have exactly one
/// spelling (nothing downstream should have to ask whether two spellings are the same).
pub fn is_canonical_signature(signature: &str) -> bool {
    signature.len() == SIGNATURE_HEX_CHARS
        && signature
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Accepts a ULID (26 Crockford base32 characters) or a UUIDv7 (hyphenated).
pub fn validate_event_id(raw: &str) -> Result<()> {
    let valid = match raw.len() {
        26 => ulid::Ulid::from_string(raw).is_ok(),
        36 => uuid::Uuid::parse_str(raw).is_ok_and(|id| id.get_version_num() == 7),
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(DomainError::InvalidField {
            field: "event_id",
            reason: "must be a ULID or a UUIDv7".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            v: 1,
            gateway: "gw-1".into(),
            event_id: "01JD3Q7Z8X9Y0A1B2C3D4E5F6G".into(),
            sent_at_ms: 1_763_700_000_000,
            partition: PartitionUid::parse("gm-1/district-2/scene-3").unwrap(),
            kind: EventKind::Dialogue,
            actor: "p-1".into(),
            participants: vec!["p-2".into(), "p-1".into()],
            faction: Some("red".into()),
            payload: EventPayload::Dialogue(DialoguePayload {
                text: "Well met, traveller.".into(),
                to: None,
            }),
        }
    }

    #[test]
    fn signed_envelope_round_trips_and_verifies() {
        let signed = sample().sign(b"secret").unwrap();
        let received = ReceivedEnvelope::parse(signed.as_bytes()).unwrap();
        assert_eq!(received.envelope, sample());
        received.verify(b"secret").unwrap();
        assert_eq!(received.verify(b"other"), Err(DomainError::BadSignature));
        assert_eq!(
            sample().audience(),
            vec!["p-1".to_string(), "p-2".to_string()]
        );
    }

    #[test]
    fn signature_covers_the_canonical_form_not_the_byte_layout() {
        let signed = sample().sign(b"secret").unwrap();
        let value: Value = serde_json::from_str(&signed).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        ReceivedEnvelope::parse(pretty.as_bytes())
            .unwrap()
            .verify(b"secret")
            .unwrap();
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let signed = sample().sign(b"secret").unwrap();
        let tampered = signed.replace("Well met", "Well met!");
        let received = ReceivedEnvelope::parse(tampered.as_bytes()).unwrap();
        assert_eq!(received.verify(b"secret"), Err(DomainError::BadSignature));
    }

    #[test]
    fn refuses_unknown_fields_versions_sizes_and_bad_payloads() {
        let signed = sample().sign(b"k").unwrap();
        let mut value: Value = serde_json::from_str(&signed).unwrap();
        value["extra"] = Value::Bool(true);
        assert!(matches!(
            ReceivedEnvelope::parse(value.to_string().as_bytes()),
            Err(DomainError::Malformed(_))
        ));
        let mut value: Value = serde_json::from_str(&signed).unwrap();
        value["v"] = Value::from(2);
        assert_eq!(
            ReceivedEnvelope::parse(value.to_string().as_bytes()).unwrap_err(),
            DomainError::UnsupportedVersion(2)
        );
        let mut value: Value = serde_json::from_str(&signed).unwrap();
        value["payload"] = serde_json::json!({"text": "hi", "mood": "sly"});
        assert!(matches!(
            ReceivedEnvelope::parse(value.to_string().as_bytes()),
            Err(DomainError::InvalidField {
                field: "payload",
                ..
            })
        ));
        let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(
            ReceivedEnvelope::parse(&big),
            Err(DomainError::Oversized { .. })
        ));
        assert!(matches!(
            ReceivedEnvelope::parse(b"[1,2"),
            Err(DomainError::Malformed(_))
        ));
    }

    #[test]
    fn a_duplicate_member_is_malformed_even_when_signed_for_one_of_its_values() {
        // Signed for `p-1`, then a second `actor` slipped in: a last-wins parser would read
        // `p-9` under a valid signature.
        let signed = sample().sign(b"secret").unwrap();
        for (from, to) in [
            ("\"actor\":\"p-1\"", "\"actor\":\"p-1\",\"actor\":\"p-9\""),
            ("\"actor\":\"p-1\"", "\"actor\":\"p-9\",\"actor\":\"p-1\""),
            ("\"text\":", "\"text\":\"x\",\"text\":"),
        ] {
            assert!(signed.contains(from));
            let doubled = signed.replacen(from, to, 1);
            match ReceivedEnvelope::parse(doubled.as_bytes()) {
                Err(DomainError::Malformed(reason)) => {
                    assert!(reason.contains("duplicate member name"), "{reason}")
                }
                other => panic!("{doubled}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_signature_has_one_spelling_lowercase_hex() {
        let signed = sample().sign(b"secret").unwrap();
        let received = ReceivedEnvelope::parse(signed.as_bytes()).unwrap();
        assert!(is_canonical_signature(&received.signature));
        let mut upper = received.clone();
        upper.signature = received.signature.to_uppercase();
        assert!(!is_canonical_signature(&upper.signature));
        assert_eq!(upper.verify(b"secret"), Err(DomainError::BadSignature));
        let mut short = received;
        short.signature.pop();
        assert_eq!(short.verify(b"secret"), Err(DomainError::BadSignature));
    }

    #[test]
    fn control_characters_in_player_text_are_refused() {
        let mut envelope = sample();
        envelope.payload = EventPayload::Dialogue(DialoguePayload {
            text: "line one\nline two\ttabbed".into(),
            to: None,
        });
        ReceivedEnvelope::parse(envelope.sign(b"k").unwrap().as_bytes()).unwrap();
        for text in ["nul\0byte", "escape\u{1b}[31m", "c1\u{85}"] {
            envelope.payload = EventPayload::Dialogue(DialoguePayload {
                text: text.into(),
                to: None,
            });
            assert!(
                matches!(
                    ReceivedEnvelope::parse(envelope.sign(b"k").unwrap().as_bytes()),
                    Err(DomainError::InvalidField {
                        field: "payload.text",
                        ..
                    })
                ),
                "{text:?}"
            );
        }
    }

    fn world_sample(partition: &str, payload: EventPayload) -> Envelope {
        Envelope {
            partition: PartitionUid::parse(partition).unwrap(),
            kind: payload.kind(),
            payload,
            faction: None,
            participants: Vec::new(),
            ..sample()
        }
    }

    #[test]
    fn world_kinds_parse_with_their_own_partition_depth() {
        let trade = TradePayload {
            good: "ore".into(),
            side: TradeSide::Buy,
            quantity: 5,
        };
        let signed = world_sample("region-1/station-2", EventPayload::Trade(trade.clone()))
            .sign(b"k")
            .unwrap();
        let received = ReceivedEnvelope::parse(signed.as_bytes()).unwrap();
        assert_eq!(received.envelope.kind, EventKind::Trade);
        // A trade needs a `region/station` partition, a capture a `realm/zone/cell` one.
        for (partition, payload) in [
            (
                "region-1/station-2/extra",
                EventPayload::Trade(trade.clone()),
            ),
            ("region-1", EventPayload::Trade(trade)),
            (
                "realm/zone",
                EventPayload::Capture(CapturePayload {
                    creature: "realm/zone/cell~0~1".into(),
                }),
            ),
        ] {
            let signed = world_sample(partition, payload).sign(b"k").unwrap();
            assert!(
                matches!(
                    ReceivedEnvelope::parse(signed.as_bytes()),
                    Err(DomainError::InvalidUid { .. })
                ),
                "{partition}"
            );
        }
        // Narrative kinds keep their 3-4 rule.
        let mut narrative = sample();
        narrative.partition = PartitionUid::parse("region-1/station-2").unwrap();
        let signed = narrative.sign(b"k").unwrap();
        assert!(ReceivedEnvelope::parse(signed.as_bytes()).is_err());
        let breed = world_sample(
            "realm/zone/cell",
            EventPayload::Breed(BreedPayload {
                parent_a: "realm/zone/cell~0~1".into(),
                parent_b: "realm/zone/cell~0~2".into(),
            }),
        );
        let signed = breed.sign(b"k").unwrap();
        assert_eq!(
            ReceivedEnvelope::parse(signed.as_bytes()).unwrap().envelope,
            breed
        );
    }

    #[test]
    fn world_payloads_refuse_unknown_fields_and_bad_values() {
        for (kind, payload) in [
            (
                EventKind::Trade,
                serde_json::json!({"good": "ore", "side": "buy", "quantity": 1, "price": 3}),
            ),
            (
                EventKind::Trade,
                serde_json::json!({"good": "ore", "side": "steal", "quantity": 1}),
            ),
            (
                EventKind::Trade,
                serde_json::json!({"good": "ore", "side": "sell", "quantity": 0}),
            ),
            (
                EventKind::Trade,
                serde_json::json!({"good": "bad good", "side": "sell", "quantity": 1}),
            ),
            (EventKind::Capture, serde_json::json!({"creature": "a b"})),
            (
                EventKind::Capture,
                serde_json::json!({"creature": "x", "net": true}),
            ),
            (EventKind::Breed, serde_json::json!({"parent_a": "x"})),
        ] {
            assert!(
                EventPayload::from_value(kind, payload.clone()).is_err(),
                "{payload}"
            );
        }
    }

    #[test]
    fn event_ids_must_be_ulid_or_uuid_v7() {
        validate_event_id("01JD3Q7Z8X9Y0A1B2C3D4E5F6G").unwrap();
        validate_event_id(&uuid::Uuid::now_v7().to_string()).unwrap();
        assert!(validate_event_id(&uuid::Uuid::new_v4().to_string()).is_err());
        assert!(validate_event_id("not-an-id").is_err());
    }
}
