//! The pure half of intake: is this envelope acceptable, and if not, why not?
//!
//! Checks run from the cheapest and most fundamental to the most specific: size, JSON shape
//! and fields (unknown fields refused), UIDs, gateway, signature (constant time), clock window.
//! Replays and rate limits need state, so the shell decides those.

use std::time::Duration;

use sha2::{Digest, Sha256};
use worldfleet_domain::envelope::{ReceivedEnvelope, SIGNATURE_HEX_CHARS, is_canonical_signature};
use worldfleet_domain::{DomainError, Envelope, RejectReason};

use crate::config::GatewayKeys;

/// An envelope that passed every stateless check.
#[derive(Debug, Clone)]
pub struct Validated {
    pub envelope: Envelope,
    /// SHA-256 of the canonical bytes minus `signature` and `sent_at_ms`: two copies of one
    /// event hash alike, even when a retry re-stamped and re-signed it.
    pub content_hash: Vec<u8>,
}

/// Why an envelope was refused, with what is known about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RejectReason,
    /// A sentence the gateway's operator can act on.
    pub detail: String,
    /// The claimed gateway, when it could be read and is a valid identifier.
    pub gateway: Option<String>,
    /// The claimed event id, when it could be read.
    pub event_id: Option<String>,
}

impl Refusal {
    fn from_domain(error: &DomainError, raw: &[u8]) -> Self {
        let (gateway, event_id) = sender_hints(raw);
        Self {
            reason: RejectReason::from(error),
            detail: error.to_string(),
            gateway,
            event_id,
        }
    }
}

/// Best-effort gateway and event id from an envelope that failed to parse, for the rejection row.
pub(crate) fn sender_hints(raw: &[u8]) -> (Option<String>, Option<String>) {
    if raw.len() > worldfleet_domain::MAX_ENVELOPE_BYTES {
        return (None, None);
    }
    // The strict reader: a body with a repeated member name names no sender (which of its
    // `gateway`s would it be?), so its row goes under `gateway#unknown`, found by its bytes.
    let Ok(object) = worldfleet_domain::json::parse_object(raw) else {
        return (None, None);
    };
    let field = |name: &str| {
        object
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|value| {
                worldfleet_domain::uid::validate_identifier("hint", value).is_ok()
                    && value.len() <= 64
            })
            .map(str::to_owned)
    };
    (field("gateway"), field("event_id"))
}

/// Runs every stateless check on `raw` at time `now_ms`.
pub fn check(
    raw: &[u8],
    gateways: &GatewayKeys,
    now_ms: u64,
    clock_window: Duration,
) -> Result<Validated, Refusal> {
    let received =
        ReceivedEnvelope::parse(raw).map_err(|error| Refusal::from_domain(&error, raw))?;
    let envelope = &received.envelope;
    let refuse = |reason, detail: String| Refusal {
        reason,
        detail,
        gateway: Some(envelope.gateway.clone()),
        event_id: Some(envelope.event_id.clone()),
    };
    // Any active key of the gateway: during a rotation it has the new one and the old one.
    let keys = gateways.current();
    let candidates = keys.keys(&envelope.gateway);
    if candidates.is_empty() {
        return Err(refuse(
            RejectReason::UnknownGateway,
            format!("gateway {:?} has no key configured", envelope.gateway),
        ));
    }
    if !is_canonical_signature(&received.signature) {
        return Err(refuse(
            RejectReason::BadSignature,
            format!(
                "the signature must be {SIGNATURE_HEX_CHARS} lowercase hex characters (one \
                 signature, one spelling); this one is {} characters{}",
                received.signature.chars().count(),
                if received
                    .signature
                    .bytes()
                    .any(|byte| byte.is_ascii_uppercase())
                {
                    " with upper case"
                } else {
                    ""
                }
            ),
        ));
    }
    if !candidates
        .iter()
        .any(|key| received.verify(key.as_bytes()).is_ok())
    {
        return Err(refuse(
            RejectReason::BadSignature,
            "HMAC-SHA256 over the JCS form of the envelope (without `signature`) does not match any active key of the gateway".into(),
        ));
    }
    let skew_ms = now_ms.abs_diff(envelope.sent_at_ms);
    if skew_ms > clock_window.as_millis() as u64 {
        return Err(refuse(
            RejectReason::ClockSkew,
            format!(
                "sent_at_ms is {skew_ms} ms from intake's clock; the window is ±{} s (check the gateway's clock)",
                clock_window.as_secs()
            ),
        ));
    }
    let content_hash = Sha256::digest(&received.content_bytes).to_vec();
    Ok(Validated {
        envelope: received.envelope,
        content_hash,
    })
}

#[cfg(test)]
mod tests {
    use worldfleet_domain::envelope::DialoguePayload;
    use worldfleet_domain::{EventKind, EventPayload, PartitionUid};

    use super::*;

    const KEY: &[u8] = b"0123456789abcdef";
    const NOW: u64 = 1_763_700_000_000;

    fn keys() -> GatewayKeys {
        let mut keys = GatewayKeys::default();
        keys.insert("gw-1", KEY.to_vec());
        keys
    }

    fn envelope(sent_at_ms: u64) -> Envelope {
        Envelope {
            v: 1,
            gateway: "gw-1".into(),
            event_id: "01JD3Q7Z8X9Y0A1B2C3D4E5F6G".into(),
            sent_at_ms,
            partition: PartitionUid::parse("gm-1/district-2/scene-3").unwrap(),
            kind: EventKind::Dialogue,
            actor: "p-1".into(),
            participants: vec!["p-2".into()],
            faction: None,
            payload: EventPayload::Dialogue(DialoguePayload {
                text: "hello".into(),
                to: None,
            }),
        }
    }

    fn reason(raw: &[u8]) -> RejectReason {
        check(raw, &keys(), NOW, Duration::from_secs(300))
            .unwrap_err()
            .reason
    }

    #[test]
    fn accepts_a_signed_envelope_in_the_window() {
        let raw = envelope(NOW - 299_000).sign(KEY).unwrap();
        let validated = check(raw.as_bytes(), &keys(), NOW, Duration::from_secs(300)).unwrap();
        assert_eq!(validated.envelope.actor, "p-1");
        assert_eq!(validated.content_hash.len(), 32);
    }

    #[test]
    fn refuses_each_bad_input_with_its_reason() {
        assert_eq!(
            reason(
                envelope(NOW)
                    .sign(b"wrong-key-wrong-key")
                    .unwrap()
                    .as_bytes()
            ),
            RejectReason::BadSignature
        );
        assert_eq!(
            reason(envelope(NOW - 301_000).sign(KEY).unwrap().as_bytes()),
            RejectReason::ClockSkew
        );
        assert_eq!(
            reason(envelope(NOW + 301_000).sign(KEY).unwrap().as_bytes()),
            RejectReason::ClockSkew
        );
        let mut unknown = envelope(NOW);
        unknown.gateway = "gw-9".into();
        let refusal = check(
            unknown.sign(KEY).unwrap().as_bytes(),
            &keys(),
            NOW,
            Duration::from_secs(300),
        )
        .unwrap_err();
        assert_eq!(refusal.reason, RejectReason::UnknownGateway);
        assert_eq!(refusal.gateway.as_deref(), Some("gw-9"));
        assert_eq!(reason(b"{\"v\":1"), RejectReason::Malformed);
        assert_eq!(reason(&vec![b'x'; 70_000]), RejectReason::Oversized);
        let raw = envelope(NOW)
            .sign(KEY)
            .unwrap()
            .replace("gm-1/district-2/scene-3", "gm 1/d/s");
        assert_eq!(reason(raw.as_bytes()), RejectReason::BadUid);
        let raw = envelope(NOW)
            .sign(KEY)
            .unwrap()
            .replace("\"v\":1", "\"v\":1,\"mood\":\"x\"");
        let refusal = check(raw.as_bytes(), &keys(), NOW, Duration::from_secs(300)).unwrap_err();
        assert_eq!(refusal.reason, RejectReason::Malformed);
        assert_eq!(
            refusal.gateway.as_deref(),
            Some("gw-1"),
            "hints survive a schema failure"
        );
        let signed = envelope(NOW).sign(KEY).unwrap();
        let upper = signed.replace(
            &signature_of(&signed),
            &signature_of(&signed).to_uppercase(),
        );
        let refusal = check(upper.as_bytes(), &keys(), NOW, Duration::from_secs(300)).unwrap_err();
        assert_eq!(refusal.reason, RejectReason::BadSignature);
        assert!(refusal.detail.contains("lowercase"), "{}", refusal.detail);
        let doubled = signed.replacen("\"gateway\":", "\"gateway\":\"gw-1\",\"gateway\":", 1);
        let refusal =
            check(doubled.as_bytes(), &keys(), NOW, Duration::from_secs(300)).unwrap_err();
        assert_eq!(refusal.reason, RejectReason::Malformed);
        assert_eq!(
            (refusal.gateway, refusal.event_id),
            (None, None),
            "a body with a repeated member names no sender"
        );
    }

    fn signature_of(raw: &str) -> String {
        serde_json::from_str::<serde_json::Value>(raw).unwrap()["signature"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}
