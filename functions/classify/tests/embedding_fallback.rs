//! The embedding classifier against a real local HTTP server that plays the inference pool:
//! healthy, slow, failing. Slow and failing pools fall back to the rules; a failing pool opens
//! the circuit so later events do not even try; decisions stay made once per event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use worldfleet_classify::embedding::{EmbeddingSettings, HttpEmbedderConfig};
use worldfleet_classify::eval::dialogue_event;
use worldfleet_classify::{Classifier, Classify, EmbeddingClassifier, HttpEmbedder, Prototypes};
use worldfleet_domain::names::{ALL_TABLES, CLASSIFY_QUEUE, COMPOSE_QUEUE};
use worldfleet_domain::{ComposeRequest, Intent};
use worldfleet_embedded::testing::TempStore;
use worldfleet_kit::testing::declare;
use worldfleet_kit::{BreakerConfig, BreakerState, CircuitBreaker, StageContext, StageHandler};
use worldfleet_ports::{Clock, ManualClock, ReceiveRequest, ReceivedMessage};

const HEALTHY: u8 = 0;
const SLOW: u8 = 1;
const FAILING: u8 = 2;

/// Words the fake model "understands": one dimension each.
const VOCABULARY: [&str; 3] = ["menace", "salve", "chatter"];

#[derive(Default)]
struct FakePool {
    mode: AtomicU8,
    requests: AtomicUsize,
}

async fn embeddings(
    State(pool): State<Arc<FakePool>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    pool.requests.fetch_add(1, Ordering::SeqCst);
    match pool.mode.load(Ordering::SeqCst) {
        SLOW => tokio::time::sleep(Duration::from_secs(3)).await,
        FAILING => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": {"message": "model thread stopped"}})),
            );
        }
        _ => {}
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(texts) => texts
            .iter()
            .filter_map(|text| text.as_str().map(str::to_owned))
            .collect(),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": "bad input"}})),
            );
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let lower = text.to_lowercase();
            let embedding: Vec<f32> = VOCABULARY
                .iter()
                .map(|word| if lower.contains(word) { 1.0 } else { 0.05 })
                .collect();
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    (
        StatusCode::OK,
        Json(json!({"object": "list", "data": data, "model": "fake"})),
    )
}

async fn start_pool() -> (Arc<FakePool>, String) {
    let pool = Arc::new(FakePool::default());
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .with_state(Arc::clone(&pool));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (pool, format!("http://{address}"))
}

fn classifier(url: &str, clock: Arc<dyn Clock>) -> (Arc<EmbeddingClassifier>, CircuitBreaker) {
    let breaker = CircuitBreaker::new(
        BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(30),
        },
        clock,
    );
    let embedder = HttpEmbedder::new(
        HttpEmbedderConfig {
            base_url: url.to_owned(),
            model: "fake".to_owned(),
            timeout: Duration::from_millis(200),
        },
        breaker.clone(),
    )
    .unwrap();
    let prototypes = Prototypes::from_json(
        r#"{"threat": ["a menace"], "greeting": ["salve, friend"], "social": ["idle chatter"]}"#,
    )
    .unwrap();
    let classifier =
        EmbeddingClassifier::new(Arc::new(embedder), prototypes, EmbeddingSettings::default());
    (Arc::new(classifier), breaker)
}

#[tokio::test]
async fn healthy_pool_decides_by_similarity() {
    let (_pool, url) = start_pool().await;
    let (classifier, _) = classifier(&url, Arc::new(ManualClock::new(0)));
    // No rules keyword: the rules read this as social.
    let event = dialogue_event("You are a menace to this town");
    let decided = classifier.classify(&event).await;
    assert_eq!(decided.classifier, "embeddings");
    assert_eq!(decided.intent, Intent::Threat);
    assert_eq!(worldfleet_classify::classify(&event).intent, Intent::Social);
    assert_eq!(
        classifier.classify(&dialogue_event("Salve!")).await.intent,
        Intent::Greeting
    );
}

#[tokio::test]
async fn slow_pool_falls_back_to_rules_within_the_deadline() {
    let (pool, url) = start_pool().await;
    let (classifier, _) = classifier(&url, Arc::new(ManualClock::new(0)));
    pool.mode.store(SLOW, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let decided = classifier
        .classify(&dialogue_event("You are a menace, I will burn it all"))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(decided.classifier, "rules");
    assert_eq!(
        decided.intent,
        Intent::Threat,
        "the rules still read the keyword"
    );
}

#[tokio::test]
async fn failing_pool_opens_the_circuit_and_rules_decide_without_calling_it() {
    let (pool, url) = start_pool().await;
    let clock = ManualClock::new(0);
    let (classifier, breaker) = classifier(&url, Arc::new(clock.clone()));
    pool.mode.store(FAILING, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(
            classifier
                .classify(&dialogue_event("a menace"))
                .await
                .classifier,
            "rules"
        );
    }
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    let calls = pool.requests.load(Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(
            classifier
                .classify(&dialogue_event("a menace"))
                .await
                .classifier,
            "rules"
        );
    }
    assert_eq!(
        pool.requests.load(Ordering::SeqCst),
        calls,
        "an open circuit does not call the pool"
    );
    // The pool recovers; after the open time one probe goes through and closes the circuit.
    pool.mode.store(HEALTHY, Ordering::SeqCst);
    clock.advance(30_000);
    let decided = classifier.classify(&dialogue_event("a menace")).await;
    assert_eq!(
        (decided.classifier.as_str(), decided.intent),
        ("embeddings", Intent::Threat)
    );
    assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
}

#[tokio::test]
async fn a_retry_that_decides_differently_is_dropped_by_the_queue_s_deduplication() {
    // classify writes nothing: a redelivery decides again. Its request carries the event id as
    // its deduplication id, so within the queue's window the first decision is the one kept;
    // after it, compose's conditional canon put keeps the first (functions/compose/tests).
    let (pool, url) = start_pool().await;
    let store = TempStore::open(Arc::new(ManualClock::new(1_763_700_000_000)));
    let context = StageContext::new(store.queue(), store.table(), Arc::clone(&store.clock));
    declare(&context, &ALL_TABLES, &[COMPOSE_QUEUE]).await;
    let queue = Arc::clone(&context.queue);
    let (classifier, _) = classifier(&url, Arc::clone(&store.clock));
    let stage = Classify::with_classifier(context, Classifier::Embeddings(classifier));
    assert_eq!(stage.source_queue(), CLASSIFY_QUEUE);
    let mut event = dialogue_event("Such a menace, that one");
    event.event_id = "01JD3Q7Z8X9Y0A1B2C3D4E5F6G".into();
    let body = serde_json::to_string(&event).unwrap();
    for delivery in 1..=2 {
        let record = ReceivedMessage {
            message_id: "m-1".into(),
            receipt_handle: format!("r-{delivery}"),
            body: body.clone(),
            group_id: Some("eval/district/scene".into()),
            receive_count: delivery,
            sent_at_ms: 0,
        };
        let report = stage.handle_batch(&[record], Duration::from_secs(30)).await;
        assert!(report.all_succeeded(), "{report:?}");
        // The second delivery meets a failing pool: the rules decide it this time.
        pool.mode.store(FAILING, Ordering::SeqCst);
    }
    let forwarded = queue
        .receive(
            COMPOSE_QUEUE,
            ReceiveRequest::batch(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    // Both deliveries forwarded under the event's deduplication id: the queue keeps the first.
    assert_eq!(forwarded.len(), 1);
    for record in &forwarded {
        let request: ComposeRequest = serde_json::from_str(&record.body).unwrap();
        assert_eq!(request.classification.classifier, "embeddings");
        assert_eq!(request.classification.intent, Intent::Threat);
    }
}
