//! Which composer a process runs, from its environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `WORLDFLEET_LLM_BASE_URL` | unset: templates only | OpenAI-compatible server, up to `/v1` (`http://pool:8080`, `http://localhost:11434` for Ollama, `http://localhost:8000` for vLLM) |
//! | `WORLDFLEET_LLM_MODEL` | `default` | model of driver-tier events |
//! | `WORLDFLEET_LLM_DEEP_MODEL` | the driver model | model of deep-tier events |
//! | `WORLDFLEET_LLM_API_KEY` | none | bearer token |
//! | `WORLDFLEET_LLM_TIMEOUT_MS` | 3000 | deadline of one call, then the template |
//! | `WORLDFLEET_LLM_PROMPT_USD_PER_MTOK` | 0.15 | price of prompt tokens per million |
//! | `WORLDFLEET_LLM_COMPLETION_USD_PER_MTOK` | 0.60 | price of completion tokens per million |
//! | `WORLDFLEET_BUDGET_ZONE_QPS` | 20 | model calls per zone per second |
//! | `WORLDFLEET_BUDGET_ZONE_TOKENS_PER_DAY` | 2000000 | model tokens per zone per day |
//! | `WORLDFLEET_BUDGET_PLAYER_MONTHLY_USD` | 0.50 | model cost target per player per month |
//! | `WORLDFLEET_BUDGET_DAILY_USD_PER_1000_PLAYERS` | 50 | daily ceiling per 1,000 active players |

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use worldfleet_kit::{BreakerConfig, CircuitBreaker, Env, Variable};
use worldfleet_ports::{Clock, Table};

use crate::budget::{BudgetConfig, Budgets};
use crate::composer::{Composer, ModelComposer, ModelSettings};
use crate::metrics::ComposeMetrics;
use crate::provider::{LlmProvider, OpenAiConfig, OpenAiProvider};

/// The variables compose reads (the model settings apply only when a base URL is set).
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "WORLDFLEET_LLM_BASE_URL",
        default: "unset: templates only",
        meaning: "OpenAI-compatible model server, up to `/v1` (the pool, Ollama, vLLM)",
    },
    Variable {
        name: "WORLDFLEET_LLM_MODEL",
        default: "default",
        meaning: "model of driver-tier events",
    },
    Variable {
        name: "WORLDFLEET_LLM_DEEP_MODEL",
        default: "the driver model",
        meaning: "model of deep-tier events",
    },
    Variable {
        name: "WORLDFLEET_LLM_API_KEY",
        default: "none",
        meaning: "bearer token of the model server (never logged)",
    },
    Variable {
        name: "WORLDFLEET_LLM_TIMEOUT_MS",
        default: "3000",
        meaning: "deadline of one model call, then the template",
    },
    Variable {
        name: "WORLDFLEET_LLM_PROMPT_USD_PER_MTOK",
        default: "0.15",
        meaning: "price of prompt tokens per million",
    },
    Variable {
        name: "WORLDFLEET_LLM_COMPLETION_USD_PER_MTOK",
        default: "0.60",
        meaning: "price of completion tokens per million",
    },
    Variable {
        name: "WORLDFLEET_BUDGET_ZONE_QPS",
        default: "20",
        meaning: "model calls per zone per second",
    },
    Variable {
        name: "WORLDFLEET_BUDGET_ZONE_TOKENS_PER_DAY",
        default: "2000000",
        meaning: "model tokens per zone per day",
    },
    Variable {
        name: "WORLDFLEET_BUDGET_PLAYER_MONTHLY_USD",
        default: "0.50",
        meaning: "model cost target per player per month",
    },
    Variable {
        name: "WORLDFLEET_BUDGET_DAILY_USD_PER_1000_PLAYERS",
        default: "50",
        meaning: "daily ceiling per 1,000 active players (trips the breaker to templates)",
    },
];

/// The model settings, when a model server is configured.
#[derive(Debug, Clone)]
pub struct ModelsConfig {
    /// Driver-tier provider.
    pub driver: OpenAiConfig,
    /// Deep-tier model (same server as the driver).
    pub deep_model: String,
    pub budgets: BudgetConfig,
    pub breaker: BreakerConfig,
}

impl ModelsConfig {
    /// Reads the variables above; `Ok(None)` when no base URL is set.
    pub fn from_env() -> Result<Option<Self>, String> {
        Self::from_vars(&Env::process())
    }

    /// [`Self::from_env`] over `env`.
    pub fn from_vars(env: &Env) -> Result<Option<Self>, String> {
        Self::from_lookup(|name| env.text(name))
    }

    /// [`Self::from_env`] over any variable lookup.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let Some(base_url) = lookup("WORLDFLEET_LLM_BASE_URL").filter(|url| !url.is_empty()) else {
            return Ok(None);
        };
        fn parsed<T: FromStr>(
            lookup: &impl Fn(&str) -> Option<String>,
            name: &str,
            default: T,
        ) -> Result<T, String> {
            lookup(name).map_or(Ok(default), |value| {
                value
                    .parse()
                    .map_err(|_| format!("{name}={value:?} is not a number"))
            })
        }
        let defaults = BudgetConfig::default();
        let model = lookup("WORLDFLEET_LLM_MODEL").unwrap_or_else(|| "default".to_owned());
        let budgets = BudgetConfig {
            zone_requests_per_second: parsed(
                &lookup,
                "WORLDFLEET_BUDGET_ZONE_QPS",
                defaults.zone_requests_per_second,
            )?,
            zone_tokens_per_day: parsed(
                &lookup,
                "WORLDFLEET_BUDGET_ZONE_TOKENS_PER_DAY",
                defaults.zone_tokens_per_day,
            )?,
            player_monthly_usd: parsed(
                &lookup,
                "WORLDFLEET_BUDGET_PLAYER_MONTHLY_USD",
                defaults.player_monthly_usd,
            )?,
            daily_usd_per_thousand_players: parsed(
                &lookup,
                "WORLDFLEET_BUDGET_DAILY_USD_PER_1000_PLAYERS",
                defaults.daily_usd_per_thousand_players,
            )?,
            alert_fraction: defaults.alert_fraction,
            prompt_usd_per_million_tokens: parsed(
                &lookup,
                "WORLDFLEET_LLM_PROMPT_USD_PER_MTOK",
                defaults.prompt_usd_per_million_tokens,
            )?,
            completion_usd_per_million_tokens: parsed(
                &lookup,
                "WORLDFLEET_LLM_COMPLETION_USD_PER_MTOK",
                defaults.completion_usd_per_million_tokens,
            )?,
        };
        let negative = [
            budgets.player_monthly_usd,
            budgets.daily_usd_per_thousand_players,
            budgets.prompt_usd_per_million_tokens,
            budgets.completion_usd_per_million_tokens,
        ]
        .iter()
        .any(|value| !value.is_finite() || *value < 0.0);
        if negative {
            return Err("budget and price settings must be finite and not negative".to_owned());
        }
        Ok(Some(Self {
            deep_model: lookup("WORLDFLEET_LLM_DEEP_MODEL").unwrap_or_else(|| model.clone()),
            driver: OpenAiConfig {
                base_url,
                model,
                api_key: lookup("WORLDFLEET_LLM_API_KEY").filter(|key| !key.is_empty()),
                timeout: Duration::from_millis(parsed(
                    &lookup,
                    "WORLDFLEET_LLM_TIMEOUT_MS",
                    3000u64,
                )?),
                temperature: 0.7,
            },
            budgets,
            breaker: BreakerConfig::default(),
        }))
    }

    /// The model composer: both tiers on one server behind one breaker, budgets over `table`.
    pub fn composer(
        &self,
        table: Arc<dyn Table>,
        clock: Arc<dyn Clock>,
    ) -> Result<Composer, String> {
        let breaker = CircuitBreaker::new(self.breaker, Arc::clone(&clock));
        let driver: Arc<dyn LlmProvider> = Arc::new(
            OpenAiProvider::new(self.driver.clone(), breaker.clone())
                .map_err(|error| error.to_string())?,
        );
        let deep: Arc<dyn LlmProvider> = if self.deep_model == self.driver.model {
            Arc::clone(&driver)
        } else {
            let mut deep = self.driver.clone();
            deep.model = self.deep_model.clone();
            Arc::new(OpenAiProvider::new(deep, breaker).map_err(|error| error.to_string())?)
        };
        let metrics = Arc::new(ComposeMetrics::default());
        let budgets = Budgets::new(table, clock, self.budgets, Arc::clone(&metrics));
        Ok(Composer::Models(Arc::new(ModelComposer::new(
            driver,
            deep,
            budgets,
            metrics,
            ModelSettings::default(),
        ))))
    }
}

/// The composer the environment asks for: models when `WORLDFLEET_LLM_BASE_URL` is set,
/// templates otherwise.
pub fn composer_from_env(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Result<Composer, String> {
    match ModelsConfig::from_env()? {
        Some(config) => config.composer(table, clock),
        None => Ok(Composer::Templates),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_models_and_budgets() {
        assert!(ModelsConfig::from_lookup(|_| None).unwrap().is_none());
        let config = ModelsConfig::from_lookup(|name| {
            match name {
                "WORLDFLEET_LLM_BASE_URL" => Some("http://localhost:11434"),
                "WORLDFLEET_LLM_MODEL" => Some("llama3.2:1b"),
                "WORLDFLEET_LLM_API_KEY" => Some("secret"),
                "WORLDFLEET_BUDGET_PLAYER_MONTHLY_USD" => Some("0.25"),
                _ => None,
            }
            .map(str::to_owned)
        })
        .unwrap()
        .unwrap();
        assert_eq!(config.deep_model, "llama3.2:1b");
        assert_eq!(config.budgets.player_monthly_usd, 0.25);
        assert_eq!(config.budgets.daily_usd_per_thousand_players, 50.0);
        assert!(
            !format!("{:?}", config.driver).contains("secret"),
            "keys stay out of logs"
        );
        let error = ModelsConfig::from_lookup(|name| {
            match name {
                "WORLDFLEET_LLM_BASE_URL" => Some("http://localhost:11434"),
                "WORLDFLEET_BUDGET_ZONE_QPS" => Some("-3"),
                _ => None,
            }
            .map(str::to_owned)
        })
        .unwrap_err();
        assert!(error.contains("ZONE_QPS"), "{error}");
    }
}
