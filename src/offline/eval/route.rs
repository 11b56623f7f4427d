//! Routing the evaluation prompts: the offline sweep over cost weights with
//! the fitted bandit, the kNN baseline on the same sweep, and the online run
//! where the bandit learns from the dataset's outcomes as it goes.
//!
//! Decisions go through [`Bandit::decide`], the service's own policy code,
//! with candidates built as `eligibility::screen` builds them (every model
//! eligible: datasets have no constraints).

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::data::Prepared;
use super::fit::{CostModel, Knn};
use crate::offline::replay::{DatasetModel, Row};
use crate::policy::bandit::{Anchor, Bandit, BanditParams, BanditState};
use crate::policy::{Candidate, Context, Policy};

/// The prior quality of a model with no data: the catalog's default.
pub const PRIOR_QUALITY: f64 = 0.5;

/// Model choices (indices into the dataset's models), one per evaluation prompt.
pub type Choices = Vec<usize>;

/// Cost weights from 0 through a geometric grid wide enough to span "the best
/// model regardless of cost" to "the cheapest model always": the smallest
/// weight makes the most expensive model's cost worth 0.001 quality, the
/// largest makes the cheapest model's cost worth 10.
pub fn sweep(costs: &CostModel, prepared: &[Prepared], models: usize, points: usize) -> Vec<f64> {
    let n = prepared.len().max(1) as f64;
    let means: Vec<f64> = (0..models)
        .map(|m| {
            prepared
                .iter()
                .map(|p| costs.expected(m, p.prompt_tokens))
                .sum::<f64>()
                / n
        })
        .collect();
    let hi_cost = means.iter().copied().fold(0.0, f64::max);
    let lo_cost = means
        .iter()
        .copied()
        .filter(|c| *c > 0.0)
        .fold(f64::INFINITY, f64::min);
    let mut w = vec![0.0];
    if hi_cost > 0.0 && lo_cost.is_finite() && points >= 2 {
        let (a, b) = ((1e-3 / hi_cost).ln(), (10.0 / lo_cost).ln());
        w.extend((0..points).map(|i| (a + (b - a) * i as f64 / (points - 1) as f64).exp()));
    }
    w
}

fn candidates(p: &Prepared, costs: &CostModel, models: usize) -> Vec<Candidate> {
    (0..models)
        .map(|m| Candidate {
            model: m,
            eligible: true,
            reason: String::new(),
            expected_quality: PRIOR_QUALITY,
            quality_std: 0.0,
            expected_cost_usd: costs.expected(m, p.prompt_tokens),
            load: Default::default(),
            score: 0.0,
            probability: 0.0,
        })
        .collect()
}

/// The catalog as the bandit sees it: (name, prior quality) in order.
pub fn arms(models: &[DatasetModel]) -> Vec<(String, f64)> {
    models
        .iter()
        .map(|m| (m.name.clone(), PRIOR_QUALITY))
        .collect()
}

/// The greedy snapshot of a fitted state: no exploration, so each setting
/// shows what the learned policy believes is best (one draw is then exact).
pub fn greedy(params: &BanditParams) -> BanditParams {
    BanditParams::try_new(params.lambda(), params.sigma(), 0.0, 1, 0.0)
        .expect("lambda and sigma come from valid params: this is a bug")
}

/// Routes every prompt once at cost weight `w` with a fixed bandit snapshot.
pub fn offline(
    bandit: &Bandit,
    prepared: &[Prepared],
    costs: &CostModel,
    models: usize,
    w: f64,
    seed: u64,
) -> Choices {
    let mut rng = StdRng::seed_from_u64(seed);
    prepared
        .iter()
        .map(|p| {
            let ctx = Context {
                cost_weight: w,
                features: p.features.clone(),
                prompt_tokens: p.prompt_tokens,
            };
            bandit
                .decide(&ctx, candidates(p, costs, models), &mut rng)
                .model
        })
        .collect()
}

/// Routes every prompt at each cost weight of the sweep (setting `i` seeded
/// with `seed ^ i`), ticking `bar` once per setting.
pub fn offline_sweep(
    bandit: &Bandit,
    prepared: &[Prepared],
    costs: &CostModel,
    models: usize,
    weights: &[f64],
    seed: u64,
    bar: &indicatif::ProgressBar,
) -> Vec<Choices> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            bar.inc(1);
            offline(bandit, prepared, costs, models, w, seed ^ i as u64)
        })
        .collect()
}

/// The kNN baseline on the same sweep: see [`predicted`].
pub fn knn(
    knn: &Knn<'_>,
    embeddings: &[Vec<f32>],
    prepared: &[Prepared],
    costs: &CostModel,
    weights: &[f64],
) -> Vec<Choices> {
    let q: Vec<Vec<f64>> = embeddings.iter().map(|e| knn.predict(e)).collect();
    predicted(&q, prepared, costs, weights)
}

/// A quality predictor's router on the sweep: per prompt, argmax of predicted
/// quality − w·cost, ties to the cheaper model then the earlier one (as the
/// policies do).
pub fn predicted(
    predicted: &[Vec<f64>],
    prepared: &[Prepared],
    costs: &CostModel,
    weights: &[f64],
) -> Vec<Choices> {
    weights
        .iter()
        .map(|&w| {
            predicted
                .iter()
                .zip(prepared)
                .map(|(q, p)| {
                    let cost = |m: usize| costs.expected(m, p.prompt_tokens);
                    (0..q.len())
                        .max_by(|&a, &b| {
                            (q[a] - w * cost(a))
                                .total_cmp(&(q[b] - w * cost(b)))
                                .then(cost(b).total_cmp(&cost(a)))
                                .then(b.cmp(&a))
                        })
                        .unwrap_or(0)
                })
                .collect()
        })
        .collect()
}

/// The online run: the bandit starts from `start` (empty: the priors only),
/// routes prompts in order with the configured exploration, and learns the
/// chosen model's quality after each one; the snapshot is rebuilt every
/// `refit_every` prompts, as the service rebuilds it off the request path.
#[allow(clippy::too_many_arguments)]
pub fn online(
    rows: &[Row],
    prepared: &[Prepared],
    models: &[DatasetModel],
    costs: &CostModel,
    params: BanditParams,
    mut state: BanditState,
    anchors: &[Option<Anchor>],
    cost_weight: f64,
    refit_every: usize,
    seed: u64,
) -> anyhow::Result<Choices> {
    let arms = arms(models);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bandit = Bandit::build_anchored(&state, params, &arms, anchors);
    let mut choices = Vec::with_capacity(rows.len());
    for (i, (r, p)) in rows.iter().zip(prepared).enumerate() {
        let ctx = Context {
            cost_weight,
            features: p.features.clone(),
            prompt_tokens: p.prompt_tokens,
        };
        let m = bandit
            .decide(&ctx, candidates(p, costs, models.len()), &mut rng)
            .model;
        state.observe(
            &models[m].name,
            &p.features,
            r.outcomes[&models[m].name].quality,
        )?;
        choices.push(m);
        if (i + 1) % refit_every.max(1) == 0 {
            bandit = Bandit::build_anchored(&state, params, &arms, anchors);
        }
    }
    Ok(choices)
}
