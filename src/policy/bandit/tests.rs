//! The bandit's tests: selection, exact propensities, learning.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::state::tests::{learn, log};
use super::*;

pub(in super::super) fn cand(model: usize, prior: f64, cost: f64) -> Candidate {
    Candidate {
        model,
        eligible: true,
        reason: String::new(),
        expected_quality: prior,
        quality_std: 0.0,
        expected_cost_usd: cost,
        load: Default::default(),
        score: 0.0,
        probability: 0.0,
    }
}

fn ctx(w: f64, features: Vec<f32>) -> Context {
    Context {
        cost_weight: w,
        features,
        prompt_tokens: 0,
    }
}

fn names(n: usize, prior: f64) -> Vec<(String, f64)> {
    (0..n).map(|i| (format!("model-{i}"), prior)).collect()
}

#[test]
fn params_are_validated() {
    assert!(BanditParams::try_new(1.0, 0.3, 0.05, 512, 1.0).is_ok());
    assert_eq!(
        BanditParams::try_new(0.0, 0.3, 0.05, 512, 1.0),
        Err(InvalidParams::Lambda(0.0))
    );
    assert!(matches!(
        BanditParams::try_new(1.0, f64::NAN, 0.05, 512, 1.0),
        Err(InvalidParams::Sigma(_))
    ));
    assert_eq!(
        BanditParams::try_new(1.0, 0.3, 1.5, 512, 1.0),
        Err(InvalidParams::ExploreFloor(1.5))
    );
    assert_eq!(
        BanditParams::try_new(1.0, 0.3, 0.05, 0, 1.0),
        Err(InvalidParams::McSamples(0))
    );
    assert_eq!(
        BanditParams::try_new(1.0, 0.3, 0.05, 8, -1.0),
        Err(InvalidParams::Exploration(-1.0))
    );
}

#[test]
fn a_model_without_data_predicts_its_prior() {
    let bandit = Bandit::build(
        &BanditState::new(3),
        BanditParams::default(),
        &names(1, 0.7),
    );
    assert!(bandit.version().starts_with("ts-v1-0obs-"));
    let x = [1.0, 0.5, 0.5];
    // θ = m0 and Cov = σ²/λ·I, both through the Cholesky path and the fallback.
    for arm in [0, 5] {
        let (mean, std) = bandit.predict(arm, 0.7, &x);
        assert!((mean - 0.7).abs() < 1e-12 && (std - 0.3 * 1.5f64.sqrt()).abs() < 1e-12);
    }
    // Missing features fall back to the bias alone.
    let (mean, std) = bandit.predict(0, 0.7, &[]);
    assert!((mean - 0.7).abs() < 1e-12 && (std - 0.3).abs() < 1e-12);
}

#[test]
fn an_anchored_model_starts_from_the_feature_it_is_anchored_on() {
    let anchors = [
        Some(Anchor {
            feature: 2,
            offset: 0.0,
        }),
        Some(Anchor {
            feature: 2,
            offset: -0.1,
        }),
    ];
    let b = Bandit::build_anchored(
        &BanditState::new(3),
        BanditParams::default(),
        &names(2, 0.5),
        &anchors,
    );
    let (m0, _) = b.predict(0, 0.5, &[1.0, 0.0, 0.75]);
    let (m1, _) = b.predict(1, 0.5, &[1.0, 0.0, 0.75]);
    assert!((m0 - 0.75).abs() < 1e-12, "{m0}");
    assert!((m1 - 0.65).abs() < 1e-12, "{m1}");
    assert_ne!(
        b.version(),
        Bandit::build(
            &BanditState::new(3),
            BanditParams::default(),
            &names(2, 0.5)
        )
        .version()
    );
}

#[test]
fn a_model_with_little_evidence_gets_a_bounded_share_with_exact_propensities() {
    // model-0 is known (and mediocre); model-1 is new with a high prior.
    let log: Vec<(String, Vec<f32>, f64)> = (0..100)
        .map(|_| ("model-0".to_string(), vec![1.0], 0.5))
        .collect();
    let state = learn(&log, 1);
    let arms = [("model-0".to_string(), 0.5), ("model-1".to_string(), 0.95)];
    let bound = NewModels {
        share: 0.2,
        evidence: 30,
    };
    let b = Bandit::build(&state, BanditParams::default(), &arms).with_new_models(bound);
    let mut rng = StdRng::seed_from_u64(3);
    let cands = || vec![cand(0, 0.5, 0.0), cand(1, 0.95, 0.0)];
    let d = b.decide(&ctx(0.0, vec![1.0]), cands(), &mut rng);
    let p: Vec<f64> = d.candidates.iter().map(|c| c.probability).collect();
    assert!(
        (p[1] - 0.2).abs() < 1e-12 && (p[0] - 0.8).abs() < 1e-12,
        "{p:?}"
    );
    let picks = (0..2000)
        .filter(|_| b.decide(&ctx(0.0, vec![1.0]), cands(), &mut rng).model == 1)
        .count();
    assert!(
        (300..500).contains(&picks),
        "new model picked {picks} of 2000"
    );
    // Unbounded, the optimistic newcomer takes most of the traffic.
    let free = Bandit::build(&state, BanditParams::default(), &arms);
    let d = free.decide(&ctx(0.0, vec![1.0]), cands(), &mut rng);
    assert!(d.candidates[1].probability > 0.5);
    // With evidence it is no longer new.
    let mut state = state;
    for _ in 0..30 {
        state.observe("model-1", &[1.0], 0.95).unwrap();
    }
    let b = Bandit::build(&state, BanditParams::default(), &arms).with_new_models(bound);
    let d = b.decide(&ctx(0.0, vec![1.0]), cands(), &mut rng);
    assert!(d.candidates[1].probability > 0.5);
}

#[test]
fn merged_state_decides_like_the_whole_log() {
    let log = log(5, 400, 4);
    let whole = learn(&log, 4);
    let mut merged = learn(&log[..250], 4);
    merged.merge(&learn(&log[250..], 4)).unwrap();
    let a = Bandit::build(&whole, BanditParams::default(), &names(3, 0.5));
    let b = Bandit::build(&merged, BanditParams::default(), &names(3, 0.5));
    let cands: Vec<_> = (0..3).map(|m| cand(m, 0.5, 0.001 * m as f64)).collect();
    let mut contexts = StdRng::seed_from_u64(9);
    for seed in 0..50 {
        let features = vec![
            1.0,
            contexts.random(),
            contexts.random(),
            -contexts.random::<f32>(),
        ];
        let da = a.decide(
            &ctx(1.0, features.clone()),
            cands.clone(),
            &mut StdRng::seed_from_u64(seed),
        );
        let db = b.decide(
            &ctx(1.0, features),
            cands.clone(),
            &mut StdRng::seed_from_u64(seed),
        );
        assert_eq!(
            (da.model, da.propensity, da.explored),
            (db.model, db.propensity, db.explored)
        );
        for (ca, cb) in da.candidates.iter().zip(&db.candidates) {
            assert!((ca.expected_quality - cb.expected_quality).abs() < 1e-9);
            assert_eq!(ca.probability, cb.probability);
        }
    }
}

/// Three models whose quality depends on a difficulty feature f ∈ [0, 1]:
/// the small model is best on easy requests, the big one in the middle,
/// the specialist on hard ones (at cost weight 5).
fn environment(f: f64) -> [f64; 3] {
    [0.85, 0.9 - 0.6 * f, 0.3 + 0.6 * f]
}
const COSTS: [f64; 3] = [0.01, 0.001, 0.002];

#[test]
fn learning_beats_uniform_and_approaches_the_best_model() {
    let params = BanditParams::try_new(1.0, 0.3, 0.05, 128, 1.0).unwrap();
    let arms = names(3, 0.5);
    let mut state = BanditState::new(2);
    let mut bandit = Bandit::build(&state, params, &arms);
    let mut rng = StdRng::seed_from_u64(42);
    let (mut got, mut uniform, mut best) = (0.0, 0.0, 0.0);
    let (rounds, late) = (3000, 1000);
    for t in 0..rounds {
        let f: f64 = rng.random();
        let x = [1.0, f as f32];
        let cands: Vec<_> = (0..3).map(|m| cand(m, 0.5, COSTS[m])).collect();
        let d = bandit.decide(&ctx(5.0, x.to_vec()), cands, &mut rng);
        let q = environment(f);
        let value: Vec<f64> = (0..3).map(|m| q[m] - 5.0 * COSTS[m]).collect();
        let noise = rng.random_range(-0.15..0.15);
        state
            .observe(&arms[d.model].0, &x, q[d.model] + noise)
            .unwrap();
        if t >= rounds - late {
            got += value[d.model];
            uniform += value.iter().sum::<f64>() / 3.0;
            best += value.iter().cloned().fold(f64::MIN, f64::max);
        }
        if t % 50 == 49 {
            bandit = Bandit::build(&state, params, &arms);
        }
    }
    let (got, uniform, best) = (got / late as f64, uniform / late as f64, best / late as f64);
    assert!(
        got > uniform + 0.1,
        "bandit {got:.3} vs uniform {uniform:.3}"
    );
    assert!(got > best - 0.03, "bandit {got:.3} vs best {best:.3}");
}

#[test]
fn cost_weight_trades_quality_for_price_from_one_state() {
    let mut state = BanditState::new(2);
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..200 {
        let x = [1.0, rng.random::<f32>()];
        state
            .observe("strong", &x, 0.9 + rng.random_range(-0.1..0.1))
            .unwrap();
        state
            .observe("cheap", &x, 0.6 + rng.random_range(-0.1..0.1))
            .unwrap();
    }
    let arms = [("strong".to_string(), 0.5), ("cheap".to_string(), 0.5)];
    let bandit = Bandit::build(&state, BanditParams::default(), &arms);
    let cands = vec![cand(0, 0.5, 0.01), cand(1, 0.5, 0.0001)];
    for (w, winner) in [(0.0, 0), (1000.0, 1)] {
        let d = bandit.decide(&ctx(w, vec![1.0, 0.5]), cands.clone(), &mut rng);
        let c = &d.candidates;
        assert!(
            c[winner].probability > 0.9 && c[winner].score > c[1 - winner].score,
            "{c:?}"
        );
        assert_eq!(d.explored, d.model != winner);
    }
}
