//! Expected output tokens per model and intent, learned from the attempts
//! log, so that cost estimates follow how long each model really answers
//! each kind of prompt (a code answer is longer than a yes/no).
//!
//! Seeded from the log at start, updated after every successful attempt.
//! Until a (model, intent) pair has `MIN_SAMPLES` answers, the model's mean
//! over all intents is used, then `routing.default_output_tokens`.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::store::{Store, StoreError};

/// Answers needed before a mean is trusted over the fallback.
const MIN_SAMPLES: u64 = 5;
/// The key of a model's mean over every intent.
const ANY_INTENT: &str = "*";

#[derive(Default)]
pub struct OutputTokens {
    /// (model, intent) -> (sum of completion tokens, answers)
    sums: RwLock<HashMap<(String, String), (u64, u64)>>,
}

impl OutputTokens {
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let t = OutputTokens::default();
        for (model, intent, sum, n) in store.completion_token_sums().await? {
            t.add(&model, &intent, sum, n);
        }
        Ok(t)
    }

    fn add(&self, model: &str, intent: &str, sum: u64, n: u64) {
        let mut m = self.sums.write().unwrap_or_else(|p| p.into_inner());
        for key in [intent, ANY_INTENT] {
            let e = m.entry((model.to_owned(), key.to_owned())).or_default();
            e.0 += sum;
            e.1 += n;
        }
    }

    /// Records one successful answer.
    pub fn observe(&self, model: &str, intent: Option<&str>, completion_tokens: u32) {
        self.add(model, intent.unwrap_or(""), u64::from(completion_tokens), 1);
    }

    /// The learned expectation, if there is enough data.
    pub fn expected(&self, model: &str, intent: Option<&str>) -> Option<u32> {
        let m = self.sums.read().unwrap_or_else(|p| p.into_inner());
        [intent.unwrap_or(""), ANY_INTENT]
            .into_iter()
            .filter_map(|k| m.get(&(model.to_owned(), k.to_owned())))
            .find(|(_, n)| *n >= MIN_SAMPLES)
            .map(|(s, n)| u32::try_from(s.div_ceil(*n)).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_samples_then_prefers_the_intent_mean() {
        let t = OutputTokens::default();
        for _ in 0..4 {
            t.observe("m", Some("code"), 400);
        }
        assert_eq!(t.expected("m", Some("code")), None);
        t.observe("m", Some("code"), 400);
        assert_eq!(t.expected("m", Some("code")), Some(400));
        // Another intent falls back to the model's mean over all intents.
        assert_eq!(t.expected("m", Some("chitchat")), Some(400));
        for _ in 0..5 {
            t.observe("m", Some("chitchat"), 20);
        }
        assert_eq!(t.expected("m", Some("chitchat")), Some(20));
        assert_eq!(t.expected("m", None), Some(210));
        assert_eq!(t.expected("other", None), None);
    }
}
