//! Model selection: which eligible model answers a request.
//!
//! Selection is split in two so that policies stay small and pure (no I/O, no
//! clock): [`eligibility::screen`] applies the hard constraints (allow-list,
//! provider availability, context window, `max_cost_usd`) and fills in costs;
//! a [`Policy`] then scores the eligible candidates and picks one, reporting
//! the probability with which it picked it. The server only ever talks to
//! `dyn Policy`, so the learned bandit replaces the prior policy without
//! touching it.

pub mod bandit;
pub mod eligibility;
pub mod features;
pub mod file;
pub mod prior;

use rand::RngCore;

/// What the policy knows about a request beyond the candidates.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Exchange rate between quality and USD: score = quality − cost_weight × cost.
    pub cost_weight: f64,
    /// Classifier features (empty until a classifier runs).
    pub features: Vec<f32>,
    pub prompt_tokens: u32,
}

/// One catalog model as seen by one request: its constraints and numbers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    /// Index into the catalog's models.
    pub model: usize,
    pub eligible: bool,
    /// Why the model is not eligible; empty when it is.
    pub reason: String,
    pub expected_quality: f64,
    /// Standard deviation of the quality estimate (0 for a fixed prior).
    pub quality_std: f64,
    pub expected_cost_usd: f64,
    /// expected_quality − cost_weight × expected_cost_usd; 0 when not eligible.
    pub score: f64,
    /// Probability that the policy picks this model for this request.
    pub probability: f64,
}

/// The policy's choice and its explanation.
#[derive(Debug, Clone)]
pub struct Decision {
    pub model: usize,
    /// P(model | context) under the policy that decided.
    pub propensity: f64,
    /// True when the choice was not the best expected score.
    pub explored: bool,
    pub policy_version: String,
    /// One per catalog model, in catalog order.
    pub candidates: Vec<Candidate>,
}

/// A selection policy. Implementations are pure and cheap: they run on the
/// request path for every Route.
pub trait Policy: Send + Sync {
    /// Identifies the parameters that decided (logged with every decision).
    fn version(&self) -> String;

    /// Scores the eligible candidates and picks one. `candidates` holds every
    /// catalog model, with at least one eligible (the caller checks).
    fn decide(&self, ctx: &Context, candidates: Vec<Candidate>, rng: &mut dyn RngCore) -> Decision;
}

/// The decision for a pinned model: no choice was made, so the propensity is 1.
pub fn pinned(model: usize, mut candidates: Vec<Candidate>, cost_weight: f64) -> Decision {
    for c in candidates.iter_mut() {
        c.score = if c.eligible {
            c.expected_quality - cost_weight * c.expected_cost_usd
        } else {
            0.0
        };
        c.probability = if c.model == model { 1.0 } else { 0.0 };
    }
    Decision {
        model,
        propensity: 1.0,
        explored: false,
        policy_version: "pinned".into(),
        candidates,
    }
}
