//! Per-model quality predictors over the full embedding: for each model of a
//! catalog, a logistic regression of P(good answer) on the standardised
//! 384-d embedding. The predictions become part of the bandit's context (see
//! `policy::features`), and the bandit's prior for a model is centred on its
//! own prediction, so the bandit explores around a strong estimate instead of
//! from scratch.
//!
//! Fitted offline (`switchyard eval`, `switchyard train --dataset`) and shipped
//! as a JSON file beside the routing head (`classifier.quality_head`). A
//! prediction is one 384 × models multiply-add: microseconds.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ClassifyError;

/// A fitted quality head: one logistic regression per model, sharing the
/// standardisation of the embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityHead {
    /// Model names, in the order of the predictions.
    pub models: Vec<String>,
    /// Per embedding dimension: the training mean and 1 / standard deviation.
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// (dim + 1) × models, row-major; the last row is the bias.
    pub w: Vec<f64>,
    /// The L2 strength it was fitted with (cross-validated).
    pub lambda: f64,
}

impl QualityHead {
    /// The embedding dimension the head expects.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Predicted P(good answer) per model, in [`QualityHead::models`] order.
    /// An embedding of the wrong length predicts from the bias alone (each
    /// model's base rate) rather than from misaligned weights.
    pub fn predict(&self, e: &[f32]) -> Vec<f64> {
        let m = self.models.len();
        let mut s = self.w[self.dim() * m..].to_vec();
        if e.len() == self.dim() {
            for (j, ((&a, mu), sc)) in e.iter().zip(&self.mean).zip(&self.scale).enumerate() {
                let v = (f64::from(a) - mu) * sc;
                s.iter_mut()
                    .zip(&self.w[j * m..(j + 1) * m])
                    .for_each(|(s, w)| *s += v * w);
            }
        }
        s.into_iter().map(sigmoid).collect()
    }

    /// Reads and checks a head file.
    pub fn load(path: &Path) -> Result<QualityHead, ClassifyError> {
        let err = |reason: String| ClassifyError::IntentFile {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let head: QualityHead = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let (d, m) = (head.mean.len(), head.models.len());
        if m == 0 || head.scale.len() != d || head.w.len() != (d + 1) * m {
            return Err(err(format!(
                "inconsistent shapes: {m} models, {d} means, {} scales, {} weights",
                head.scale.len(),
                head.w.len()
            )));
        }
        if !head
            .w
            .iter()
            .chain(&head.mean)
            .chain(&head.scale)
            .all(|v| v.is_finite())
        {
            return Err(err("non-finite weights".into()));
        }
        Ok(head)
    }

    pub fn save(&self, path: &Path) -> Result<(), ClassifyError> {
        let err = |reason: String| ClassifyError::IntentFile {
            path: path.to_owned(),
            reason,
        };
        let text = serde_json::to_string(self).map_err(|e| err(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| err(e.to_string()))
    }
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> QualityHead {
        QualityHead {
            models: vec!["a".into(), "b".into()],
            mean: vec![0.0, 0.0],
            scale: vec![1.0, 1.0],
            w: vec![2.0, -2.0, 0.0, 0.0, 0.0, 0.0],
            lambda: 0.1,
        }
    }

    #[test]
    fn predicts_per_model_and_falls_back_to_the_base_rate() {
        let h = head();
        let p = h.predict(&[1.0, 0.0]);
        assert!(p[0] > 0.85 && p[1] < 0.15, "{p:?}");
        assert_eq!(h.predict(&[1.0]), vec![0.5, 0.5]);
    }

    #[test]
    fn round_trips_and_rejects_bad_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.json");
        head().save(&path).unwrap();
        assert_eq!(QualityHead::load(&path).unwrap(), head());
        let mut bad = head();
        bad.w.pop();
        bad.save(&path).unwrap();
        assert!(QualityHead::load(&path).is_err());
    }
}
