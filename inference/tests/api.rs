//! HTTP and batching behaviour with a stand-in model (no model files needed): status codes,
//! response shapes, the in-flight bound, and that concurrent requests share one batch.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use worldfleet_inference::model::{EmbeddingModel, TextTokenizer};
use worldfleet_inference::{AppState, InferenceError, Metrics, Pool, PoolLimits, app};

/// One token per whitespace-separated word plus two "special" tokens; refuses nothing.
struct WordTokenizer;

impl TextTokenizer for WordTokenizer {
    fn token_ids(&self, text: &str) -> worldfleet_inference::Result<Vec<u32>> {
        let mut ids = vec![101];
        ids.extend(text.split_whitespace().map(|word| word.len() as u32));
        ids.push(102);
        Ok(ids)
    }

    fn max_sequence_length(&self) -> usize {
        8
    }
}

/// Lets a test hold the model thread inside a forward pass until it opens the gate.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().expect("gate lock") = true;
        self.changed.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().expect("gate lock");
        while !*open {
            open = self.changed.wait(open).expect("gate lock");
        }
    }
}

/// Embeds a sequence as the unit vector along axis (sequence length mod 4); records the
/// number of sequences of every batch it runs.
struct RecordingModel {
    batch_sizes: Arc<Mutex<Vec<usize>>>,
    gate: Option<Arc<Gate>>,
}

impl EmbeddingModel for RecordingModel {
    fn embed(&mut self, sequences: &[&[u32]]) -> worldfleet_inference::Result<Vec<Vec<f32>>> {
        if let Some(gate) = &self.gate {
            gate.wait();
        }
        self.batch_sizes
            .lock()
            .expect("batch sizes lock")
            .push(sequences.len());
        Ok(sequences
            .iter()
            .map(|sequence| {
                let mut vector = vec![0.0; 4];
                vector[sequence.len() % 4] = 1.0;
                vector
            })
            .collect())
    }
}

struct Harness {
    state: AppState,
    metrics: Arc<Metrics>,
    batch_sizes: Arc<Mutex<Vec<usize>>>,
    gate: Option<Arc<Gate>>,
}

fn limits(max_in_flight: usize) -> PoolLimits {
    PoolLimits {
        max_batch_tokens: 1024,
        max_wait: Duration::from_millis(2),
        max_in_flight,
        max_inputs_per_request: 4,
    }
}

fn harness(limits: PoolLimits, gated: bool) -> Harness {
    let metrics = Arc::new(Metrics::default());
    let batch_sizes = Arc::new(Mutex::new(Vec::new()));
    let gate = gated.then(|| Arc::new(Gate::default()));
    let model = RecordingModel {
        batch_sizes: Arc::clone(&batch_sizes),
        gate: gate.clone(),
    };
    let pool = Pool::start(
        Arc::new(WordTokenizer),
        Box::new(model),
        limits,
        Arc::clone(&metrics),
    )
    .expect("pool starts");
    Harness {
        state: AppState::ready("test-model", Arc::clone(&metrics), pool),
        metrics,
        batch_sizes,
        gate,
    }
}

async fn post(state: &AppState, path: &str, body: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let response = app(state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

async fn get(state: &AppState, path: &str) -> (StatusCode, String) {
    let request = Request::get(path).body(Body::empty()).expect("request");
    let response = app(state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Polls until `condition` holds, failing the test after two seconds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..400 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn embeddings_answer_in_openai_shape() {
    let h = harness(limits(8), false);
    let (status, json) = post(
        &h.state,
        "/v1/embeddings",
        r#"{"input": ["a b", "a b c"], "model": "x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["object"], "list");
    assert_eq!(json["model"], "test-model");
    assert_eq!(json["data"][0]["object"], "embedding");
    assert_eq!(json["data"][1]["index"], 1);
    assert_eq!(
        json["data"][0]["embedding"],
        serde_json::json!([1.0, 0.0, 0.0, 0.0])
    );
    assert_eq!(
        json["data"][1]["embedding"],
        serde_json::json!([0.0, 1.0, 0.0, 0.0])
    );
    assert_eq!(json["usage"]["prompt_tokens"], 9);
    assert_eq!(json["usage"]["total_tokens"], 9);

    let (status, json) = post(&h.state, "/v1/embeddings", r#"{"input": "single text"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn bad_requests_get_400_with_a_json_error() {
    let h = harness(limits(8), false);
    for body in [
        "{not json",
        r#"{"inputs": ["wrong field"]}"#,
        r#"{"input": 42}"#,
        r#"{"input": []}"#,
        r#"{"input": "x", "encoding_format": "base64"}"#,
    ] {
        let (status, json) = post(&h.state, "/v1/embeddings", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "body {body}: {json}");
        assert_eq!(
            json["error"]["type"], "invalid_request_error",
            "body {body}"
        );
        assert!(json["error"]["message"].is_string());
    }
    let (status, _) = post(
        &h.state,
        "/v1/classify",
        r#"{"inputs": ["x"], "labels": {}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(
        &h.state,
        "/v1/classify",
        r#"{"inputs": ["x"], "labels": {"a": []}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn oversized_requests_get_413() {
    let h = harness(limits(8), false);
    let (status, json) = post(
        &h.state,
        "/v1/embeddings",
        r#"{"input": ["a", "b", "c", "d", "e"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    // Eight tokens at most: six words plus two special tokens is fine, seven words is not.
    let (status, _) = post(&h.state, "/v1/embeddings", r#"{"input": "a b c d e f"}"#).await;
    assert_eq!(status, StatusCode::OK);
    let (status, json) = post(&h.state, "/v1/embeddings", r#"{"input": "a b c d e f g"}"#).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    // Inputs and prototypes together count against the per-request bound.
    let (status, _) = post(
        &h.state,
        "/v1/classify",
        r#"{"inputs": ["a", "b"], "labels": {"x": ["c", "d"], "y": ["e"]}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn no_model_means_503_and_unhealthy() {
    let state = AppState::loading("test-model", Arc::new(Metrics::default()));
    let (status, json) = post(&state, "/v1/embeddings", r#"{"input": "x"}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["error"]["type"], "model_unavailable");
    let (status, _) = get(&state, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let h = harness(limits(8), false);
    let (status, body) = get(&h.state, "/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn classify_returns_best_label_and_all_scores() {
    let h = harness(limits(8), false);
    // Stand-in embeddings: a text with n words lands on axis (n + 2) mod 4.
    let (status, json) = post(
        &h.state,
        "/v1/classify",
        r#"{"inputs": ["one", "one two"], "labels": {"single": ["x"], "pair": ["x y"]}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["data"][0]["label"], "single");
    assert_eq!(json["data"][1]["label"], "pair");
    assert_eq!(json["data"][1]["score"], 1.0);
    assert_eq!(json["data"][1]["scores"][1]["score"], 0.0);
}

#[tokio::test]
async fn requests_beyond_the_in_flight_bound_get_429() {
    let h = harness(limits(1), true);
    let held_state = h.state.clone();
    let held =
        tokio::spawn(
            async move { post(&held_state, "/v1/embeddings", r#"{"input": "held"}"#).await },
        );
    let metrics = Arc::clone(&h.metrics);
    eventually("the first request to be in flight", || {
        metrics.in_flight.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;

    let (status, json) = post(&h.state, "/v1/embeddings", r#"{"input": "refused"}"#).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{json}");
    assert_eq!(json["error"]["type"], "overloaded");

    h.gate.as_ref().expect("gated").open();
    let (status, _) = held.await.expect("held request");
    assert_eq!(status, StatusCode::OK);
    // Once answered, the slot is free again.
    let (status, _) = post(&h.state, "/v1/embeddings", r#"{"input": "admitted"}"#).await;
    assert_eq!(status, StatusCode::OK);

    let (_, metrics_text) = get(&h.state, "/metrics").await;
    assert!(
        metrics_text.contains("worldfleet_inference_rejected_total 1\n"),
        "{metrics_text}"
    );
}

#[tokio::test]
async fn concurrent_requests_share_one_batch() {
    let h = harness(limits(16), true);
    // The first request occupies the model thread (held at the gate) ...
    let first_state = h.state.clone();
    let first =
        tokio::spawn(
            async move { post(&first_state, "/v1/embeddings", r#"{"input": "first"}"#).await },
        );
    let batch_sizes = Arc::clone(&h.metrics);
    eventually("the first batch to start", || {
        batch_sizes.batch_size.count() == 1
    })
    .await;
    // ... while five more arrive and queue up behind it.
    let mut waiting = Vec::new();
    for index in 0..5 {
        let state = h.state.clone();
        waiting.push(tokio::spawn(async move {
            post(
                &state,
                "/v1/embeddings",
                &format!(r#"{{"input": "queued {index}"}}"#),
            )
            .await
        }));
    }
    let metrics = Arc::clone(&h.metrics);
    eventually("five queued requests", || {
        metrics
            .queue_depth
            .load(std::sync::atomic::Ordering::Relaxed)
            == 5
    })
    .await;
    let (_, metrics_text) = get(&h.state, "/metrics").await;
    assert!(
        metrics_text.contains("worldfleet_inference_queue_depth 5\n"),
        "{metrics_text}"
    );

    h.gate.as_ref().expect("gated").open();
    assert_eq!(first.await.expect("first").0, StatusCode::OK);
    for request in waiting {
        assert_eq!(request.await.expect("queued").0, StatusCode::OK);
    }
    assert_eq!(*h.batch_sizes.lock().expect("lock"), vec![1, 5]);
    let (_, metrics_text) = get(&h.state, "/metrics").await;
    assert!(
        metrics_text.contains("worldfleet_inference_batch_requests_bucket{le=\"4\"} 1\n")
            && metrics_text.contains("worldfleet_inference_batch_requests_bucket{le=\"8\"} 2\n"),
        "one batch of 1 request and one of 5 expected:\n{metrics_text}"
    );
    assert!(metrics_text.contains("worldfleet_inference_queue_depth 0\n"));
    assert!(metrics_text.contains("worldfleet_inference_request_duration_seconds_count 6\n"));
}

#[test]
fn errors_map_to_the_documented_statuses() {
    let cases = [
        (InferenceError::InvalidRequest("x".into()), 400),
        (InferenceError::TooManyInputs { count: 2, limit: 1 }, 413),
        (
            InferenceError::InputTooLong {
                index: 0,
                tokens: 9,
                limit: 8,
            },
            413,
        ),
        (InferenceError::BodyTooLarge, 413),
        (InferenceError::Overloaded { limit: 1 }, 429),
        (InferenceError::ModelUnavailable("x".into()), 503),
        (InferenceError::Model("x".into()), 500),
    ];
    for (error, status) in cases {
        assert_eq!(error.http_status().0.as_u16(), status, "{error}");
    }
}
