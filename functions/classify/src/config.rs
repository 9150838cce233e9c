//! Which classifier a process runs, from its environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `WORLDFLEET_EMBEDDINGS_URL` | unset: rules only | base URL of the inference pool (`http://pool:8080`) |
//! | `WORLDFLEET_EMBEDDINGS_MODEL` | `all-MiniLM-L6-v2` | `model` field of embedding requests |
//! | `WORLDFLEET_EMBEDDINGS_TIMEOUT_MS` | 300 | deadline of one call, then rules decide |
//! | `WORLDFLEET_EMBEDDINGS_BREAKER_FAILURES` | 5 | consecutive failures that open the circuit |
//! | `WORLDFLEET_EMBEDDINGS_BREAKER_OPEN_MS` | 10000 | how long the circuit stays open |

use std::sync::Arc;
use std::time::Duration;

use worldfleet_kit::{BreakerConfig, CircuitBreaker, Env, Variable};
use worldfleet_ports::Clock;

use crate::embedding::{
    EmbeddingClassifier, EmbeddingSettings, HttpEmbedder, HttpEmbedderConfig, Prototypes,
};
use crate::handler::Classifier;

/// The variables classify reads.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "WORLDFLEET_EMBEDDINGS_URL",
        default: "unset: the in-process model when present (embedded), else rules",
        meaning: "base URL of the inference pool (`http://pool:8080`)",
    },
    Variable {
        name: "WORLDFLEET_EMBEDDINGS_MODEL",
        default: "all-MiniLM-L6-v2",
        meaning: "`model` field of embedding requests",
    },
    Variable {
        name: "WORLDFLEET_EMBEDDINGS_TIMEOUT_MS",
        default: "300",
        meaning: "deadline of one embedding call, then the rules decide",
    },
    Variable {
        name: "WORLDFLEET_EMBEDDINGS_BREAKER_FAILURES",
        default: "5",
        meaning: "consecutive pool failures that open the circuit",
    },
    Variable {
        name: "WORLDFLEET_EMBEDDINGS_BREAKER_OPEN_MS",
        default: "10000",
        meaning: "how long the circuit stays open",
    },
];

/// The embedding pool settings, when one is configured.
#[derive(Debug, Clone)]
pub struct EmbeddingsConfig {
    pub embedder: HttpEmbedderConfig,
    pub breaker: BreakerConfig,
}

impl EmbeddingsConfig {
    /// Reads the variables above; `Ok(None)` when no URL is set.
    pub fn from_env() -> Result<Option<Self>, String> {
        Self::from_vars(&Env::process())
    }

    /// [`Self::from_env`] over `env`.
    pub fn from_vars(env: &Env) -> Result<Option<Self>, String> {
        Self::from_lookup(|name| env.text(name))
    }

    /// [`Self::from_env`] over any variable lookup.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let Some(base_url) = lookup("WORLDFLEET_EMBEDDINGS_URL").filter(|url| !url.is_empty())
        else {
            return Ok(None);
        };
        let number = |name: &str, default: u64| -> Result<u64, String> {
            lookup(name).map_or(Ok(default), |value| {
                value
                    .parse()
                    .map_err(|_| format!("{name}={value:?} is not a whole number"))
            })
        };
        Ok(Some(Self {
            embedder: HttpEmbedderConfig {
                base_url,
                model: lookup("WORLDFLEET_EMBEDDINGS_MODEL")
                    .unwrap_or_else(|| "all-MiniLM-L6-v2".to_owned()),
                timeout: Duration::from_millis(number("WORLDFLEET_EMBEDDINGS_TIMEOUT_MS", 300)?),
            },
            breaker: BreakerConfig {
                failure_threshold: number("WORLDFLEET_EMBEDDINGS_BREAKER_FAILURES", 5)?.max(1)
                    as u32,
                open_for: Duration::from_millis(number(
                    "WORLDFLEET_EMBEDDINGS_BREAKER_OPEN_MS",
                    10_000,
                )?),
            },
        }))
    }

    /// The embedding classifier over the pool, with the shipped prototypes.
    pub fn classifier(&self, clock: Arc<dyn Clock>) -> Result<Classifier, String> {
        let embedder = HttpEmbedder::new(
            self.embedder.clone(),
            CircuitBreaker::new(self.breaker, clock),
        )
        .map_err(|error| error.to_string())?;
        Ok(Classifier::Embeddings(Arc::new(EmbeddingClassifier::new(
            Arc::new(embedder),
            Prototypes::builtin(),
            EmbeddingSettings::default(),
        ))))
    }
}

/// The classifier the environment asks for: embeddings when `WORLDFLEET_EMBEDDINGS_URL` is
/// set, rules otherwise.
pub fn classifier_from_env(clock: Arc<dyn Clock>) -> Result<Classifier, String> {
    match EmbeddingsConfig::from_env()? {
        Some(config) => config.classifier(clock),
        None => Ok(Classifier::Rules),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_settings_and_refuses_bad_numbers() {
        assert!(EmbeddingsConfig::from_lookup(|_| None).unwrap().is_none());
        let config = EmbeddingsConfig::from_lookup(|name| match name {
            "WORLDFLEET_EMBEDDINGS_URL" => Some("http://pool:8080".to_owned()),
            "WORLDFLEET_EMBEDDINGS_TIMEOUT_MS" => Some("120".to_owned()),
            _ => None,
        })
        .unwrap()
        .unwrap();
        assert_eq!(config.embedder.timeout, Duration::from_millis(120));
        assert_eq!(config.breaker.failure_threshold, 5);
        let error = EmbeddingsConfig::from_lookup(|name| match name {
            "WORLDFLEET_EMBEDDINGS_URL" => Some("http://pool:8080".to_owned()),
            "WORLDFLEET_EMBEDDINGS_BREAKER_OPEN_MS" => Some("soon".to_owned()),
            _ => None,
        })
        .unwrap_err();
        assert!(error.contains("BREAKER_OPEN_MS"), "{error}");
    }
}
