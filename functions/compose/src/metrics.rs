//! compose's counters: model calls, cache hits, template fallbacks by reason, budget alerts,
//! breaker trips, tokens and money. Lock-free, shared by every record of a process; read as a
//! snapshot (run summaries) or as Prometheus text (`worldfleet_compose_*`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::budget::BudgetKind;

/// Counters of one compose process.
#[derive(Debug, Default)]
pub struct ComposeMetrics {
    model_calls: AtomicU64,
    cache_hits: AtomicU64,
    template_tier: AtomicU64,
    provider_failures: AtomicU64,
    budget_denials: [AtomicU64; 4],
    budget_alerts: [AtomicU64; 4],
    breaker_trips: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cost_micro_usd: AtomicU64,
}

/// A copy of [`ComposeMetrics`].
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ComposeSnapshot {
    pub model_calls: u64,
    pub cache_hits: u64,
    /// Events whose tier was template.
    pub template_tier: u64,
    /// Model-tier events written by template because the provider failed.
    pub provider_failures: u64,
    /// Model-tier events written by template because a budget said no, by budget.
    pub budget_denials: Vec<(&'static str, u64)>,
    /// 75 % alerts raised, by budget.
    pub budget_alerts: Vec<(&'static str, u64)>,
    pub breaker_trips: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micro_usd: u64,
}

impl ComposeMetrics {
    pub(crate) fn model_call(&self, prompt_tokens: u64, completion_tokens: u64, micro_usd: u64) {
        self.model_calls.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(prompt_tokens, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion_tokens, Ordering::Relaxed);
        self.cost_micro_usd.fetch_add(micro_usd, Ordering::Relaxed);
    }

    pub(crate) fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn template_tier(&self) {
        self.template_tier.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn provider_failure(&self) {
        self.provider_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn budget_denial(&self, kind: BudgetKind) {
        self.budget_denials[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn budget_alert(&self, kind: BudgetKind) {
        self.budget_alerts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn breaker_trip(&self) {
        self.breaker_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> ComposeSnapshot {
        let by_kind = |counters: &[AtomicU64; 4]| {
            BudgetKind::ALL
                .iter()
                .map(|kind| {
                    (
                        kind.as_str(),
                        counters[*kind as usize].load(Ordering::Relaxed),
                    )
                })
                .collect()
        };
        ComposeSnapshot {
            model_calls: self.model_calls.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            template_tier: self.template_tier.load(Ordering::Relaxed),
            provider_failures: self.provider_failures.load(Ordering::Relaxed),
            budget_denials: by_kind(&self.budget_denials),
            budget_alerts: by_kind(&self.budget_alerts),
            breaker_trips: self.breaker_trips.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            cost_micro_usd: self.cost_micro_usd.load(Ordering::Relaxed),
        }
    }

    /// The counters in the Prometheus text format.
    pub fn prometheus_text(&self) -> String {
        let snapshot = self.snapshot();
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, samples: Vec<(String, u64)>| {
            out.push_str(&format!(
                "# HELP worldfleet_compose_{name} {help}\n# TYPE worldfleet_compose_{name} counter\n"
            ));
            for (labels, value) in samples {
                out.push_str(&format!("worldfleet_compose_{name}{labels} {value}\n"));
            }
        };
        let plain = |value: u64| vec![(String::new(), value)];
        let labelled = |values: &[(&'static str, u64)]| {
            values
                .iter()
                .map(|(budget, value)| (format!("{{budget=\"{budget}\"}}"), *value))
                .collect()
        };
        counter(
            "model_calls_total",
            "Model completions requested.",
            plain(snapshot.model_calls),
        );
        counter(
            "cache_hits_total",
            "Compositions served from the result cache.",
            plain(snapshot.cache_hits),
        );
        counter(
            "provider_failures_total",
            "Model-tier events written by template after a provider failure.",
            plain(snapshot.provider_failures),
        );
        counter(
            "budget_denials_total",
            "Model-tier events written by template because a budget was spent.",
            labelled(&snapshot.budget_denials),
        );
        counter(
            "budget_alerts_total",
            "Budgets that crossed 75 % of their cap.",
            labelled(&snapshot.budget_alerts),
        );
        counter(
            "breaker_trips_total",
            "Times the daily cost ceiling tripped the breaker to templates.",
            plain(snapshot.breaker_trips),
        );
        counter(
            "cost_micro_usd_total",
            "Model spend, in millionths of a US dollar.",
            plain(snapshot.cost_micro_usd),
        );
        out
    }
}
