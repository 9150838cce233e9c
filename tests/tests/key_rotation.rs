//! Gateway key rotation end to end: a gateway signs with its old key, the keys' secret gets the
//! new key beside the old one, the gateway signs with the new key (the old one still works),
//! the old key is retired — and an envelope signed with it is then refused as
//! `bad_signature`. A value the secret is set to that does not parse keeps the last good keys.
//! Every log line written meanwhile (at debug, every crate) and every refusal sentence and
//! error is then searched for the keys and the signatures, in either case: none may appear.
//!
//! The same rotation runs twice: over the embedded store with keys from a source the test
//! sets (always), and on the local AWS emulators (`WORLDFLEET_LOCAL_AWS=1`, set by
//! `scripts/test-aws.sh`) with the keys in a LocalStack Secrets Manager secret, loaded as the
//! intake Lambda loads them (`worldfleet_lambda::load_gateway_keys`, then the stage registry)
//! and refreshed on their schedule (`WORLDFLEET_GATEWAY_KEYS_REFRESH_SECS=1`), over
//! DynamoDB Local's ledger and rejections tables.

mod local_aws;

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use worldfleet_domain::envelope::ReceivedEnvelope;
use worldfleet_domain::names::{
    ALL_TABLES, CLASSIFY_QUEUE, ECOLOGY_INPUT_QUEUE, LEDGER_TABLE, MARKET_QUEUE, REJECTIONS_TABLE,
};
use worldfleet_domain::{Envelope, RejectReason};
use worldfleet_embedded::testing::TempStore;
use worldfleet_intake::rejections::lookup_event;
use worldfleet_intake::{GatewayKeys, Intake, IntakeConfig, KeySource};
use worldfleet_kit::{Env, StageContext, StageHandler};
use worldfleet_ports::{Clock, Key, ReceivedMessage, SystemClock};
use worldfleet_stages::{StageSettings, build_stage};

const GATEWAY: &str = "gw-rot";
const OLD: &str = "6f6c642d6b65792d6f6c642d6b65792d6f6c642d6b65792d6f6c642d6b657931";
const NEW: &str = "6e65772d6b65792d6e65772d6b65792d6e65772d6b65792d6e65772d6b657932";
/// The dialogue sample's partition.
const PARTITION: &str = "gm-0001/district-003/scene-012";

/// Everything every subscriber in this test binary wrote.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || Capture(Arc::clone(&writer)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buffer
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `n`th envelope of the test (the shipped dialogue sample as gateway `gw-rot` sends it
/// now), signed with `key_hex`, and its signature.
fn signed(n: u32, key_hex: &str) -> (Envelope, String, String) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/samples/dialogue.json"
    );
    let sample = std::fs::read(path).unwrap();
    let mut envelope = ReceivedEnvelope::parse(&sample).unwrap().envelope;
    envelope.gateway = GATEWAY.into();
    envelope.event_id = format!("01JD3Q7Z8X9Y0A1B2C3D4E5F{n:02}");
    envelope.sent_at_ms = SystemClock.now_ms();
    let body = envelope.sign(&hex::decode(key_hex).unwrap()).unwrap();
    let signature = serde_json::from_str::<serde_json::Value>(&body).unwrap()["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    (envelope, body, signature)
}

/// What intake made of one envelope.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Refused(Option<RejectReason>),
}

struct Rotation<'a> {
    intake: &'a dyn StageHandler,
    context: &'a StageContext,
    /// How long a new secret value takes to be read (the refresh interval and a margin).
    settle: Duration,
    sent: u32,
    signatures: Vec<String>,
    details: Vec<String>,
}

impl Rotation<'_> {
    /// Signs envelope number `sent + 1` with `key_hex`, hands it to intake and reads back what
    /// happened to it (ledger entry, or rejection row).
    async fn post(&mut self, key_hex: &str) -> Outcome {
        self.sent += 1;
        let (envelope, body, signature) = signed(self.sent, key_hex);
        self.signatures.push(signature);
        let record = ReceivedMessage {
            message_id: format!("message-{}", self.sent),
            receipt_handle: format!("receipt-{}", self.sent),
            body,
            group_id: Some(PARTITION.into()),
            receive_count: 1,
            sent_at_ms: envelope.sent_at_ms,
        };
        let report = self
            .intake
            .handle_batch(&[record], Duration::from_secs(10))
            .await;
        assert!(report.failed_message_ids.is_empty(), "{report:?}");
        let ledger = self
            .context
            .table
            .get(
                LEDGER_TABLE,
                &Key::new(PARTITION, envelope.event_id.as_str()),
            )
            .await
            .unwrap();
        let rows = lookup_event(
            self.context.table.as_ref(),
            REJECTIONS_TABLE,
            GATEWAY,
            &envelope.event_id,
        )
        .await
        .unwrap();
        self.details
            .extend(rows.iter().map(|row| row.detail.clone()));
        match (ledger, rows.first()) {
            (Some(_), None) => Outcome::Accepted,
            (None, Some(row)) => Outcome::Refused(row.reason),
            other => panic!(
                "envelope {} is neither accepted nor refused: {other:?}",
                self.sent
            ),
        }
    }

    /// Runs the rotation; `set_keys` writes the keys' secret, `errors` collects what the
    /// caller saw fail.
    async fn run<F, Fut>(&mut self, set_keys: F, errors: &mut Vec<String>)
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        assert_eq!(
            self.post(OLD).await,
            Outcome::Accepted,
            "before the rotation"
        );
        assert_eq!(
            self.post(NEW).await,
            Outcome::Refused(Some(RejectReason::BadSignature)),
            "the new key before it is added"
        );

        // Rotate: the new key first, the old one still active.
        set_keys(format!(r#"{{"{GATEWAY}": ["{NEW}", "{OLD}"]}}"#))
            .await
            .unwrap();
        tokio::time::sleep(self.settle).await;
        assert_eq!(
            self.post(NEW).await,
            Outcome::Accepted,
            "new key during the rotation"
        );
        assert_eq!(
            self.post(OLD).await,
            Outcome::Accepted,
            "old key during the rotation"
        );

        // Retire the old key (the text form, to show both forms read alike).
        set_keys(format!("{GATEWAY}={NEW}")).await.unwrap();
        tokio::time::sleep(self.settle).await;
        assert_eq!(
            self.post(OLD).await,
            Outcome::Refused(Some(RejectReason::BadSignature)),
            "the retired key"
        );
        assert_eq!(
            self.post(NEW).await,
            Outcome::Accepted,
            "new key after the rotation"
        );

        // A value that does not parse (a bare key, pasted without its gateway): the last good
        // keys stay, and the warning says so without the value.
        set_keys(OLD.to_owned()).await.unwrap();
        tokio::time::sleep(self.settle).await;
        assert_eq!(
            self.post(NEW).await,
            Outcome::Accepted,
            "after a bad secret value"
        );
        assert_eq!(
            self.post(OLD).await,
            Outcome::Refused(Some(RejectReason::BadSignature)),
            "a bad secret value brings no key back"
        );
        errors.extend(self.details.iter().cloned());
    }

    /// Fails when any key or signature appears in the logs or in `errors`.
    fn assert_nothing_leaked(&self, errors: &[String]) {
        let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
        assert!(
            logs.contains("gateway key refresh failed; keeping the last good keys"),
            "the failed refresh was not logged:\n{logs}"
        );
        let secrets: Vec<String> = [OLD.to_owned(), NEW.to_owned()]
            .into_iter()
            .chain(self.signatures.iter().cloned())
            .flat_map(|secret| [secret.to_lowercase(), secret.to_uppercase()])
            .collect();
        let haystacks = std::iter::once(("logs", logs.as_str()))
            .chain(errors.iter().map(|error| ("an error", error.as_str())));
        for (what, text) in haystacks {
            for secret in &secrets {
                // A 16-hex-digit run is enough to count as a leak.
                for start in (0..secret.len() - 16).step_by(8) {
                    let piece = &secret[start..start + 16];
                    assert!(
                        !text.contains(piece),
                        "{what} holds part of a key or signature ({piece}):\n{text}"
                    );
                }
            }
        }
    }
}

/// A key source the embedded run sets by hand.
struct Manual(Mutex<String>);

#[async_trait::async_trait]
impl KeySource for Manual {
    fn describe(&self) -> String {
        "the test's key source".into()
    }

    async fn fetch(&self) -> Result<String, String> {
        Ok(self.0.lock().unwrap().clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_and_a_retired_key_is_refused_embedded() {
    logs();
    let store = TempStore::open(Arc::new(SystemClock));
    let context = StageContext::new(store.queue(), store.table(), Arc::clone(&store.clock));
    worldfleet_kit::testing::declare(
        &context,
        &ALL_TABLES,
        &[CLASSIFY_QUEUE, MARKET_QUEUE, ECOLOGY_INPUT_QUEUE],
    )
    .await;
    let source = Arc::new(Manual(Mutex::new(format!("{GATEWAY}={OLD}"))));
    let keys = GatewayKeys::load(source.clone(), Duration::ZERO)
        .await
        .unwrap();
    let intake = Intake::new(context.clone(), IntakeConfig::new(keys));
    let mut rotation = Rotation {
        intake: &intake,
        context: &context,
        settle: Duration::ZERO,
        sent: 0,
        signatures: Vec::new(),
        details: Vec::new(),
    };
    let mut errors = Vec::new();
    rotation
        .run(
            |value| {
                *source.0.lock().unwrap() = value;
                async { Ok(()) }
            },
            &mut errors,
        )
        .await;
    // The start-up error of a source whose first value is unusable.
    *source.0.lock().unwrap() = format!("{GATEWAY}={OLD}|{NEW}|0011");
    let error = GatewayKeys::load(source, Duration::ZERO).await.unwrap_err();
    errors.push(error.to_string());
    rotation.assert_nothing_leaked(&errors);
}

/// The settings of an intake whose keys are in secret `arn`, read again every second.
fn secret_settings(arn: &str) -> StageSettings {
    let lookup = |name: &str| match name {
        "WORLDFLEET_GATEWAY_KEYS_SECRET_ARN" => Some(arn.to_owned()),
        "WORLDFLEET_GATEWAY_KEYS_REFRESH_SECS" => Some("1".to_owned()),
        _ => None,
    };
    StageSettings::from_vars(&Env::from_lookup(&lookup)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_through_secrets_manager_and_a_retired_key_is_refused() {
    if !local_aws::enabled("the local stack running with Secrets Manager (scripts/test-aws.sh)") {
        return;
    }
    logs();
    let stack = local_aws::deploy("keys").await;
    let config = stack.settings.sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let created = secrets
        .create_secret()
        .name(format!("{}-gateway-keys", stack.name))
        .secret_string(format!(r#"{{"{GATEWAY}": "{OLD}"}}"#))
        .send()
        .await
        .expect("create the keys' secret in LocalStack");
    let arn = created.arn().expect("the secret's ARN").to_owned();

    // Intake as its Lambda builds it: the secret's ARN in the environment, the keys loaded
    // from it, the stage from the registry.
    let mut settings = secret_settings(&arn);
    let mut errors = Vec::new();
    let context = StageContext::new(
        stack.sqs.clone(),
        stack.dynamo.clone(),
        Arc::new(SystemClock),
    );
    let unloaded = build_stage("intake", &context, &settings).err().unwrap();
    errors.push(unloaded.to_string());
    worldfleet_lambda::load_gateway_keys(&mut settings)
        .await
        .expect("load the keys from the secret");
    let built = build_stage("intake", &context, &settings).unwrap();
    let intake = built.handler().expect("intake has a handler");
    assert!(intake.describe().contains(&arn), "{}", intake.describe());

    let mut rotation = Rotation {
        intake: intake.as_ref(),
        context: &context,
        settle: Duration::from_millis(1_300),
        sent: 0,
        signatures: Vec::new(),
        details: Vec::new(),
    };
    let put = |value: String| {
        let secrets = secrets.clone();
        let arn = arn.clone();
        async move {
            secrets
                .put_secret_value()
                .secret_id(arn)
                .secret_string(value)
                .send()
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        }
    };
    rotation.run(put, &mut errors).await;

    // A secret that cannot be read stops start-up, saying which and why, not what it holds.
    let mut settings = secret_settings(&arn.replace("-gateway-keys", "-no-such-keys"));
    let error = worldfleet_lambda::load_gateway_keys(&mut settings)
        .await
        .unwrap_err();
    let error = format!("{error:#}");
    assert!(error.contains("no-such-keys"), "{error}");
    errors.push(error);
    rotation.assert_nothing_leaked(&errors);
    let _ = secrets
        .delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await;
}
