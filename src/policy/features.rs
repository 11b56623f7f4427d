//! The context a policy learns on, built from what the classifier read and
//! from what the request asks of a model.
//!
//! Layout (fixed for a given intent head and quality head): `[1,
//! ln(1 + prompt_tokens) / 10, p(intent_1), …, p(intent_k), tools, images,
//! json, ln(user_turns) / 4, q̂(model_1), …, q̂(model_m)]`.
//! The leading 1 is the bias term, so a model with no other signal learns a
//! per-model mean; length matters because long prompts are where weak
//! models fail; intent probabilities carry what kind of task it is; the
//! request's shape lets the bandit learn apart for tool calls, images, JSON
//! answers and long conversations (a model good at chat may be poor at
//! calling tools). The quality head's predictions (`classify::quality`)
//! carry what the whole embedding says of each model's chance on this
//! prompt; the bandit's prior for a model is centred on its own prediction
//! (see `policy::bandit`). With no classifier the context is `[1, length,
//! shape]`.
//!
//! Without a quality head the shape comes last and is all zeros for a plain
//! single-turn chat, so a context logged before it existed is this layout's
//! prefix: [`widen`]
//! appends zeros, which is exactly right for such requests (the public
//! datasets, and most logged traffic) and treats older tool or multi-turn
//! rows as plain.

use super::bandit::Anchor;

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

/// The context length for a routing head with `intents` labels and a
/// quality head over `quality` models.
pub fn dim(intents: usize, quality: usize) -> usize {
    2 + intents + SHAPE_DIM + quality
}

/// Where model `k` of the quality head's predictions sits in the context.
pub fn quality_index(intents: usize, k: usize) -> usize {
    2 + intents + SHAPE_DIM + k
}

/// A service's context layout: its length, and where each catalog model's
/// prior is centred (see `policy::bandit::Anchor`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    pub dim: usize,
    /// Per catalog model, in catalog order.
    pub anchors: Vec<Option<Anchor>>,
}

impl Layout {
    /// The layout for a routing head with `intents` labels, a quality head
    /// over `quality` models, and a catalog of (name, declared prior).
    ///
    /// A model the quality head knows is anchored on its own prediction. A
    /// model it does not know (added since the head was fitted) starts from
    /// its nearest known model's prediction, nearest by declared prior, shifted
    /// by the difference of the declared priors: what it is said to be worth,
    /// shaped by how a model like it fares on this kind of prompt.
    pub fn new(intents: usize, quality: &[String], catalog: &[(String, f64)]) -> Layout {
        let known: Vec<(usize, f64)> = catalog
            .iter()
            .filter_map(|(name, prior)| {
                let k = quality.iter().position(|q| q == name)?;
                Some((quality_index(intents, k), *prior))
            })
            .collect();
        let anchors = catalog
            .iter()
            .map(|(name, prior)| {
                if let Some(k) = quality.iter().position(|q| q == name) {
                    return Some(Anchor {
                        feature: quality_index(intents, k),
                        offset: 0.0,
                    });
                }
                known
                    .iter()
                    .min_by(|a, b| (a.1 - prior).abs().total_cmp(&(b.1 - prior).abs()))
                    .map(|&(feature, near)| Anchor {
                        feature,
                        offset: prior - near,
                    })
            })
            .collect();
        Layout {
            dim: dim(intents, quality.len()),
            anchors,
        }
    }
}

/// The context for a prompt of `prompt_tokens` tokens, the routing head's
/// probabilities in label order (`None` without a classifier), the request's
/// shape, and the quality head's predictions (empty without one).
pub fn context(
    intent_probs: Option<&[f32]>,
    prompt_tokens: u32,
    shape: &Shape,
    quality: &[f64],
) -> Vec<f32> {
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
    x.extend(quality.iter().map(|&q| q as f32));
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
            context(None, 0, &Shape::default(), &[]),
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
            &[0.25],
        );
        assert_eq!(x[..6], [1.0, 0.0, 0.5, 0.5, 1.0, 0.0]);
        assert!((x[7] - 3f32.ln() / TURNS_SCALE).abs() < 1e-6);
        assert_eq!(x[quality_index(2, 0)], 0.25);
        assert_eq!(x.len(), dim(2, 1));
    }

    #[test]
    fn models_anchor_on_their_own_prediction_or_the_nearest_known_one() {
        let catalog = [
            ("strong".to_string(), 0.9),
            ("weak".to_string(), 0.4),
            ("new".to_string(), 0.8),
        ];
        let quality = ["weak".to_string(), "strong".to_string()];
        let l = Layout::new(3, &quality, &catalog);
        assert_eq!(l.dim, dim(3, 2));
        let a = |feature, offset| Some(Anchor { feature, offset });
        assert_eq!(l.anchors[0], a(quality_index(3, 1), 0.0));
        assert_eq!(l.anchors[1], a(quality_index(3, 0), 0.0));
        let new = l.anchors[2].unwrap();
        assert_eq!(new.feature, quality_index(3, 1));
        assert!((new.offset + 0.1).abs() < 1e-12);
        assert_eq!(Layout::new(3, &[], &catalog).anchors, vec![None; 3]);
    }

    #[test]
    fn an_older_context_widens_to_a_plain_requests() {
        let plain = context(Some(&[0.2, 0.8]), 40, &Shape::default(), &[]);
        let older = &plain[..plain.len() - SHAPE_DIM];
        assert_eq!(widen(older, dim(2, 0)).unwrap().as_ref(), plain.as_slice());
        assert_eq!(widen(&plain, dim(2, 0)).unwrap().as_ref(), plain.as_slice());
        assert!(widen(&plain[..3], dim(2, 0)).is_none());
    }
}
