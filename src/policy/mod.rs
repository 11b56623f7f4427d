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
    /// Live load of the model when it was screened, and its penalty.
    #[serde(flatten)]
    pub load: Load,
    /// expected_quality − cost_weight × expected_cost_usd − load_penalty;
    /// 0 when not eligible.
    pub score: f64,
    /// Probability that the policy picks this model for this request.
    pub probability: f64,
}

/// Load-aware routing: what a model's recent latency and current in-flight
/// requests cost in quality points. Computed once per request before the
/// policy decides and subtracted from the score like cost, so the logged
/// propensity is exact for the procedure that picked, and logged with the
/// candidate so off-policy evaluation recomputes the same scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Load {
    /// EWMA of the model's attempt latency in ms (0 until it has served, so
    /// an unmeasured model is tried rather than presumed slow).
    pub latency_ms_ewma: f64,
    /// The model's attempts in flight when the request was screened.
    pub in_flight: u64,
    /// latency_weight × expected latency in seconds, where expected latency
    /// = latency EWMA × (1 + in_flight): a pessimistic queue in which every
    /// request already in flight costs one more typical latency.
    pub load_penalty: f64,
}

impl Load {
    pub fn new(latency_ms_ewma: f64, in_flight: u64, latency_weight: f64) -> Self {
        let expected_s = latency_ms_ewma / 1000.0 * (1.0 + in_flight as f64);
        Load {
            latency_ms_ewma,
            in_flight,
            load_penalty: latency_weight * expected_s,
        }
    }
}

/// The score a policy maximises for an eligible candidate of mean quality `q`.
pub fn objective(q: f64, c: &Candidate, cost_weight: f64) -> f64 {
    q - cost_weight * c.expected_cost_usd - c.load.load_penalty
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
            objective(c.expected_quality, c, cost_weight)
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
