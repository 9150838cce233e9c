//! Which classifier and composer the narrative stages of a process use, and why.
//!
//! The settings come from the stage registry (read once from the environment, as every mode
//! reads them); what this module adds is the embedded run's in-process model.
//!
//! - classify: the pool over HTTP when `WORLDFLEET_EMBEDDINGS_URL` is set; else the embedding
//!   model in-process when its files are present (`WORLDFLEET_EMBEDDINGS_MODEL_DIR`, default
//!   `models/all-MiniLM-L6-v2`, fetched by `scripts/fetch-model.sh`), on its own thread through
//!   the inference crate's batching pool; else the rules.
//! - compose: an OpenAI-compatible model server when `WORLDFLEET_LLM_BASE_URL` is set (see
//!   `worldfleet_compose::config`); else templates.
//!
//! Each choice carries a one-line description, which `worldfleet run` prints, so a run always
//! says which classifier and composer it used and, when it fell back, why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use worldfleet_classify::embedding::{EmbedError, EmbeddingSettings};
use worldfleet_classify::{Classifier, Embedder, EmbeddingClassifier, Prototypes};
use worldfleet_compose::Composer;
use worldfleet_inference::{Metrics, Pool, PoolLimits};
use worldfleet_ports::{Clock, Table};
use worldfleet_stages::{ClassifierSetting, ComposerSetting};

/// Where the embedding model is looked for when no directory is configured.
pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";

/// What the narrative stages should use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ModelChoice {
    /// Models when configured or present, rules and templates otherwise.
    #[default]
    Auto,
    /// Rules and templates, whatever is configured.
    RulesAndTemplates,
}

/// The embedding model run in this process through the inference crate's pool.
pub struct InProcessEmbedder {
    pool: Pool,
    model_dir: PathBuf,
}

impl InProcessEmbedder {
    /// Loads the model in `model_dir` (offline) and starts its thread.
    pub fn load(model_dir: &Path) -> anyhow::Result<Self> {
        let limits = PoolLimits {
            max_batch_tokens: 8192,
            max_wait: Duration::from_millis(2),
            max_in_flight: 256,
            max_inputs_per_request: 256,
        };
        let pool = worldfleet_inference::load_pool(model_dir, limits, Arc::new(Metrics::default()))
            .with_context(|| format!("load the embedding model from {}", model_dir.display()))?;
        Ok(Self {
            pool,
            model_dir: model_dir.to_path_buf(),
        })
    }
}

#[async_trait]
impl Embedder for InProcessEmbedder {
    fn describe(&self) -> String {
        format!("in-process model {}", self.model_dir.display())
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.pool
            .embed(texts)
            .await
            .map(|embedded| embedded.embeddings)
            .map_err(|error| EmbedError::Model(error.to_string()))
    }
}

/// The model directory to use: `WORLDFLEET_EMBEDDINGS_MODEL_DIR`, else [`DEFAULT_MODEL_DIR`].
pub fn model_dir_from_env() -> PathBuf {
    std::env::var_os("WORLDFLEET_EMBEDDINGS_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL_DIR))
}

/// Whether `dir` holds the files the model loads from.
pub fn model_present(dir: &Path) -> bool {
    ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .all(|file| dir.join(file).is_file())
}

/// The classifier for `choice` given the registry's `setting` (read from the environment),
/// with its description: the pool when one is configured, else the in-process model when its
/// files are present, else the rules.
pub fn classifier(
    choice: ModelChoice,
    setting: &ClassifierSetting,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Classifier, String)> {
    if choice == ModelChoice::RulesAndTemplates {
        return Ok((Classifier::Rules, "rules (models turned off)".to_owned()));
    }
    match setting {
        ClassifierSetting::Pool(config) => {
            let classifier = config.classifier(clock).map_err(anyhow::Error::msg)?;
            let description = classifier.describe();
            return Ok((classifier, description));
        }
        ClassifierSetting::Given(classifier) => {
            return Ok((classifier.clone(), classifier.describe()));
        }
        ClassifierSetting::Rules => {}
    }
    let dir = model_dir_from_env();
    if !model_present(&dir) {
        return Ok((
            Classifier::Rules,
            format!(
                "rules (no embedding model: {} is missing — run scripts/fetch-model.sh, or set WORLDFLEET_EMBEDDINGS_URL to a pool)",
                dir.display()
            ),
        ));
    }
    let embedder = InProcessEmbedder::load(&dir)?;
    let classifier = Classifier::Embeddings(Arc::new(EmbeddingClassifier::new(
        Arc::new(embedder),
        Prototypes::builtin(),
        EmbeddingSettings::default(),
    )));
    let description = classifier.describe();
    Ok((classifier, description))
}

/// The composer for `choice` given the registry's `setting`, over `table`, with its
/// description.
pub fn composer(
    choice: ModelChoice,
    setting: &ComposerSetting,
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Composer, String)> {
    if choice == ModelChoice::RulesAndTemplates {
        return Ok((
            Composer::Templates,
            "templates (models turned off)".to_owned(),
        ));
    }
    match setting {
        ComposerSetting::Models(config) => {
            let composer = config.composer(table, clock).map_err(anyhow::Error::msg)?;
            let description = composer.describe();
            Ok((composer, description))
        }
        ComposerSetting::Given(composer) => Ok((composer.clone(), composer.describe())),
        ComposerSetting::Templates => Ok((
            Composer::Templates,
            "templates (no language model configured: set WORLDFLEET_LLM_BASE_URL to an OpenAI-compatible server)".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_model_files_is_not_a_model() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!model_present(dir.path()));
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        assert!(model_present(dir.path()));
    }

    #[tokio::test]
    async fn turned_off_models_say_so() {
        let clock: Arc<dyn Clock> = Arc::new(worldfleet_ports::SystemClock);
        let (classifier, description) = classifier(
            ModelChoice::RulesAndTemplates,
            &ClassifierSetting::Rules,
            clock,
        )
        .unwrap();
        assert!(matches!(classifier, Classifier::Rules));
        assert!(description.starts_with("rules"));
    }
}
