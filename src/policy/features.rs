//! The context a policy learns on, built from what the classifier read and
//! from what the request asks of a model.
//!
//! Layout (fixed for a given intent head): `[1, ln(1 + prompt_tokens) / 10,
//! p(intent_1), …, p(intent_k), tools, images, json, ln(user_turns) / 4]`.
//! The leading 1 is the bias term, so a model with no other signal learns a
//! per-model mean; length matters because long prompts are where weak
//! models fail; intent probabilities carry what kind of task it is; the
//! request's shape lets the bandit learn apart for tool calls, images, JSON
//! answers and long conversations (a model good at chat may be poor at
//! calling tools). With no classifier the context is `[1, length, shape]`.
//!
//! The shape comes last and is all zeros for a plain single-turn chat, so a
//! context logged before it existed is this layout's prefix: [`widen`]
//! appends zeros, which is exactly right for such requests (the public
//! datasets, and most logged traffic) and treats older tool or multi-turn
//! rows as plain.

/// Scales ln(1 + tokens) to about [0, 1] for prompts up to ~20k tokens.
const LENGTH_SCALE: f32 = 10.0;

/// Scales ln(user turns) to about [0, 1] for conversations up to ~50 turns.
const TURNS_SCALE: f32 = 4.0;

/// Features of the request's shape, after the intents.
pub const SHAPE_DIM: usize = 4;

/// What a request asks of a model, as the policy sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Tools are offered, or the conversation holds tool calls or results.
    pub tools: bool,
    pub images: bool,
    /// A JSON answer is required.
    pub json: bool,
    /// User turns in the conversation (a first turn is 1).
    pub user_turns: u32,
}

/// The context length for a routing head with `intents` labels.
pub fn dim(intents: usize) -> usize {
    2 + intents + SHAPE_DIM
}

/// The context for a prompt of `prompt_tokens` tokens, the routing head's
/// probabilities in label order (`None` without a classifier), and the
/// request's shape.
pub fn context(intent_probs: Option<&[f32]>, prompt_tokens: u32, shape: &Shape) -> Vec<f32> {
    let mut x = vec![1.0, (1.0 + prompt_tokens as f32).ln() / LENGTH_SCALE];
    if let Some(p) = intent_probs {
        x.extend_from_slice(p);
    }
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    x.extend([
        flag(shape.tools),
        flag(shape.images),
        flag(shape.json),
        (shape.user_turns.max(1) as f32).ln() / TURNS_SCALE,
    ]);
    x
}

/// `x` in a layout of `dim` features: as is, or a context logged before the
/// shape features with them appended as zeros (see the module docs);
/// `None` for any other layout.
pub fn widen(x: &[f32], dim: usize) -> Option<std::borrow::Cow<'_, [f32]>> {
    if x.len() == dim {
        Some(std::borrow::Cow::Borrowed(x))
    } else if x.len() + SHAPE_DIM == dim {
        let mut wide = x.to_vec();
        wide.resize(dim, 0.0);
        Some(std::borrow::Cow::Owned(wide))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_without_classifier_is_bias_length_and_shape() {
        assert_eq!(
            context(None, 0, &Shape::default()),
            vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        let x = context(
            Some(&[0.5, 0.5]),
            0,
            &Shape {
                tools: true,
                images: false,
                json: true,
                user_turns: 3,
            },
        );
        assert_eq!(x[..6], [1.0, 0.0, 0.5, 0.5, 1.0, 0.0]);
        assert!((x[7] - 3f32.ln() / TURNS_SCALE).abs() < 1e-6);
    }

    #[test]
    fn an_older_context_widens_to_a_plain_requests() {
        let plain = context(Some(&[0.2, 0.8]), 40, &Shape::default());
        let older = &plain[..plain.len() - SHAPE_DIM];
        assert_eq!(widen(older, dim(2)).unwrap().as_ref(), plain.as_slice());
        assert_eq!(widen(&plain, dim(2)).unwrap().as_ref(), plain.as_slice());
        assert!(widen(&plain[..3], dim(2)).is_none());
    }
}
