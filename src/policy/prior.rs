//! The prior policy: each model's configured prior quality minus the cost
//! term; the best score wins deterministically, so its propensity is 1.

use std::cmp::Ordering;

use rand::RngCore;

use super::{Candidate, Context, Decision, Policy};

#[derive(Debug, Default)]
pub struct PriorPolicy;

impl Policy for PriorPolicy {
    fn version(&self) -> String {
        "prior-v1".into()
    }

    fn decide(
        &self,
        ctx: &Context,
        mut candidates: Vec<Candidate>,
        _rng: &mut dyn RngCore,
    ) -> Decision {
        for c in candidates.iter_mut().filter(|c| c.eligible) {
            c.score = super::objective(c.expected_quality, c, ctx.cost_weight);
        }
        let best = candidates
            .iter()
            .filter(|c| c.eligible)
            .max_by(|a, b| rank(a, b))
            .map(|c| c.model)
            .expect("the caller ensures one candidate is eligible: this is a bug");
        for c in candidates.iter_mut() {
            c.probability = if c.model == best { 1.0 } else { 0.0 };
        }
        Decision {
            model: best,
            propensity: 1.0,
            explored: false,
            policy_version: self.version(),
            candidates,
        }
    }
}

/// Higher score first; on a tie the cheaper model (equal value for less
/// money), then the earlier catalog entry, so the choice is deterministic.
fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    a.score
        .total_cmp(&b.score)
        .then(b.expected_cost_usd.total_cmp(&a.expected_cost_usd))
        .then(b.model.cmp(&a.model))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(model: usize, q: f64, cost: f64) -> Candidate {
        Candidate {
            model,
            eligible: true,
            reason: String::new(),
            expected_quality: q,
            quality_std: 0.0,
            expected_cost_usd: cost,
            load: Default::default(),
            score: 0.0,
            probability: 0.0,
        }
    }

    fn decide(w: f64, cands: Vec<Candidate>) -> Decision {
        let ctx = Context {
            cost_weight: w,
            ..Context::default()
        };
        PriorPolicy.decide(&ctx, cands, &mut rand::rng())
    }

    #[test]
    fn cost_weight_zero_picks_best_and_large_picks_cheapest() {
        let cands = vec![
            cand(0, 0.9, 0.01),
            cand(1, 0.6, 0.0001),
            cand(2, 0.7, 0.001),
        ];
        assert_eq!(decide(0.0, cands.clone()).model, 0);
        assert_eq!(decide(1e6, cands.clone()).model, 1);
        let d = decide(10.0, cands);
        // 0.9 - 0.1 = 0.8 beats 0.7 - 0.01 = 0.69 and 0.6 - 0.001.
        assert_eq!(d.model, 0);
        assert_eq!(d.propensity, 1.0);
        assert_eq!(d.candidates.iter().map(|c| c.probability).sum::<f64>(), 1.0);
    }

    #[test]
    fn ineligible_models_are_never_chosen_and_ties_go_cheaper() {
        let mut cands = vec![cand(0, 0.99, 0.0), cand(1, 0.5, 0.2), cand(2, 0.5, 0.1)];
        cands[0].eligible = false;
        let d = decide(0.0, cands);
        assert_eq!(d.model, 2);
        assert_eq!(d.candidates[0].score, 0.0);
    }

    #[test]
    fn load_penalty_enters_the_score_like_cost() {
        let mut cands = vec![cand(0, 0.8, 0.0), cand(1, 0.8, 0.0)];
        // 200 ms with one request ahead: 0.4 s expected, × 0.5 = 0.2 points.
        cands[0].load = crate::policy::Load::new(200.0, 1, 0.5);
        assert!((cands[0].load.load_penalty - 0.2).abs() < 1e-12);
        let d = decide(0.0, cands.clone());
        assert_eq!(d.model, 1);
        assert!((d.candidates[0].score - 0.6).abs() < 1e-12);
        // Weight 0: no penalty, the tie goes to catalog order as before.
        cands[0].load = crate::policy::Load::new(200.0, 1, 0.0);
        assert_eq!(decide(0.0, cands).model, 0);
    }
}
