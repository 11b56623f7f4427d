//! Reading a prompt: the local classifier's embedding of one text, and the
//! intents the heads see in it. Which text of a conversation is read is the
//! engine's choice; the encoder keeps at most `classifier.max_tokens` tokens
//! of it, from its head and tail.

use std::path::Path;

use super::quality::QualityHead;
use super::{ClassifierConfig, ClassifyError, Embedder, IntentHead};
use crate::config::ClassifierSettings;

/// Softmax temperature of user-defined nearest-centroid heads: a cosine gap
/// of 0.1 between two centroids becomes e² odds.
const CENTROID_TEMPERATURE: f32 = 0.05;

/// A label and the head's probability for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    pub label: String,
    pub confidence: f64,
}

/// What the classifier read in one request.
#[derive(Debug, Clone)]
pub struct Reading {
    /// L2-normalised sentence embedding.
    pub embedding: Vec<f32>,
    pub tokens: usize,
    pub truncated: bool,
    /// Worker time spent tokenising and encoding.
    pub micros: u64,
    /// The routing intent: the default head's, or the user head's when it replaces it.
    pub intent: Option<Intent>,
    /// The routing head's probabilities, in its label order (bandit features).
    pub intent_probs: Vec<f32>,
    /// The user-defined head's intent when it runs beside the default one.
    pub custom_intent: Option<Intent>,
    /// The quality head's P(good answer) per model, in its model order
    /// (bandit features; empty without a quality head).
    pub quality: Vec<f64>,
}

pub struct Reader {
    /// The full encoder or the static table (`classifier.mode`).
    classifier: Embedder,
    /// The head whose probabilities become routing features.
    routing_head: Option<IntentHead>,
    /// A user head reported beside the routing head.
    beside_head: Option<IntentHead>,
    /// Per-model quality predictors whose outputs become routing features.
    quality_head: Option<QualityHead>,
}

impl Reader {
    /// Loads the encoder, the default head and builds user-defined intents.
    /// Blocking: call it before serving (or from `spawn_blocking`).
    pub fn load(s: &ClassifierSettings) -> Result<Reader, ClassifyError> {
        let cfg = ClassifierConfig {
            model_dir: s.model_dir.clone(),
            workers: s.workers,
            queue_depth: s.queue_depth,
            max_tokens: s.max_tokens,
            max_queue_wait: s.max_queue_wait,
        };
        let classifier = Embedder::load(&cfg, s.static_table.as_deref())?;
        let default_head = s.intent_head.as_deref().map(load_head).transpose()?;
        let user_head = user_intents(&classifier, s)?;
        let (routing_head, beside_head) = match (default_head, user_head) {
            (d, Some(u)) if s.intents_replace || d.is_none() => (Some(u), None),
            (d, u) => (d, u),
        };
        // A head reads the encoder's vectors: its width must be theirs.
        let fits = |what: &str, dim: Option<usize>| match dim {
            Some(d) if d != classifier.dim() => Err(ClassifyError::Intent(format!(
                "{what} head has dimension {d} but the encoder {}",
                classifier.dim()
            ))),
            _ => Ok(()),
        };
        fits("intent", routing_head.as_ref().map(IntentHead::dim))?;
        let quality_head = s
            .quality_head
            .as_deref()
            .map(QualityHead::load)
            .transpose()?;
        fits("quality", quality_head.as_ref().map(QualityHead::dim))?;
        Ok(Reader {
            classifier,
            routing_head,
            beside_head,
            quality_head,
        })
    }

    /// The quality head's models (the order of `Reading::quality`).
    pub fn quality_models(&self) -> &[String] {
        self.quality_head.as_ref().map_or(&[], |h| &h.models)
    }

    /// The routing head's labels (the order of `Reading::intent_probs`).
    pub fn intent_labels(&self) -> Vec<String> {
        self.routing_head
            .as_ref()
            .map(|h| h.labels().to_vec())
            .unwrap_or_default()
    }

    pub fn dim(&self) -> usize {
        self.classifier.dim()
    }

    pub async fn read(&self, text: &str) -> Result<Reading, ClassifyError> {
        let c = self.classifier.classify(text).await?;
        let (intent, intent_probs) = match &self.routing_head {
            Some(h) => {
                // Features in label order (`predict` sorts by probability).
                let probs = h.probabilities(&c.embedding);
                // Below the head's calibrated threshold the prompt fits no
                // intent: rules see "oos", not a wrong guess.
                let intent = h
                    .labels()
                    .iter()
                    .zip(&probs)
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(label, &p)| Intent {
                        label: match h.oos_threshold() {
                            Some(t) if p < t => super::intent::OOS_LABEL.to_owned(),
                            _ => label.clone(),
                        },
                        confidence: f64::from(p),
                    });
                (intent, probs)
            }
            None => (None, Vec::new()),
        };
        let custom_intent = self
            .beside_head
            .as_ref()
            .and_then(|h| best(&h.predict(&c.embedding)));
        let quality = self
            .quality_head
            .as_ref()
            .map_or_else(Vec::new, |h| h.predict(&c.embedding));
        Ok(Reading {
            embedding: c.embedding,
            tokens: c.tokens,
            truncated: c.truncated,
            micros: c.micros,
            intent,
            intent_probs,
            custom_intent,
            quality,
        })
    }
}

fn load_head(path: &Path) -> Result<IntentHead, ClassifyError> {
    IntentHead::load(path)
}

fn user_intents(c: &Embedder, s: &ClassifierSettings) -> Result<Option<IntentHead>, ClassifyError> {
    if s.intents.is_empty() {
        return Ok(None);
    }
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for it in &s.intents {
        for e in it.examples.iter().filter(|e| !e.trim().is_empty()) {
            texts.push(e.as_str());
            labels.push(it.name.clone());
        }
    }
    let embeddings = c.embed_batch_blocking(&texts)?;
    let examples: Vec<(Vec<f32>, String)> = embeddings.into_iter().zip(labels).collect();
    IntentHead::from_centroids(&examples, CENTROID_TEMPERATURE).map(Some)
}

fn best(probs: &[(String, f32)]) -> Option<Intent> {
    probs
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(label, p)| Intent {
            label: label.clone(),
            confidence: f64::from(*p),
        })
}
