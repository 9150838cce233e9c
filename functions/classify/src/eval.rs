//! The held-out evaluation set and the accuracy report of both classifiers on it.
//!
//! `data/eval.jsonl` holds labelled dialogue lines (`{"text", "intent"}`), written for the
//! project and kept apart from the prototypes (a test checks that no sentence is in both).
//! [`evaluate`] reads every line as a dialogue event and counts how often each classifier's
//! intent matches the label. Run it with the real model:
//! `cargo run -p worldfleet -- eval-classify` (see the crate README).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use worldfleet_domain::envelope::DialoguePayload;
use worldfleet_domain::{AcceptedEvent, EventPayload, Intent, PartitionUid};

use crate::embedding::{EmbedError, EmbeddingClassifier};
use crate::rules;

/// The evaluation set shipped with the crate.
pub const EVAL_JSONL: &str = include_str!("../data/eval.jsonl");

/// One labelled line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LabelledText {
    pub text: String,
    pub intent: Intent,
}

/// Parses JSON lines of [`LabelledText`]; blank lines are skipped.
pub fn parse_eval_set(jsonl: &str) -> Result<Vec<LabelledText>, String> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|error| format!("line {}: {error}", number + 1))
        })
        .collect()
}

/// Accuracy of one classifier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TierScore {
    pub correct: usize,
    pub total: usize,
    /// Per label: (correct, total).
    pub per_intent: BTreeMap<&'static str, (usize, usize)>,
    /// Wall time spent classifying.
    pub elapsed: Duration,
}

impl TierScore {
    /// correct / total, 0 when empty.
    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }

    fn count(&mut self, label: Intent, decided: Intent) {
        let entry = self.per_intent.entry(label.as_str()).or_default();
        entry.1 += 1;
        self.total += 1;
        if label == decided {
            entry.0 += 1;
            self.correct += 1;
        }
    }
}

/// Both classifiers' scores on one set.
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    pub rules: TierScore,
    /// `None` when no embedding classifier was given.
    pub embeddings: Option<TierScore>,
}

/// Scores the rules classifier, and `embeddings` when given, on `set`. An embedder failure
/// ends the evaluation with that error: a fallback would score the rules twice.
pub async fn evaluate(
    set: &[LabelledText],
    embeddings: Option<&EmbeddingClassifier>,
) -> Result<EvalReport, EmbedError> {
    let mut report = EvalReport::default();
    let started = Instant::now();
    for example in set {
        let decided = rules::classify(&dialogue_event(&example.text)).intent;
        report.rules.count(example.intent, decided);
    }
    report.rules.elapsed = started.elapsed();
    if let Some(classifier) = embeddings {
        let mut score = TierScore::default();
        let started = Instant::now();
        for example in set {
            let decided = classifier.text_intent(&example.text).await?;
            score.count(example.intent, decided);
        }
        score.elapsed = started.elapsed();
        report.embeddings = Some(score);
    }
    Ok(report)
}

/// A dialogue event saying `text`, as intake would accept it.
pub fn dialogue_event(text: &str) -> AcceptedEvent {
    let payload = EventPayload::Dialogue(DialoguePayload {
        text: text.to_owned(),
        to: None,
    });
    AcceptedEvent {
        event_id: "eval".to_owned(),
        gateway: "eval".to_owned(),
        partition: PartitionUid::parse("eval/district/scene").unwrap_or_else(|_| unreachable!()),
        kind: payload.kind(),
        actor: "player".to_owned(),
        participants: Vec::new(),
        faction: None,
        payload,
        sent_at_ms: 0,
        accepted_at_ms: 0,
    }
}

/// A printable table of `report`.
pub fn render(report: &EvalReport) -> String {
    let mut out = String::new();
    let mut line = |name: &str, score: &TierScore| {
        out.push_str(&format!(
            "{name:<11} accuracy {:>5.1} % ({}/{}) in {:.2?}\n",
            score.accuracy() * 100.0,
            score.correct,
            score.total,
            score.elapsed
        ));
        for (intent, (correct, total)) in &score.per_intent {
            out.push_str(&format!("    {intent:<15} {correct:>3}/{total:<3}\n"));
        }
    };
    line("rules", &report.rules);
    if let Some(embeddings) = &report.embeddings {
        line("embeddings", embeddings);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::embedding::Prototypes;

    fn normalise(text: &str) -> String {
        text.trim().to_lowercase()
    }

    #[test]
    fn eval_set_is_large_labelled_and_apart_from_the_prototypes() {
        let set = parse_eval_set(EVAL_JSONL).unwrap();
        assert!(set.len() >= 200, "only {} examples", set.len());
        let prototypes: HashSet<String> =
            Prototypes::builtin().sentences().map(normalise).collect();
        let mut seen = HashSet::new();
        for example in &set {
            let text = normalise(&example.text);
            assert!(!prototypes.contains(&text), "{text:?} is also a prototype");
            assert!(seen.insert(text.clone()), "{text:?} appears twice");
        }
        let labels: HashSet<Intent> = set.iter().map(|example| example.intent).collect();
        assert!(labels.len() >= 6);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let error = parse_eval_set("{\"text\": \"hi\", \"intent\": \"greeting\"}\n\n{\"text\": 1}")
            .unwrap_err();
        assert!(error.starts_with("line 3"), "{error}");
    }

    #[tokio::test]
    async fn rules_score_is_counted_per_label() {
        let set = parse_eval_set(
            "{\"text\": \"Hail, stranger\", \"intent\": \"greeting\"}\n{\"text\": \"Nice day\", \"intent\": \"threat\"}",
        )
        .unwrap();
        let report = evaluate(&set, None).await.unwrap();
        assert_eq!((report.rules.correct, report.rules.total), (1, 2));
        assert_eq!(report.rules.per_intent.get("threat"), Some(&(0, 1)));
        assert!(report.embeddings.is_none());
    }
}
