//! Who writes an event's line: templates only, or models by tier with cache and budgets.
//!
//! [`ModelComposer`] composes driver- and deep-tier events through an [`LlmProvider`] each:
//! scene context and the persona's memory from the canon table, the prompt, the result cache,
//! the budgets, the call. Every way this can fail to produce a model line — a spent budget, the
//! tripped daily breaker, a slow or failing provider — ends in the template line instead, so an
//! event always gets its canon; only a failing table makes the record retry.

use std::sync::Arc;
use std::time::Duration;

use worldfleet_domain::names::CANON_TABLE;
use worldfleet_domain::{CanonEntry, ComposeRequest, Tier};
use worldfleet_kit::RecordError;
use worldfleet_ports::{Query, Table};

use crate::budget::{Budgets, Verdict};
use crate::cache::{self, CachedLine};
use crate::metrics::ComposeMetrics;
use crate::provider::LlmProvider;
use crate::{prompt, template};
use worldfleet_tables::canon;

/// Recent canon entries of the scene read for context.
pub const SCENE_CONTEXT_ENTRIES: usize = 12;

/// A composed line and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub composer: String,
}

impl Line {
    fn template(request: &ComposeRequest) -> Self {
        Self {
            text: template::render(request),
            composer: template::COMPOSER.to_owned(),
        }
    }
}

/// Which composer writes lines.
#[derive(Clone)]
pub enum Composer {
    /// Deterministic templates for every tier.
    Templates,
    /// Models for driver and deep tiers, templates for the rest and as the fallback.
    Models(Arc<ModelComposer>),
}

impl Composer {
    /// What composes, for logs and run summaries.
    pub fn describe(&self) -> String {
        match self {
            Self::Templates => "templates".to_owned(),
            Self::Models(models) => models.describe(),
        }
    }

    /// The counters, when models compose.
    pub fn metrics(&self) -> Option<Arc<ComposeMetrics>> {
        match self {
            Self::Templates => None,
            Self::Models(models) => Some(Arc::clone(&models.metrics)),
        }
    }
}

/// Settings of [`ModelComposer`] beyond its providers and budgets.
#[derive(Debug, Clone, Copy)]
pub struct ModelSettings {
    /// How long a cached line is kept.
    pub cache_ttl: Duration,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Composes model tiers through providers, with cache and budgets.
pub struct ModelComposer {
    driver: Arc<dyn LlmProvider>,
    deep: Arc<dyn LlmProvider>,
    budgets: Budgets,
    metrics: Arc<ComposeMetrics>,
    settings: ModelSettings,
}

impl ModelComposer {
    /// Driver and deep providers over shared budgets; `metrics` must be the budgets' too.
    pub fn new(
        driver: Arc<dyn LlmProvider>,
        deep: Arc<dyn LlmProvider>,
        budgets: Budgets,
        metrics: Arc<ComposeMetrics>,
        settings: ModelSettings,
    ) -> Self {
        Self {
            driver,
            deep,
            budgets,
            metrics,
            settings,
        }
    }

    /// `driver: <provider>, deep: <provider>, cache, budgets`.
    pub fn describe(&self) -> String {
        format!(
            "models (driver: {}; deep: {}) with result cache and budgets, template fallback",
            self.driver.describe(),
            self.deep.describe()
        )
    }

    /// The budgets.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// The counters.
    pub fn metrics(&self) -> &ComposeMetrics {
        &self.metrics
    }

    /// The line for `request`: the model's for driver and deep tiers when cache, budgets and
    /// provider allow, the template's otherwise.
    pub async fn compose(
        &self,
        table: &dyn Table,
        now_secs: u64,
        request: &ComposeRequest,
    ) -> Result<Line, RecordError> {
        let event = &request.event;
        self.budgets
            .count_active(&event.actor)
            .await
            .map_err(RecordError::retryable)?;
        let provider = match request.classification.tier {
            Tier::Template => {
                self.metrics.template_tier();
                return Ok(Line::template(request));
            }
            Tier::Driver => &self.driver,
            Tier::Deep => &self.deep,
        };
        let recent = scene_canon(table, event.partition.as_str()).await?;
        let prompt = prompt::build(request, &recent);
        let cache_key = cache::key(
            &prompt.persona,
            &prompt.memory_hash,
            request.classification.intent,
        );
        if let Some(hit) = cache::get(table, &cache_key)
            .await
            .map_err(RecordError::retryable)?
        {
            self.metrics.cache_hit();
            return Ok(Line {
                text: hit.text,
                composer: hit.composer,
            });
        }
        let zone = event.district();
        if provider.is_billed() {
            let estimated = prompt::estimate_tokens(&prompt.system)
                + prompt::estimate_tokens(&prompt.user)
                + u64::from(prompt.max_tokens);
            let verdict = self
                .budgets
                .admit(zone.as_str(), &event.actor, estimated)
                .await
                .map_err(RecordError::retryable)?;
            if let Verdict::Denied(budget) = verdict {
                self.metrics.budget_denial(budget);
                tracing::info!(event_id = %event.event_id, budget = budget.as_str(), "budget spent: composed by template");
                return Ok(Line::template(request));
            }
        }
        let completion = match provider.complete(&prompt).await {
            Ok(completion) => completion,
            Err(error) => {
                self.metrics.provider_failure();
                tracing::warn!(event_id = %event.event_id, provider = %provider.describe(), %error, "model unavailable: composed by template");
                return Ok(Line::template(request));
            }
        };
        let text = prompt::cap_output(&completion.text);
        if text.is_empty() {
            self.metrics.provider_failure();
            return Ok(Line::template(request));
        }
        let line = Line {
            text,
            composer: provider.name(),
        };
        if provider.is_billed() {
            let cost = self
                .budgets
                .config()
                .cost_micro_usd(completion.prompt_tokens, completion.completion_tokens);
            self.metrics.model_call(
                completion.prompt_tokens,
                completion.completion_tokens,
                cost as u64,
            );
            if let Err(error) = self
                .budgets
                .charge(
                    zone.as_str(),
                    &event.actor,
                    completion.prompt_tokens + completion.completion_tokens,
                    cost,
                )
                .await
            {
                // The line is paid for either way; a retry would not charge it again (the cache
                // answers), so a failed charge is logged, not retried.
                tracing::warn!(event_id = %event.event_id, %error, "budget charge not recorded");
            }
        }
        let cached = CachedLine {
            text: line.text.clone(),
            composer: line.composer.clone(),
        };
        if let Err(error) =
            cache::put(table, cache_key, &cached, now_secs, self.settings.cache_ttl).await
        {
            tracing::warn!(event_id = %event.event_id, %error, "result not cached");
        }
        Ok(line)
    }
}

/// The scene's most recent canon, newest first.
async fn scene_canon(table: &dyn Table, partition: &str) -> Result<Vec<CanonEntry>, RecordError> {
    let page = table
        .query(
            CANON_TABLE,
            &Query::partition(partition)
                .descending()
                .limit(SCENE_CONTEXT_ENTRIES),
        )
        .await
        .map_err(RecordError::retryable)?;
    Ok(page
        .items
        .iter()
        .filter_map(|item| canon::from_item(item).ok())
        .collect())
}
