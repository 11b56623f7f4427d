//! The contextual bandit policy: per-model Bayesian linear regression of
//! quality on the request's features, and linear Thompson sampling with an
//! exploration floor and exact logged propensities.
//!
//! Learning and selection are split:
//! - [`BanditState`] holds per-model sufficient statistics that are plain sums
//!   over observations (n, Σxxᵀ, Σr·x, Σr²), keyed by model name so they survive
//!   catalog edits. Sums merge exactly (up to float rounding), so states learned
//!   from shards of a log combine into the state of the whole log, and replacing
//!   a reward is a delta.
//! - [`Bandit`] is an immutable snapshot built from a state off the request path
//!   (O(models·d³)): per model the posterior mean θ̂ and covariance σ²A⁻¹.
//!   Selection ([`Policy::decide`]) costs O(d²) per model plus the Monte Carlo
//!   draws of `propensity`.
//!
//! The model is ridge regression as in LinUCB (Li, Chu, Langford & Schapire
//! 2010, "A Contextual-Bandit Approach to Personalized News Article
//! Recommendation", WWW) with the Gaussian posterior used by linear Thompson
//! sampling (Agrawal & Goyal 2013, "Thompson Sampling for Contextual Bandits
//! with Linear Payoffs", ICML):
//!
//! ```text
//! A = λI + Σ x xᵀ     b = λ·m0 + Σ r x     θ̂ = A⁻¹b     Cov(θ) = σ²A⁻¹
//! ```
//!
//! where m0 = (prior quality, 0, …, 0): the prior is worth λ pseudo-observations
//! in every direction, centred on the configured prior quality through the bias
//! feature x₀ = 1 that the caller puts first. A model *anchored* at feature j
//! (a quality-head prediction, see `policy::features`) with offset δ has
//! m0 = e_j + δ·e₀ instead: with no data its mean is that prediction plus δ,
//! and data corrects it. A model the quality head knows is anchored on its own
//! prediction (δ = 0); a new one on its nearest known model's, shifted by
//! the difference of their declared priors. The prior is applied in
//! [`Bandit::build`] and is never part of the sums, so states merge exactly.
//! Agrawal & Goyal sample θ with covariance v²σ²A⁻¹; [`BanditParams`]'s
//! `exploration` is that v.
//!
//! Features should be scaled so that ‖x‖ is O(1): a model with no data has
//! predictive std σ·‖x‖/√λ, and that is how much it gets explored.

mod linalg;
mod propensity;
mod state;

pub use self::state::{ArmStats, BanditState, StateError};
// The settings are config's (validated at load); the bandit is what reads them.
pub use crate::config::{BanditParams, InvalidParams};

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use self::linalg::Cholesky;
use self::propensity::Ziggurat;
use super::{Candidate, Context, Decision, Policy};

/// Where a model's prior mean is centred: m0 = e_feature + offset·e₀.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    pub feature: usize,
    pub offset: f64,
}

/// The bound on a model with little evidence (one added to the catalog since
/// the policy learned): while it has fewer than `evidence` observations and
/// a model with more is eligible, it is picked with probability at most
/// `share`, the rest going to the others in proportion. The bound is part
/// of the procedure that picks, so logged propensities stay exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewModels {
    pub share: f64,
    pub evidence: u64,
}

impl NewModels {
    /// No bound.
    pub const OFF: NewModels = NewModels {
        share: 1.0,
        evidence: 0,
    };
}

/// One model's posterior: θ̂ and σ²A⁻¹ packed for [`linalg::quadratic_form`].
#[derive(Debug, Clone)]
struct Posterior {
    theta: Vec<f64>,
    cov: Vec<f64>,
}

/// An immutable snapshot of the policy: posteriors for the catalog's models.
#[derive(Debug, Clone)]
pub struct Bandit {
    dim: usize,
    params: BanditParams,
    /// Indexed by catalog position; `None` uses the candidate's prior only.
    arms: Vec<Option<Posterior>>,
    /// Per catalog position, the feature the prior is centred on (if any).
    anchors: Vec<Option<Anchor>>,
    /// Per catalog position, the features the model does not read: the
    /// other models' quality predictions. With all of them a model's
    /// regression has one coefficient per model of the catalog and overfits
    /// (measured in docs/evaluation.md); masked, it reads its own
    /// prediction only. A mask is exact on the stored sums (rows and
    /// columns of A dropped), so states still merge.
    masks: Vec<Vec<usize>>,
    /// Per catalog position, the observations behind the posterior.
    evidence: Vec<u64>,
    new_models: NewModels,
    degraded: Vec<String>,
    version: String,
    zig: Ziggurat,
}

impl Bandit {
    /// Builds the snapshot for a catalog given as (model name, prior quality)
    /// in catalog order. Models without statistics use their prior; models in
    /// `state` but not in `arms` are ignored (kept for when they return). Never
    /// fails: a model whose statistics are unusable (wrong shape, non-finite,
    /// or a matrix that is not positive definite) falls back to its prior and
    /// is listed by [`Bandit::degraded`].
    pub fn build(state: &BanditState, params: BanditParams, arms: &[(String, f64)]) -> Bandit {
        Bandit::build_anchored(state, params, arms, &[])
    }

    /// [`Bandit::build`] with each model's prior centred on a feature:
    /// `anchors[i]` for the catalog's model i (missing or `None`, or a feature
    /// outside the context: the prior quality through the bias, as `build`).
    pub fn build_anchored(
        state: &BanditState,
        params: BanditParams,
        arms: &[(String, f64)],
        anchors: &[Option<Anchor>],
    ) -> Bandit {
        let d = state.dim;
        let anchors: Vec<Option<Anchor>> = (0..arms.len())
            .map(|i| {
                anchors
                    .get(i)
                    .copied()
                    .flatten()
                    .filter(|a| a.feature < d && a.offset.is_finite())
            })
            .collect();
        let mut degraded = Vec::new();
        let mut hash = Sha256::new();
        hash.update((d as u64).to_le_bytes());
        for v in [
            params.lambda(),
            params.sigma(),
            params.explore_floor(),
            params.exploration(),
        ] {
            hash.update(v.to_bits().to_le_bytes());
        }
        hash.update(params.mc_samples().to_le_bytes());
        let mut n = 0;
        let mut evidence = Vec::with_capacity(arms.len());
        // Every feature some model is anchored on: a model reads only its
        // own of them (see `masks`).
        let mut anchored: Vec<usize> = anchors.iter().flatten().map(|a| a.feature).collect();
        anchored.sort_unstable();
        anchored.dedup();
        let masks: Vec<Vec<usize>> = anchors
            .iter()
            .map(|a| {
                let own = a.map(|a| a.feature);
                anchored
                    .iter()
                    .copied()
                    .filter(|&j| Some(j) != own)
                    .collect()
            })
            .collect();
        let posteriors = arms
            .iter()
            .zip(anchors.iter().zip(&masks))
            .map(|((name, prior), (anchor, mask))| {
                hash.update((name.len() as u64).to_le_bytes());
                hash.update(name.as_bytes());
                hash.update(prior.to_bits().to_le_bytes());
                if let Some(a) = anchor {
                    hash.update((a.feature as u64 + 1).to_le_bytes());
                    hash.update(a.offset.to_bits().to_le_bytes());
                }
                let stats = state.arms.get(name).filter(|s| s.n > 0);
                let empty = ArmStats::new(d);
                let used = match stats {
                    Some(s) if s.is_valid(d) => s,
                    Some(_) => {
                        degraded.push(name.clone());
                        &empty
                    }
                    None => &empty,
                };
                hash.update(used.n.to_le_bytes());
                for v in used.xx.iter().chain(&used.xr).chain([&used.rr]) {
                    hash.update(v.to_bits().to_le_bytes());
                }
                n += used.n;
                evidence.push(used.n);
                let posterior = posterior(used, *prior, *anchor, mask, &params);
                if posterior.is_none() && !degraded.contains(name) {
                    degraded.push(name.clone());
                }
                posterior
            })
            .collect();
        let digest = hash.finalize();
        let short = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Bandit {
            dim: d,
            params,
            arms: posteriors,
            anchors,
            masks,
            evidence,
            new_models: NewModels::OFF,
            degraded,
            version: format!("ts-v1-{n}obs-{short:08x}"),
            zig: Ziggurat::new(),
        }
    }

    /// The snapshot with models of little evidence bounded (see [`NewModels`]).
    pub fn with_new_models(mut self, bound: NewModels) -> Bandit {
        if bound.share < 1.0 && bound.evidence > 0 {
            self.version = format!("{}-new{}x{}", self.version, bound.share, bound.evidence);
            self.new_models = bound;
        }
        self
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `p` (over `order`'s candidates) with each model of little evidence
    /// capped at the bound's share, the excess spread over the others in
    /// proportion to their probability. Unchanged when no model or every
    /// model is new: there is no one to hand the traffic to.
    fn bound_new(&self, order: &[usize], candidates: &[Candidate], mut p: Vec<f64>) -> Vec<f64> {
        let b = self.new_models;
        if b.share >= 1.0 {
            return p;
        }
        let new: Vec<bool> = order
            .iter()
            .map(|&i| self.evidence.get(candidates[i].model).copied().unwrap_or(0) < b.evidence)
            .collect();
        let old = new.iter().filter(|n| !**n).count();
        if old == 0 || old == new.len() {
            return p;
        }
        let mut excess = 0.0;
        for (pi, _) in p
            .iter_mut()
            .zip(&new)
            .filter(|(pi, n)| **n && **pi > b.share)
        {
            excess += *pi - b.share;
            *pi = b.share;
        }
        let mass: f64 = p
            .iter()
            .zip(&new)
            .filter(|(_, n)| !**n)
            .map(|(pi, _)| pi)
            .sum();
        for (pi, _) in p.iter_mut().zip(&new).filter(|(_, n)| !**n) {
            *pi += if mass > 0.0 {
                excess * *pi / mass
            } else {
                excess / old as f64
            };
        }
        p
    }

    pub fn params(&self) -> &BanditParams {
        &self.params
    }

    /// Models whose statistics were unusable and that fell back to their prior.
    pub fn degraded(&self) -> &[String] {
        &self.degraded
    }

    /// Predictive mean and std of model `arm`'s quality for `features`
    /// (`prior` is used when the snapshot does not know the model).
    pub fn predict(&self, arm: usize, prior: f64, features: &[f32]) -> (f64, f64) {
        self.predict_x(arm, prior, &self.context_vector(features))
    }

    fn predict_x(&self, arm: usize, prior: f64, x: &[f64]) -> (f64, f64) {
        match self.arms.get(arm).and_then(Option::as_ref) {
            // Masked features have θ = 0 and no covariance (see `posterior`).
            Some(p) => {
                let var = linalg::quadratic_form(&p.cov, x);
                (linalg::dot(&p.theta, x), var.max(0.0).sqrt())
            }
            // The prior alone: θ = m0, Cov = (σ²/λ)·I over the features the
            // model reads (a degraded model only: off the common path).
            None => {
                let mut x = x.to_vec();
                for &j in self.masks.get(arm).into_iter().flatten() {
                    if let Some(v) = x.get_mut(j) {
                        *v = 0.0;
                    }
                }
                let x0 = x.first().copied().unwrap_or(0.0);
                let mean = match self.anchors.get(arm).copied().flatten() {
                    Some(a) => x.get(a.feature).copied().unwrap_or(0.0) + a.offset * x0,
                    None => prior * x0,
                };
                let norm = linalg::dot(&x, &x).sqrt();
                (
                    mean,
                    self.params.sigma() * norm / self.params.lambda().sqrt(),
                )
            }
        }
    }

    /// The request's features as f64. A vector of the wrong length (say the
    /// classifier did not run) becomes the bias alone, (1, 0, …, 0), so each
    /// model is judged by its intercept rather than by misaligned features.
    fn context_vector(&self, features: &[f32]) -> Vec<f64> {
        if features.len() == self.dim {
            features.iter().map(|&v| f64::from(v)).collect()
        } else {
            let mut x = vec![0.0; self.dim];
            if let Some(x0) = x.first_mut() {
                *x0 = 1.0;
            }
            x
        }
    }
}

/// What every snapshot the service runs is built over: the catalog as
/// (name, declared prior), where the quality head anchors each model, and
/// the bound on models of little evidence. The running policy and the A/B
/// variants are built from one value, so none of them goes without the bound.
#[derive(Debug, Clone)]
pub struct Serving {
    pub arms: Vec<(String, f64)>,
    pub anchors: Vec<Option<Anchor>>,
    pub new_models: NewModels,
}

impl Serving {
    /// The snapshot of `state` under `params` for this catalog.
    pub fn bandit(&self, state: &BanditState, params: BanditParams) -> Bandit {
        Bandit::build_anchored(state, params, &self.arms, &self.anchors)
            .with_new_models(self.new_models)
    }
}

/// θ̂ and σ²A⁻¹ for one model, or `None` when A is not positive definite.
fn posterior(
    stats: &ArmStats,
    prior: f64,
    anchor: Option<Anchor>,
    mask: &[usize],
    params: &BanditParams,
) -> Option<Posterior> {
    let d = stats.dim();
    let mut a = linalg::unpack_symmetric(&stats.xx, d);
    let mut b = stats.xr.clone();
    // A masked feature is as if it were always 0: its row, column and sum go.
    for &j in mask.iter().filter(|&&j| j < d) {
        for i in 0..d {
            a[i * d + j] = 0.0;
            a[j * d + i] = 0.0;
        }
        b[j] = 0.0;
    }
    for i in 0..d {
        a[i * d + i] += params.lambda();
    }
    let (feature, bias) = match anchor {
        Some(a) => (Some(a.feature), a.offset),
        None => (None, prior),
    };
    if let Some(b0) = b.first_mut() {
        *b0 += params.lambda() * bias;
    }
    if let Some(j) = feature {
        b[j] += params.lambda();
    }
    let chol = Cholesky::new(&a, d).ok()?;
    let theta = chol.solve(&b);
    // A masked feature's row and column of A⁻¹ are exactly 0 but its
    // diagonal (1/λ): dropping that too makes the snapshot read the full
    // context exactly as if the feature were 0, with no copy per decision.
    let mut inv = chol.inverse();
    for &j in mask.iter().filter(|&&j| j < d) {
        inv[j * d + j] = 0.0;
    }
    let cov = linalg::pack_quadratic(&inv, d, params.sigma() * params.sigma());
    Some(Posterior { theta, cov })
}

impl Policy for Bandit {
    fn version(&self) -> String {
        self.version.clone()
    }

    /// Linear Thompson sampling with an exploration floor (see `propensity`).
    /// Candidates come back with `expected_quality` = the predictive mean μ
    /// (raw: a linear model can leave [0, 1]), `quality_std` = its posterior
    /// std σ·√(xᵀA⁻¹x) (before the exploration scale v), `score` = μ − w·cost − load_penalty
    /// and `probability` = p; ineligible candidates get score and probability 0.
    fn decide(
        &self,
        ctx: &Context,
        mut candidates: Vec<Candidate>,
        rng: &mut dyn RngCore,
    ) -> Decision {
        let x = self.context_vector(&ctx.features);
        let w = ctx.cost_weight;
        // Tie-break order as in the prior policy: cheaper first, then catalog order.
        let mut order: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].eligible)
            .collect();
        assert!(
            !order.is_empty(),
            "the caller ensures one candidate is eligible: this is a bug"
        );
        order.sort_by(|&i, &j| {
            let (a, b) = (&candidates[i], &candidates[j]);
            a.expected_cost_usd
                .total_cmp(&b.expected_cost_usd)
                .then(a.model.cmp(&b.model))
        });
        let mut scores = Vec::with_capacity(order.len());
        let mut scales = Vec::with_capacity(order.len());
        for &i in &order {
            let c = &mut candidates[i];
            let (mean, std) = self.predict_x(c.model, c.expected_quality, &x);
            c.expected_quality = mean;
            c.quality_std = std;
            c.score = crate::policy::objective(mean, c, w);
            scores.push(c.score);
            scales.push(self.params.exploration() * std);
        }
        // One seed from the caller's rng drives a fast local generator, so a
        // seeded caller gets reproducible decisions.
        let mut fast = SmallRng::from_rng(&mut &mut *rng);
        let p = if order.len() == 1 {
            vec![1.0]
        } else {
            let samples = self.params.mc_samples();
            let wins = propensity::thompson_wins(&scores, &scales, samples, &self.zig, &mut fast);
            let p = propensity::mix(&wins, samples, self.params.explore_floor());
            self.bound_new(&order, &candidates, p)
        };
        let chosen = order[propensity::draw(&p, &mut fast)];
        let best = order[propensity::first_max(&scores)];
        for c in candidates.iter_mut() {
            c.probability = 0.0;
            if !c.eligible {
                c.score = 0.0;
            }
        }
        for (&i, &pi) in order.iter().zip(&p) {
            candidates[i].probability = pi;
        }
        Decision {
            model: candidates[chosen].model,
            propensity: candidates[chosen].probability,
            explored: chosen != best,
            policy_version: self.version.clone(),
            candidates,
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
