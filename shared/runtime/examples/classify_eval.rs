//! Accuracy of the rules and embedding classifiers on the held-out evaluation set
//! (`functions/classify/data/eval.jsonl`), with the real model.
//!
//! ```sh
//! scripts/fetch-model.sh
//! cargo run --release -p worldfleet-runtime --example classify_eval            # model in-process
//! cargo run --release -p worldfleet-runtime --example classify_eval -- --url http://localhost:8080
//! ```
//!
//! The model directory is `WORLDFLEET_EMBEDDINGS_MODEL_DIR`, else `models/all-MiniLM-L6-v2`.
//! Without a model or a pool, only the rules are scored, and the output says so.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use worldfleet_classify::embedding::{EmbeddingSettings, HttpEmbedderConfig};
use worldfleet_classify::eval::{EVAL_JSONL, evaluate, parse_eval_set, render};
use worldfleet_classify::{Embedder, EmbeddingClassifier, HttpEmbedder, Prototypes};
use worldfleet_kit::{BreakerConfig, CircuitBreaker};
use worldfleet_ports::SystemClock;
use worldfleet_runtime::models::{InProcessEmbedder, model_dir_from_env, model_present};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let url = match arguments.as_slice() {
        [] => None,
        [flag, url] if flag == "--url" => Some(url.clone()),
        _ => anyhow::bail!("usage: classify_eval [--url http://pool:8080]"),
    };
    let set = parse_eval_set(EVAL_JSONL).map_err(anyhow::Error::msg)?;
    let prototypes = Prototypes::builtin();
    println!(
        "evaluation set: {} labelled lines; prototypes: {} sentences over {} intents (none shared)",
        set.len(),
        prototypes.sentences().count(),
        prototypes.intents.len()
    );
    let embedder: Option<Arc<dyn Embedder>> = match url {
        Some(url) => Some(Arc::new(HttpEmbedder::new(
            HttpEmbedderConfig {
                base_url: url,
                model: "all-MiniLM-L6-v2".to_owned(),
                timeout: Duration::from_secs(30),
            },
            CircuitBreaker::new(BreakerConfig::default(), Arc::new(SystemClock)),
        )?)),
        None => {
            let dir = model_dir_from_env();
            if model_present(&dir) {
                Some(Arc::new(InProcessEmbedder::load(&dir)?))
            } else {
                println!(
                    "embeddings: not measured — no model in {} (run scripts/fetch-model.sh) and no --url",
                    dir.display()
                );
                None
            }
        }
    };
    let classifier = embedder.map(|embedder| {
        println!("embedder: {}", embedder.describe());
        EmbeddingClassifier::new(embedder, prototypes, EmbeddingSettings::default())
    });
    let report = evaluate(&set, classifier.as_ref())
        .await
        .context("the embedder failed during the evaluation")?;
    print!("{}", render(&report));
    Ok(())
}
