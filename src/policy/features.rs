//! The context a policy learns on, built from what the classifier read.
//!
//! Layout (fixed for a given intent head): `[1, ln(1 + prompt_tokens) / 10,
//! p(intent_1), …, p(intent_k)]`. The leading 1 is the bias term, so a model
//! with no other signal learns a per-model mean; length matters because long
//! prompts are where weak models fail; intent probabilities carry what kind of
//! task it is. With no classifier the context is `[1, length]`.

use crate::engine::Reading;

/// Scales ln(1 + tokens) to about [0, 1] for prompts up to ~20k tokens.
const LENGTH_SCALE: f32 = 10.0;

/// The context length for a routing head with `intents` labels.
pub fn dim(intents: usize) -> usize {
    2 + intents
}

pub fn context(reading: Option<&Reading>, prompt_tokens: u32) -> Vec<f32> {
    let mut x = vec![1.0, (1.0 + prompt_tokens as f32).ln() / LENGTH_SCALE];
    if let Some(r) = reading {
        x.extend_from_slice(&r.intent_probs);
    }
    x
}

/// An embedding as little-endian IEEE half floats: 2 bytes per component,
/// ample for unit-norm vectors (relative error < 1e-3) and half the log size.
pub fn pack_f16(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect()
}

/// Inverse of [`pack_f16`].
pub fn unpack_f16(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trip_is_close() {
        let v: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.37).sin() / 14.0).collect();
        let back = unpack_f16(&pack_f16(&v));
        assert_eq!(back.len(), v.len());
        for (a, b) in v.iter().zip(&back) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn context_without_classifier_is_bias_and_length() {
        let x = context(None, 0);
        assert_eq!(x, vec![1.0, 0.0]);
    }
}
