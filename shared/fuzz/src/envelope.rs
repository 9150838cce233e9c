//! `envelope`: `ReceivedEnvelope::parse` and `verify`, the path every gateway envelope takes
//! into intake.
//!
//! Properties: parsing and verifying never panic, and every refusal maps to a reason code; an
//! accepted envelope's signed bytes are canonical JSON without `signature` (and its content
//! bytes also without `sent_at_ms`); `verify` accepts exactly the lowercase hex HMAC of the
//! signed bytes; and the typed envelope, signed again, parses back to itself and verifies.

use worldfleet_domain::RejectReason;
use worldfleet_domain::envelope::{ReceivedEnvelope, signature_hex};
use worldfleet_domain::json::parse_object;

/// The key the target verifies and re-signs with.
const KEY: &[u8] = b"fuzz-gateway-key";

/// Parses `data` as an envelope and checks the properties above.
pub fn envelope(data: &[u8]) {
    let received = match ReceivedEnvelope::parse(data) {
        Ok(received) => received,
        Err(error) => {
            let reason = RejectReason::from(&error);
            assert!(!reason.code().is_empty());
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let signed = parse_object(&received.signed_bytes).expect("signed bytes are JSON");
    assert!(!signed.contains_key("signature"));
    let content = parse_object(&received.content_bytes).expect("content bytes are JSON");
    assert!(!content.contains_key("signature") && !content.contains_key("sent_at_ms"));

    let expected = signature_hex(KEY, &received.signed_bytes).expect("HMAC takes any key");
    assert_eq!(
        received.verify(KEY).is_ok(),
        received.signature == expected,
        "verify disagrees with the HMAC of the signed bytes"
    );

    let resigned = received
        .envelope
        .sign(KEY)
        .expect("a parsed envelope signs");
    let again = ReceivedEnvelope::parse(resigned.as_bytes())
        .unwrap_or_else(|error| panic!("a re-signed envelope is refused: {error}: {resigned}"));
    assert_eq!(again.envelope, received.envelope, "{resigned}");
    again.verify(KEY).expect("a re-signed envelope verifies");
}
