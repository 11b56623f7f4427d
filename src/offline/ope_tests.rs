//! The estimators on synthetic logs whose true target value is known exactly.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// True mean reward of each of 3 actions at context x ∈ [0, 1].
fn q(x: f64) -> [f64; 3] {
    [0.3 + 0.5 * x, 0.8 - 0.6 * x, 0.5]
}

/// The logging policy: favours action 0 on the left half, action 2 on the right.
fn mu(x: f64) -> [f64; 3] {
    if x < 0.5 {
        [0.6, 0.3, 0.1]
    } else {
        [0.1, 0.3, 0.6]
    }
}

/// The target policy: 0.9 on the truly best action, 0.05 elsewhere.
fn pi(x: f64) -> [f64; 3] {
    let qs = q(x);
    let best = (0..3).max_by(|&a, &b| qs[a].total_cmp(&qs[b])).unwrap();
    let mut p = [0.05; 3];
    p[best] = 0.9;
    p
}

/// E_x[Σ_a π(a|x) q(x,a)] for x ~ U[0, 1], by a fine midpoint rule (the
/// integrand is piecewise linear, so this is exact to ~1e-9).
fn true_value() -> f64 {
    let m = 100_000;
    (0..m)
        .map(|i| {
            let x = (i as f64 + 0.5) / m as f64;
            pi(x).iter().zip(q(x)).map(|(p, q)| p * q).sum::<f64>()
        })
        .sum::<f64>()
        / m as f64
}

/// A log of `n` rows; `recorded` gives the propensities written to the log
/// and `model` the reward model handed to DR.
fn log(
    n: usize,
    seed: u64,
    recorded: impl Fn(f64) -> [f64; 3],
    model: impl Fn(f64) -> [f64; 3],
) -> Vec<OpeRow> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let x: f64 = rng.random();
            let m = mu(x);
            let u: f64 = rng.random();
            let a = if u < m[0] {
                0
            } else if u < m[0] + m[1] {
                1
            } else {
                2
            };
            let y = if rng.random::<f64>() < q(x)[a] {
                1.0
            } else {
                0.0
            };
            OpeRow {
                action: a,
                logging_p: recorded(x)[a],
                target_p: pi(x).to_vec(),
                reward_hat: model(x).to_vec(),
                y,
            }
        })
        .collect()
}

#[test]
fn estimators_recover_a_known_policy_value_within_their_intervals() {
    let v = true_value();
    // A deliberately poor reward model: DR must still be right.
    let rows = log(20_000, 11, mu, |_| [0.5; 3]);
    // 99% intervals: three estimators at 95% would miss together ~14% of the time.
    let opts = Options {
        level: 0.99,
        ..Options::default()
    };
    let r = evaluate(&rows, &opts).unwrap();
    for (name, e) in [("IPS", r.ips), ("SNIPS", r.snips), ("DR", r.dr)] {
        assert!(e.contains(v), "{name} {e:?} misses the true value {v:.4}");
        assert!(e.upper - e.lower < 0.07, "{name} interval too wide: {e:?}");
    }
    // The log's own mean is a different policy's value: the test can fail.
    assert!(!r.logging.contains(v), "logging {:?} vs {v:.4}", r.logging);
    assert!(r.weights.effective_sample_size < 20_000.0 && r.weights.effective_sample_size > 2000.0);
    assert_eq!(r.weights.clipped, 0);
    assert!(
        (r.weights.max - 9.0).abs() < 1e-9,
        "max weight {}",
        r.weights.max
    );
}

/// Mean and standard error of `f` over `reps` independent logs.
fn replicate(reps: u64, f: impl Fn(u64) -> f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..reps).map(f).collect();
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

fn no_bootstrap() -> Options {
    Options {
        resamples: 0,
        ..Options::default()
    }
}

#[test]
fn dr_is_unbiased_when_only_the_reward_model_is_right() {
    let v = true_value();
    // Wrong propensities: the log claims uniform logging.
    let wrong_p = |_: f64| [1.0 / 3.0; 3];
    let (dr, se) = replicate(300, |s| {
        let rows = log(400, 1000 + s, wrong_p, q);
        evaluate(&rows, &no_bootstrap()).unwrap().dr.value
    });
    assert!(
        (dr - v).abs() < 4.0 * se + 1e-3,
        "DR {dr:.4} ± {se:.4} vs {v:.4}"
    );
    // IPS with the same wrong propensities is far off: the case is informative.
    let (ips, se) = replicate(300, |s| {
        let rows = log(400, 1000 + s, wrong_p, q);
        evaluate(&rows, &no_bootstrap()).unwrap().ips.value
    });
    assert!(
        (ips - v).abs() > 8.0 * se,
        "IPS {ips:.4} ± {se:.4} vs {v:.4}"
    );
}

#[test]
fn dr_is_unbiased_when_only_the_propensities_are_right() {
    let v = true_value();
    // A wrong reward model: biased by +0.2 and blind to x.
    let wrong_q = |_: f64| [0.75, 0.75, 0.7];
    let (dr, se) = replicate(300, |s| {
        let rows = log(400, 5000 + s, mu, wrong_q);
        evaluate(&rows, &no_bootstrap()).unwrap().dr.value
    });
    assert!(
        (dr - v).abs() < 4.0 * se + 1e-3,
        "DR {dr:.4} ± {se:.4} vs {v:.4}"
    );
    // The reward model alone (the direct method) is far off.
    let dm: f64 = 0.9 * 0.75 + 0.05 * 0.75 + 0.05 * 0.7;
    assert!((dm - v).abs() > 0.1, "direct method {dm:.4} vs {v:.4}");
}

#[test]
fn clipping_is_reported_and_bad_rows_are_refused() {
    let mut rows = log(200, 3, mu, q);
    rows[0].logging_p = 0.001;
    rows[0].target_p = vec![1.0, 0.0, 0.0];
    rows[0].reward_hat = vec![0.0; 3];
    rows[0].action = 0;
    let r = evaluate(
        &rows,
        &Options {
            clip: 50.0,
            ..no_bootstrap()
        },
    )
    .unwrap();
    assert_eq!(r.weights.clipped, 1);
    assert!((r.weights.max - 1000.0).abs() < 1e-6 && r.weights.largest[0] == r.weights.max);
    rows[1].logging_p = 0.0;
    let err = evaluate(&rows, &no_bootstrap()).unwrap_err();
    assert!(err.to_string().contains("row 1"), "{err}");
    assert!(evaluate(&[], &no_bootstrap()).is_err());
}
