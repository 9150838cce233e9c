//! The embedding classifier: intent by similarity to labelled prototype sentences.
//!
//! Each intent has a handful of prototype sentences (`data/prototypes.json`). Their embeddings
//! are fetched once, averaged and normalised into one centroid per intent; an event's text is
//! embedded and takes the intent of the nearest centroid (cosine similarity). Salience and tier
//! are then decided as the rules decide them ([`crate::rules::decide`]), so the two classifiers
//! differ only in how they read intent.
//!
//! Embeddings come through the [`Embedder`] port: [`HttpEmbedder`] calls the inference pool's
//! OpenAI-compatible `/v1/embeddings` with a deadline and a circuit breaker; the embedded
//! runtime can plug the model in in-process. Whenever the embedder is slow, failing or its
//! circuit is open, the event is classified by the rules instead — the pipeline never waits on
//! the pool.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use worldfleet_domain::{AcceptedEvent, Classification, EventPayload, Intent};
use worldfleet_kit::CircuitBreaker;
use worldfleet_kit::http::{BaseUrl, HttpError, post_json};

use crate::rules;

/// The classifier's name as recorded in decisions.
pub const CLASSIFIER: &str = "embeddings";

/// The prototype sentences shipped with the crate.
pub const PROTOTYPES_JSON: &str = include_str!("../data/prototypes.json");

/// Why no embeddings came back.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The circuit is open: the embedder is not called until its probe time.
    #[error("circuit open")]
    CircuitOpen,
    /// The HTTP call failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The embedder answered, but not one vector per text of one dimension.
    #[error("malformed embeddings: {0}")]
    Malformed(String),
    /// The in-process model failed.
    #[error("model: {0}")]
    Model(String),
}

/// Sentence embeddings, one L2-normalised vector per text, in input order.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// What this embedder is, for logs and run summaries (`http://pool:8080 (all-MiniLM-L6-v2)`).
    fn describe(&self) -> String;

    /// Embeds `texts`.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Settings of [`HttpEmbedder`].
#[derive(Debug, Clone)]
pub struct HttpEmbedderConfig {
    /// The pool's base URL (`http://pool.internal:8080`).
    pub base_url: String,
    /// The `model` field sent (the pool serves one model and ignores it; others may not).
    pub model: String,
    /// Deadline of one call; beyond it the event is classified by rules.
    pub timeout: Duration,
}

/// [`Embedder`] over an OpenAI-compatible `/v1/embeddings` endpoint, behind a circuit breaker.
pub struct HttpEmbedder {
    base: BaseUrl,
    config: HttpEmbedderConfig,
    breaker: CircuitBreaker,
}

#[derive(serde::Serialize)]
struct EmbeddingsRequest<'a> {
    input: &'a [String],
    model: &'a str,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingDatum>,
}

#[derive(Deserialize)]
struct EmbeddingDatum {
    index: usize,
    embedding: Vec<f32>,
}

impl HttpEmbedder {
    /// An embedder for `config`, failing over through `breaker`.
    pub fn new(config: HttpEmbedderConfig, breaker: CircuitBreaker) -> Result<Self, HttpError> {
        Ok(Self {
            base: BaseUrl::parse(&config.base_url)?,
            config,
            breaker,
        })
    }

    /// The breaker this embedder reports to.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

#[async_trait]
impl Embedder for HttpEmbedder {
    fn describe(&self) -> String {
        format!("{} ({})", self.base.display(), self.config.model)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if !self.breaker.try_acquire() {
            return Err(EmbedError::CircuitOpen);
        }
        let request = EmbeddingsRequest {
            input: texts,
            model: &self.config.model,
        };
        let answer: Result<EmbeddingsResponse, HttpError> = post_json(
            &self.base,
            "/v1/embeddings",
            &request,
            None,
            self.config.timeout,
        )
        .await;
        match answer {
            Ok(response) => {
                self.breaker.record_success();
                order_embeddings(response.data, texts.len())
            }
            Err(error) => {
                if error.is_service_failure() {
                    self.breaker.record_failure();
                } else {
                    // The service answered; the request itself was refused.
                    self.breaker.record_success();
                }
                Err(error.into())
            }
        }
    }
}

fn order_embeddings(
    mut data: Vec<EmbeddingDatum>,
    expected: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    if data.len() != expected {
        return Err(EmbedError::Malformed(format!(
            "{} embeddings for {expected} texts",
            data.len()
        )));
    }
    data.sort_by_key(|datum| datum.index);
    if data.iter().enumerate().any(|(at, datum)| datum.index != at) {
        return Err(EmbedError::Malformed("indexes are not 0..n".to_owned()));
    }
    let vectors: Vec<Vec<f32>> = data.into_iter().map(|datum| datum.embedding).collect();
    let dimension = vectors.first().map_or(0, Vec::len);
    if dimension == 0 || vectors.iter().any(|vector| vector.len() != dimension) {
        return Err(EmbedError::Malformed(
            "vectors are empty or of different dimensions".to_owned(),
        ));
    }
    Ok(vectors)
}

/// Labelled prototype sentences, per intent.
#[derive(Debug, Clone, PartialEq)]
pub struct Prototypes {
    /// Intent and its sentences, in a stable order.
    pub intents: Vec<(Intent, Vec<String>)>,
}

/// Why a prototype file was refused.
#[derive(Debug, thiserror::Error)]
#[error("prototypes: {0}")]
pub struct PrototypeError(String);

impl Prototypes {
    /// The prototypes shipped with the crate ([`PROTOTYPES_JSON`]).
    pub fn builtin() -> Self {
        // The shipped file is checked by a unit test, so this cannot fail in a build that passed.
        Self::from_json(PROTOTYPES_JSON).unwrap_or(Self {
            intents: Vec::new(),
        })
    }

    /// Parses `{"intent": ["sentence", ...], ...}`; intents are the wire names of [`Intent`].
    pub fn from_json(json: &str) -> Result<Self, PrototypeError> {
        let raw: std::collections::BTreeMap<String, Vec<String>> =
            serde_json::from_str(json).map_err(|error| PrototypeError(error.to_string()))?;
        if raw.is_empty() {
            return Err(PrototypeError("no intents".to_owned()));
        }
        let mut intents = Vec::with_capacity(raw.len());
        for (name, sentences) in raw {
            let intent: Intent = serde_json::from_value(serde_json::Value::String(name.clone()))
                .map_err(|_| PrototypeError(format!("unknown intent {name:?}")))?;
            if sentences.iter().all(|sentence| sentence.trim().is_empty()) {
                return Err(PrototypeError(format!("intent {name:?} has no sentences")));
            }
            intents.push((intent, sentences));
        }
        Ok(Self { intents })
    }

    /// Every sentence, intent by intent.
    pub fn sentences(&self) -> impl Iterator<Item = &str> {
        self.intents
            .iter()
            .flat_map(|(_, sentences)| sentences.iter().map(String::as_str))
    }
}

/// Settings of the embedding classifier.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingSettings {
    /// Below this cosine similarity to every centroid the text has no clear intent: social.
    pub min_similarity: f32,
    /// Texts are cut to this many characters before embedding (the model reads 256 tokens).
    pub max_text_chars: usize,
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            min_similarity: 0.15,
            max_text_chars: 600,
        }
    }
}

/// Classifies by embeddings, falling back to rules.
pub struct EmbeddingClassifier {
    embedder: Arc<dyn Embedder>,
    prototypes: Prototypes,
    settings: EmbeddingSettings,
    centroids: tokio::sync::OnceCell<Vec<(Intent, Vec<f32>)>>,
}

impl EmbeddingClassifier {
    /// A classifier over `embedder` and `prototypes`. Centroids are computed on first use (and
    /// retried on later events while the embedder is down).
    pub fn new(
        embedder: Arc<dyn Embedder>,
        prototypes: Prototypes,
        settings: EmbeddingSettings,
    ) -> Self {
        Self {
            embedder,
            prototypes,
            settings,
            centroids: tokio::sync::OnceCell::new(),
        }
    }

    /// What classifies: `embeddings via <embedder>, rules fallback`.
    pub fn describe(&self) -> String {
        format!(
            "embeddings via {}, rules fallback",
            self.embedder.describe()
        )
    }

    /// Classifies `event`: by embeddings where the text decides intent and the embedder answers,
    /// by rules otherwise.
    pub async fn classify(&self, event: &AcceptedEvent) -> Classification {
        let Some(text) = intent_text(event) else {
            return rules::classify(event);
        };
        match self.text_intent(text).await {
            Ok(intent) => rules::decide(event, intent, CLASSIFIER),
            Err(error) => {
                tracing::warn!(event_id = %event.event_id, %error, "embedding classifier unavailable; classified by rules");
                rules::classify(event)
            }
        }
    }

    /// The intent of `text` by nearest centroid.
    pub async fn text_intent(&self, text: &str) -> Result<Intent, EmbedError> {
        Ok(self.text_scores(text).await?.0)
    }

    /// The intent of `text` and its similarity to every centroid, best first.
    pub async fn text_scores(
        &self,
        text: &str,
    ) -> Result<(Intent, Vec<(Intent, f32)>), EmbedError> {
        let centroids = self
            .centroids
            .get_or_try_init(|| self.compute_centroids())
            .await?;
        let cut: String = text.chars().take(self.settings.max_text_chars).collect();
        let mut vectors = self.embedder.embed(&[cut]).await?;
        let vector = vectors
            .pop()
            .ok_or_else(|| EmbedError::Malformed("no embedding".to_owned()))?;
        let mut scores: Vec<(Intent, f32)> = centroids
            .iter()
            .map(|(intent, centroid)| Ok((*intent, cosine(&vector, centroid)?)))
            .collect::<Result<_, EmbedError>>()?;
        scores.sort_by(|left, right| right.1.total_cmp(&left.1));
        let intent = match scores.first() {
            Some((intent, score)) if *score >= self.settings.min_similarity => *intent,
            _ => Intent::Social,
        };
        Ok((intent, scores))
    }

    async fn compute_centroids(&self) -> Result<Vec<(Intent, Vec<f32>)>, EmbedError> {
        let sentences: Vec<String> = self.prototypes.sentences().map(str::to_owned).collect();
        let vectors = self.embedder.embed(&sentences).await?;
        let mut remaining = vectors.as_slice();
        let mut centroids = Vec::with_capacity(self.prototypes.intents.len());
        for (intent, intent_sentences) in &self.prototypes.intents {
            let (own, rest) = remaining.split_at(intent_sentences.len().min(remaining.len()));
            remaining = rest;
            centroids.push((*intent, normalised_mean(own)?));
        }
        tracing::info!(intents = centroids.len(), prototypes = sentences.len(), embedder = %self.embedder.describe(), "prototype centroids ready");
        Ok(centroids)
    }
}

/// The text whose meaning decides the event's intent, if its structure does not already.
pub fn intent_text(event: &AcceptedEvent) -> Option<&str> {
    if rules::structural_intent(event).is_some() {
        return None;
    }
    match &event.payload {
        EventPayload::Dialogue(dialogue) => Some(dialogue.text.as_str()),
        EventPayload::Action(action) => action.text.as_deref(),
        EventPayload::Combat(_)
        | EventPayload::Quest(_)
        | EventPayload::Trade(_)
        | EventPayload::Capture(_)
        | EventPayload::Breed(_) => None,
    }
    .filter(|text| !text.trim().is_empty())
}

fn normalised_mean(vectors: &[Vec<f32>]) -> Result<Vec<f32>, EmbedError> {
    let dimension = vectors
        .first()
        .map(Vec::len)
        .ok_or_else(|| EmbedError::Malformed("an intent has no embeddings".to_owned()))?;
    let mut mean = vec![0.0f32; dimension];
    for vector in vectors {
        if vector.len() != dimension {
            return Err(EmbedError::Malformed("mixed dimensions".to_owned()));
        }
        for (sum, value) in mean.iter_mut().zip(vector) {
            *sum += value;
        }
    }
    let norm = mean.iter().map(|value| value * value).sum::<f32>().sqrt();
    if norm > 0.0 {
        mean.iter_mut().for_each(|value| *value /= norm);
    }
    Ok(mean)
}

fn cosine(left: &[f32], right: &[f32]) -> Result<f32, EmbedError> {
    if left.len() != right.len() {
        return Err(EmbedError::Malformed(format!(
            "dimension {} against centroids of {}",
            left.len(),
            right.len()
        )));
    }
    let dot: f32 = left.iter().zip(right).map(|(a, b)| a * b).sum();
    let norms = left.iter().map(|a| a * a).sum::<f32>().sqrt()
        * right.iter().map(|b| b * b).sum::<f32>().sqrt();
    Ok(if norms > 0.0 { dot / norms } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_prototypes_parse_and_cover_the_text_intents() {
        let prototypes = Prototypes::from_json(PROTOTYPES_JSON).unwrap();
        let intents: Vec<Intent> = prototypes
            .intents
            .iter()
            .map(|(intent, _)| *intent)
            .collect();
        for intent in [
            Intent::Greeting,
            Intent::Question,
            Intent::Threat,
            Intent::Trade,
            Intent::Lore,
            Intent::Social,
        ] {
            assert!(intents.contains(&intent), "{intent:?} has no prototypes");
        }
        assert!(prototypes.sentences().count() >= 30);
    }

    #[test]
    fn bad_prototype_files_are_refused() {
        assert!(Prototypes::from_json("{}").is_err());
        assert!(Prototypes::from_json(r#"{"gossip": ["x"]}"#).is_err());
        assert!(Prototypes::from_json(r#"{"greeting": [" "]}"#).is_err());
        assert!(Prototypes::from_json("[1]").is_err());
    }

    #[test]
    fn embeddings_are_ordered_and_checked() {
        let data = vec![
            EmbeddingDatum {
                index: 1,
                embedding: vec![0.0, 1.0],
            },
            EmbeddingDatum {
                index: 0,
                embedding: vec![1.0, 0.0],
            },
        ];
        assert_eq!(
            order_embeddings(data, 2).unwrap(),
            vec![vec![1.0, 0.0], vec![0.0, 1.0]]
        );
        assert!(order_embeddings(Vec::new(), 1).is_err());
        let ragged = vec![
            EmbeddingDatum {
                index: 0,
                embedding: vec![1.0],
            },
            EmbeddingDatum {
                index: 1,
                embedding: vec![1.0, 2.0],
            },
        ];
        assert!(order_embeddings(ragged, 2).is_err());
    }

    #[test]
    fn centroid_is_the_normalised_mean() {
        let mean = normalised_mean(&[vec![1.0, 0.0], vec![0.0, 1.0]]).unwrap();
        assert!((mean[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!((cosine(&mean, &[1.0, 1.0]).unwrap() - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0], &[1.0, 0.0]).is_err());
    }
}
