//! Correctness of the real model against an independent implementation: embeddings of the
//! sentences in `fixtures/reference_sentences.txt` must match, to cosine ≥ 0.999 each, those
//! written by `scripts/reference_embeddings.py` (a NumPy BERT forward pass in float64) into
//! `models/reference-embeddings.json`. `scripts/test-inference.sh` fetches the model and
//! builds that fixture before running the tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use worldfleet_inference::{Metrics, Pool, PoolLimits};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_dir() -> PathBuf {
    std::env::var_os("WORLDFLEET_INFERENCE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/all-MiniLM-L6-v2"))
}

/// The pool over the real model, or `None` (with a loud message) when the model is absent.
fn real_pool(max_batch_tokens: usize) -> Option<Pool> {
    let dir = model_dir();
    if !dir.join("model.safetensors").exists() {
        eprintln!(
            "\n!!!!!!!! SKIPPING real-model test: no model in {} — run scripts/test-inference.sh \
             (or scripts/fetch-model.sh) !!!!!!!!\n",
            dir.display()
        );
        return None;
    }
    let limits = PoolLimits {
        max_batch_tokens,
        max_wait: Duration::from_millis(2),
        max_in_flight: 64,
        max_inputs_per_request: 256,
    };
    Some(
        worldfleet_inference::load_pool(&dir, limits, Arc::new(Metrics::default()))
            .expect("model loads"),
    )
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let norm_a = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let norm_b = b.iter().map(|y| y.powi(2)).sum::<f64>().sqrt();
    dot / (norm_a * norm_b)
}

#[derive(serde::Deserialize)]
struct ReferenceFixture {
    sentences: Vec<String>,
    embeddings: Vec<Vec<f64>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_match_the_numpy_reference() {
    let Some(pool) = real_pool(8192) else { return };
    let fixture_path = repo_root().join("models/reference-embeddings.json");
    let fixture_text = std::fs::read_to_string(&fixture_path).unwrap_or_else(|error| {
        panic!(
            "model present but reference fixture {} unreadable ({error}); run scripts/test-inference.sh",
            fixture_path.display()
        )
    });
    let fixture: ReferenceFixture = serde_json::from_str(&fixture_text).expect("fixture parses");
    let sentences_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference_sentences.txt");
    let sentences: Vec<String> = std::fs::read_to_string(&sentences_path)
        .expect("sentences file")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert!(sentences.len() >= 20);
    assert_eq!(
        fixture.sentences, sentences,
        "fixture is stale; rerun scripts/test-inference.sh"
    );
    assert_eq!(fixture.embeddings.len(), sentences.len());

    // All sentences in one packed batch (varied lengths: exercises packing), then each alone.
    let batched = pool.embed(&sentences).await.expect("batched embeddings");
    assert_eq!(batched.embeddings.len(), sentences.len());
    let mut worst: f64 = 1.0;
    for (index, (sentence, reference)) in sentences.iter().zip(&fixture.embeddings).enumerate() {
        let alone = pool
            .embed(std::slice::from_ref(sentence))
            .await
            .expect("single embedding");
        assert_eq!(alone.embeddings[0].len(), 384);
        for (label, embedding) in [
            ("batched", &batched.embeddings[index]),
            ("alone", &alone.embeddings[0]),
        ] {
            let similarity = cosine(embedding, reference);
            worst = worst.min(similarity);
            assert!(
                similarity >= 0.999,
                "{label} embedding of sentence {index} ({sentence:?}) has cosine {similarity} to the reference"
            );
            let norm: f32 = embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!(
                (norm - 1.0).abs() < 1e-4,
                "embedding not normalised: {norm}"
            );
        }
    }
    eprintln!("worst cosine to the NumPy reference: {worst:.7}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_token_budget_is_split_and_still_correct() {
    // A 40-token budget forces the pool to run the 22 sentences in several chunks.
    let Some(small_budget) = real_pool(40) else {
        return;
    };
    let Some(large_budget) = real_pool(8192) else {
        return;
    };
    let sentences: Vec<String> = (0..22)
        .map(|i| format!("Sentence number {i} about the harbour."))
        .collect();
    let chunked = small_budget.embed(&sentences).await.expect("chunked");
    let whole = large_budget.embed(&sentences).await.expect("whole");
    for (a, b) in chunked.embeddings.iter().zip(&whole.embeddings) {
        let b64: Vec<f64> = b.iter().map(|v| f64::from(*v)).collect();
        assert!(cosine(a, &b64) > 0.99999);
    }
    // Different sentences give different embeddings (guards against a constant output).
    let a: Vec<f64> = whole.embeddings[0].iter().map(|v| f64::from(*v)).collect();
    assert!(cosine(&whole.embeddings[1], &a) < 0.9999);
}
