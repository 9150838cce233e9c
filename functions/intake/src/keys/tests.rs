//! Parsing both forms, redaction of every printable form, and refresh from a source.

use std::sync::Mutex;

use super::*;

const OLD: &str = "00112233445566778899aabbccddeeff";
const NEW: &str = "ffeeddccbbaa99887766554433221100";

fn key(hex_key: &str) -> GatewayKey {
    GatewayKey::new(hex::decode(hex_key).unwrap())
}

#[test]
fn text_and_json_give_the_same_keys() {
    let text = KeySet::parse(&format!(" gw-1={NEW}|{OLD} , gw-2={OLD} ")).unwrap();
    let json = KeySet::parse(&format!(
        r#"{{"gw-1": ["{NEW}", "{OLD}"], "gw-2": "{OLD}"}}"#
    ))
    .unwrap();
    assert_eq!(text, json);
    assert_eq!(text.keys("gw-1"), [key(NEW), key(OLD)]);
    assert_eq!(text.keys("gw-2"), [key(OLD)]);
    assert!(text.keys("gw-3").is_empty());
    assert_eq!(text.gateways().collect::<Vec<_>>(), ["gw-1", "gw-2"]);
    assert!(KeySet::parse("").unwrap().is_empty());
    assert!(KeySet::parse("{}").unwrap().is_empty());
}

#[test]
fn bad_keys_are_refused_without_being_quoted() {
    let short = "0011223344";
    let cases = [
        // A bare key pasted without its gateway.
        OLD.to_owned(),
        format!("gw-1={OLD}|{short}"),
        format!("gw-1={OLD}|zz{OLD}"),
        format!("gw-1={OLD},gw-1={NEW}"),
        format!("gw-1={OLD}|{OLD}|{OLD}|{OLD}|{NEW}"),
        "gw-1=".to_owned(),
        format!("={OLD}"),
        format!(r#"{{"gw-1": ["{OLD}", 12345678901234567890]}}"#),
        format!(r#"{{"gw-1": {{"k": "{OLD}"}}}}"#),
        format!(r#"{{"gw-1": "{OLD}" "#),
        format!(r#"["{OLD}"]"#),
        r#"{"gw-1": []}"#.to_owned(),
    ];
    for spec in cases {
        let error = KeySet::parse(&spec).expect_err(&spec).to_string();
        for secret in [OLD, NEW, short, "12345678901234567890"] {
            assert!(!error.contains(secret), "{spec:?} → {error}");
        }
    }
}

#[test]
fn printed_forms_name_gateways_never_keys() {
    let keys = GatewayKeys::parse(&format!("gw-1={NEW}|{OLD}")).unwrap();
    let printed = [
        format!("{keys:?}"),
        format!("{:?}", keys.current()),
        format!("{:?}", keys.keys_of("gw-1")),
        format!("{keys:#?}"),
    ];
    assert!(printed[0].contains("gw-1") && printed[1].contains("gw-1"));
    assert!(printed[2].contains("redacted, 16 bytes"), "{}", printed[2]);
    for text in printed {
        for secret in [OLD, NEW] {
            assert!(!text.contains(secret), "{text}");
            assert!(
                !text.to_uppercase().contains(&secret.to_uppercase()),
                "{text}"
            );
        }
        // Nor the bytes as a list of numbers.
        assert!(!text.contains("255, 238"), "{text}");
    }
}

/// A source whose value the test sets.
struct Manual(Mutex<Result<String, String>>);

impl Manual {
    fn new(value: &str) -> Arc<Self> {
        Arc::new(Self(Mutex::new(Ok(value.to_owned()))))
    }

    fn set(&self, value: Result<&str, &str>) {
        *self.0.lock().unwrap() = value.map(str::to_owned).map_err(str::to_owned);
    }
}

#[async_trait]
impl KeySource for Manual {
    fn describe(&self) -> String {
        "the test's source".into()
    }

    async fn fetch(&self) -> std::result::Result<String, String> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn refresh_swaps_good_keys_and_keeps_them_through_failures() {
    let source = Manual::new(&format!("gw-1={OLD}"));
    let keys = GatewayKeys::load(source.clone(), Duration::ZERO)
        .await
        .unwrap();
    let shared = keys.clone();
    assert_eq!(keys.keys_of("gw-1"), [key(OLD)]);
    assert!(keys.source().is_some());

    source.set(Ok(&format!(r#"{{"gw-1": ["{NEW}", "{OLD}"]}}"#)));
    keys.refresh_if_due().await;
    assert_eq!(
        shared.keys_of("gw-1"),
        [key(NEW), key(OLD)],
        "clones see the refresh"
    );

    // Unreadable, unparsable or empty: the last good keys stay.
    for bad in [Err("AccessDenied"), Ok(OLD), Ok("")] {
        source.set(bad);
        let error = keys.refresh_now().await.unwrap_err().to_string();
        assert!(error.contains("the test's source"), "{error}");
        assert!(!error.contains(OLD), "{error}");
        assert_eq!(keys.keys_of("gw-1"), [key(NEW), key(OLD)]);
    }

    source.set(Ok(&format!("gw-1={NEW}")));
    keys.refresh_if_due().await;
    assert_eq!(keys.keys_of("gw-1"), [key(NEW)]);
}

#[tokio::test]
async fn refresh_waits_for_its_interval_and_a_first_read_must_succeed() {
    let source = Manual::new(&format!("gw-1={OLD}"));
    let keys = GatewayKeys::load(source.clone(), Duration::from_secs(3600))
        .await
        .unwrap();
    source.set(Ok(&format!("gw-1={NEW}")));
    keys.refresh_if_due().await;
    assert_eq!(keys.keys_of("gw-1"), [key(OLD)], "not due for an hour");
    keys.refresh_now().await.unwrap();
    assert_eq!(keys.keys_of("gw-1"), [key(NEW)]);

    source.set(Err("ResourceNotFoundException"));
    let error = GatewayKeys::load(source.clone(), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("ResourceNotFoundException"),
        "{error}"
    );
    source.set(Ok("{}"));
    let error = GatewayKeys::load(source, Duration::ZERO).await.unwrap_err();
    assert!(error.to_string().contains("names no gateway"), "{error}");

    // Fixed keys have nothing to refresh.
    let fixed = GatewayKeys::parse(&format!("gw-1={OLD}")).unwrap();
    fixed.refresh_if_due().await;
    fixed.refresh_now().await.unwrap();
    assert!(fixed.source().is_none());
}

#[test]
fn an_envelope_verifies_under_any_active_key_of_its_gateway() {
    use worldfleet_domain::RejectReason;
    use worldfleet_domain::envelope::ReceivedEnvelope;

    // The shipped dialogue sample, posted by gw-1 and signed again under each key.
    let sample = include_str!("../../../../events/samples/dialogue.json");
    let mut envelope = ReceivedEnvelope::parse(sample.as_bytes()).unwrap().envelope;
    envelope.gateway = "gw-1".into();
    let now = envelope.sent_at_ms;
    let signed_old = envelope.sign(&hex::decode(OLD).unwrap()).unwrap();
    let signed_new = envelope.sign(&hex::decode(NEW).unwrap()).unwrap();
    let check = |raw: &str, keys: &GatewayKeys| {
        crate::validate::check(raw.as_bytes(), keys, now, Duration::from_secs(300))
            .map(|_| ())
            .map_err(|refusal| refusal.reason)
    };
    let old_only = GatewayKeys::parse(&format!("gw-1={OLD}")).unwrap();
    let rotating = GatewayKeys::parse(&format!("gw-1={NEW}|{OLD}")).unwrap();
    let retired = GatewayKeys::parse(&format!("gw-1={NEW}")).unwrap();
    assert_eq!(check(&signed_old, &old_only), Ok(()));
    assert_eq!(
        check(&signed_new, &old_only),
        Err(RejectReason::BadSignature)
    );
    assert_eq!(check(&signed_old, &rotating), Ok(()));
    assert_eq!(check(&signed_new, &rotating), Ok(()));
    assert_eq!(
        check(&signed_old, &retired),
        Err(RejectReason::BadSignature)
    );
    assert_eq!(check(&signed_new, &retired), Ok(()));
    let refusal = crate::validate::check(
        signed_old.as_bytes(),
        &retired,
        now,
        Duration::from_secs(300),
    )
    .unwrap_err();
    let signature = serde_json::from_str::<serde_json::Value>(&signed_old).unwrap()["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    for secret in [OLD, NEW, signature.as_str()] {
        assert!(!refusal.detail.contains(secret), "{}", refusal.detail);
        assert!(!format!("{refusal:?}").contains(secret));
    }
}
