//! Prototype classification: each label is described by a few example sentences; a text gets
//! the label whose prototype centroid is closest by cosine similarity. Pure functions over
//! embeddings; the HTTP handler embeds texts and prototypes in one pool request.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{InferenceError, Result};

/// Cosine similarity of a text to one label.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelScore {
    /// The label.
    pub label: String,
    /// Cosine similarity to the label's centroid, in [-1, 1].
    pub score: f32,
}

/// Classification of one text: the best label and every label's score, best first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Classification {
    /// Position of the text in the request.
    pub index: usize,
    /// Label with the highest score.
    pub label: String,
    /// That label's score.
    pub score: f32,
    /// All labels, highest score first.
    pub scores: Vec<LabelScore>,
}

/// Checks a label set: at least one label, each with at least one non-empty list of
/// prototypes. Returns the prototypes flattened in label order.
pub fn flatten_prototypes(labels: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>> {
    if labels.is_empty() {
        return Err(InferenceError::InvalidRequest(
            "labels must not be empty".to_owned(),
        ));
    }
    if let Some((label, _)) = labels.iter().find(|(_, prototypes)| prototypes.is_empty()) {
        return Err(InferenceError::InvalidRequest(format!(
            "label {label:?} has no prototype sentences"
        )));
    }
    Ok(labels.values().flatten().cloned().collect())
}

/// Unit-length mean of unit vectors (a label's centroid direction).
fn centroid(vectors: &[Vec<f32>]) -> Vec<f32> {
    let width = vectors.first().map_or(0, Vec::len);
    let mut sum = vec![0.0f32; width];
    for vector in vectors {
        for (total, value) in sum.iter_mut().zip(vector) {
            *total += value;
        }
    }
    let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    sum.iter_mut().for_each(|value| *value /= norm);
    sum
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scores every input embedding against every label. `prototype_embeddings` must be in the
/// order of [`flatten_prototypes`]; all embeddings must be L2-normalised.
pub fn classify(
    labels: &BTreeMap<String, Vec<String>>,
    input_embeddings: &[Vec<f32>],
    prototype_embeddings: &[Vec<f32>],
) -> Result<Vec<Classification>> {
    let expected: usize = labels.values().map(Vec::len).sum();
    if prototype_embeddings.len() != expected {
        return Err(InferenceError::Model(format!(
            "{} prototype embeddings for {expected} prototypes",
            prototype_embeddings.len()
        )));
    }
    let mut centroids = Vec::with_capacity(labels.len());
    let mut rest = prototype_embeddings;
    for (label, prototypes) in labels {
        let (own, tail) = rest.split_at(prototypes.len());
        centroids.push((label, centroid(own)));
        rest = tail;
    }
    let mut classifications = Vec::with_capacity(input_embeddings.len());
    for (index, embedding) in input_embeddings.iter().enumerate() {
        let mut scores: Vec<LabelScore> = centroids
            .iter()
            .map(|(label, centre)| LabelScore {
                label: (*label).clone(),
                score: dot(embedding, centre),
            })
            .collect();
        // Stable sort: ties keep label order, so results are deterministic.
        scores.sort_by(|a, b| b.score.total_cmp(&a.score));
        let Some(best) = scores.first().cloned() else {
            return Err(InferenceError::InvalidRequest(
                "labels must not be empty".to_owned(),
            ));
        };
        classifications.push(Classification {
            index,
            label: best.label,
            score: best.score,
            scores,
        });
    }
    Ok(classifications)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_label_whose_centroid_is_closest() {
        let labels = BTreeMap::from([
            ("east".to_owned(), vec!["e1".to_owned(), "e2".to_owned()]),
            ("north".to_owned(), vec!["n1".to_owned()]),
        ]);
        let prototypes = vec![vec![1.0, 0.0], vec![0.8, 0.6], vec![0.0, 1.0]];
        let inputs = vec![vec![0.0, 1.0], vec![1.0, 0.0]];
        let result = classify(&labels, &inputs, &prototypes).expect("classify");
        assert_eq!(result[0].label, "north");
        assert!((result[0].score - 1.0).abs() < 1e-6);
        assert_eq!(result[1].label, "east");
        assert_eq!(result[1].scores.len(), 2);
        assert!(result[1].scores[0].score > result[1].scores[1].score);
    }

    #[test]
    fn rejects_labels_without_prototypes() {
        let labels = BTreeMap::from([("empty".to_owned(), Vec::new())]);
        assert!(matches!(
            flatten_prototypes(&labels),
            Err(InferenceError::InvalidRequest(_))
        ));
        assert!(flatten_prototypes(&BTreeMap::new()).is_err());
    }
}
