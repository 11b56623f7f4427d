//! The context a policy learns on, built from what the classifier read.
//!
//! Layout (fixed for a given intent head): `[1, ln(1 + prompt_tokens) / 10,
//! p(intent_1), …, p(intent_k)]`. The leading 1 is the bias term, so a model
//! with no other signal learns a per-model mean; length matters because long
//! prompts are where weak models fail; intent probabilities carry what kind of
//! task it is. With no classifier the context is `[1, length]`.

/// Scales ln(1 + tokens) to about [0, 1] for prompts up to ~20k tokens.
const LENGTH_SCALE: f32 = 10.0;

/// The context length for a routing head with `intents` labels.
pub fn dim(intents: usize) -> usize {
    2 + intents
}

/// The context for a prompt of `prompt_tokens` tokens and the routing head's
/// probabilities in label order (`None` without a classifier).
pub fn context(intent_probs: Option<&[f32]>, prompt_tokens: u32) -> Vec<f32> {
    let mut x = vec![1.0, (1.0 + prompt_tokens as f32).ln() / LENGTH_SCALE];
    if let Some(p) = intent_probs {
        x.extend_from_slice(p);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_without_classifier_is_bias_and_length() {
        let x = context(None, 0);
        assert_eq!(x, vec![1.0, 0.0]);
    }
}
