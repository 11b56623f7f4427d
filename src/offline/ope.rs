//! Off-policy estimators of a target policy's value from a log collected by
//! another (the logging) policy with known propensities.
//!
//! For logged rows (x_i, a_i, μ_i = μ(a_i|x_i), y_i) and target probabilities
//! π(·|x_i), with importance weight w_i = π(a_i|x_i)/μ_i clipped at `clip`:
//!
//! ```text
//! IPS   = (1/n) Σ w_i y_i                                  (Horvitz & Thompson 1952)
//! SNIPS = Σ w_i y_i / Σ w_i                                (Swaminathan & Joachims 2015)
//! DR    = (1/n) Σ [ Σ_a π(a|x_i) q̂(x_i,a) + w_i (y_i − q̂(x_i,a_i)) ]
//!                                          (Dudík, Langford & Li 2011, ICML)
//! ```
//!
//! IPS is unbiased when the propensities are right (and nothing is clipped);
//! SNIPS trades a small bias for much less variance; DR is unbiased when
//! either the propensities or the reward model q̂ is right. Confidence
//! intervals are percentile bootstraps over rows (seeded); the effective
//! sample size (Σw)²/Σw² says how many on-policy rows the log is worth.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// One logged decision, seen from the target policy.
#[derive(Debug, Clone)]
pub struct OpeRow {
    /// Index of the logged action in `target_p` / `reward_hat`.
    pub action: usize,
    /// μ(a_i|x_i) as logged.
    pub logging_p: f64,
    /// π(·|x_i) over the same actions.
    pub target_p: Vec<f64>,
    /// q̂(x_i, ·): the reward model's prediction per action.
    pub reward_hat: Vec<f64>,
    /// The observed value y_i.
    pub y: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Importance weights above this are clipped to it.
    pub clip: f64,
    /// Bootstrap resamples (0: no intervals).
    pub resamples: usize,
    /// Two-sided confidence level of the intervals, e.g. 0.95.
    pub level: f64,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clip: 100.0,
            resamples: 1000,
            level: 0.95,
            seed: 7,
        }
    }
}

/// A point estimate with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

impl Estimate {
    pub fn contains(&self, v: f64) -> bool {
        self.lower <= v && v <= self.upper
    }
}

/// The importance weights' health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightReport {
    pub mean: f64,
    pub max: f64,
    /// Rows whose weight was clipped.
    pub clipped: usize,
    pub clip: f64,
    /// (Σw)²/Σw² after clipping.
    pub effective_sample_size: f64,
    /// The largest unclipped weights, descending (up to 5).
    pub largest: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub rows: usize,
    pub ips: Estimate,
    pub snips: Estimate,
    pub dr: Estimate,
    /// The logging policy's on-policy mean of y (its value).
    pub logging: Estimate,
    pub weights: WeightReport,
}

/// Per-row terms the estimators average; resampled by the bootstrap.
struct Terms {
    w: Vec<f64>,
    wy: Vec<f64>,
    dr: Vec<f64>,
    y: Vec<f64>,
}

fn terms(rows: &[OpeRow], clip: f64) -> (Terms, Vec<f64>) {
    let n = rows.len();
    let mut t = Terms {
        w: Vec::with_capacity(n),
        wy: Vec::with_capacity(n),
        dr: Vec::with_capacity(n),
        y: Vec::with_capacity(n),
    };
    let mut raw = Vec::with_capacity(n);
    for r in rows {
        let w_raw = r.target_p[r.action] / r.logging_p;
        raw.push(w_raw);
        let w = w_raw.min(clip);
        let dm: f64 = r
            .target_p
            .iter()
            .zip(&r.reward_hat)
            .map(|(p, q)| p * q)
            .sum();
        t.w.push(w);
        t.wy.push(w * r.y);
        t.dr.push(dm + w * (r.y - r.reward_hat[r.action]));
        t.y.push(r.y);
    }
    (t, raw)
}

/// (IPS, SNIPS, DR, logging mean) over the rows listed in `idx`.
fn point(t: &Terms, idx: impl Iterator<Item = usize>) -> [f64; 4] {
    let (mut n, mut w, mut wy, mut dr, mut y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for i in idx {
        n += 1.0;
        w += t.w[i];
        wy += t.wy[i];
        dr += t.dr[i];
        y += t.y[i];
    }
    let snips = if w > 0.0 { wy / w } else { 0.0 };
    [wy / n, snips, dr / n, y / n]
}

/// Checks the rows, then computes every estimator with its interval.
pub fn evaluate(rows: &[OpeRow], opts: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(!rows.is_empty(), "no rows to evaluate");
    anyhow::ensure!(opts.clip > 0.0, "the weight clip must be > 0");
    anyhow::ensure!(
        opts.level > 0.0 && opts.level < 1.0,
        "the confidence level must be in (0, 1)"
    );
    for (i, r) in rows.iter().enumerate() {
        anyhow::ensure!(
            r.action < r.target_p.len() && r.target_p.len() == r.reward_hat.len(),
            "row {i}: action and probability vectors do not line up"
        );
        anyhow::ensure!(
            r.logging_p > 0.0 && r.logging_p <= 1.0 && r.y.is_finite(),
            "row {i}: logging propensity {} or value {} out of range",
            r.logging_p,
            r.y
        );
    }
    let n = rows.len();
    let (t, raw) = terms(rows, opts.clip);
    let full = point(&t, 0..n);
    let mut boot: [Vec<f64>; 4] = Default::default();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut idx = vec![0usize; n];
    for _ in 0..opts.resamples {
        for i in idx.iter_mut() {
            *i = rng.random_range(0..n);
        }
        let p = point(&t, idx.iter().copied());
        for k in 0..4 {
            boot[k].push(p[k]);
        }
    }
    let alpha = (1.0 - opts.level) / 2.0;
    let est = |k: usize| {
        let (lower, upper) = if boot[k].is_empty() {
            (full[k], full[k])
        } else {
            (
                quantile(&mut boot[k].clone(), alpha),
                quantile(&mut boot[k].clone(), 1.0 - alpha),
            )
        };
        Estimate {
            value: full[k],
            lower,
            upper,
        }
    };
    let sw: f64 = t.w.iter().sum();
    let sw2: f64 = t.w.iter().map(|w| w * w).sum();
    let mut largest = raw.clone();
    largest.sort_by(|a, b| b.total_cmp(a));
    largest.truncate(5);
    Ok(Report {
        rows: n,
        ips: est(0),
        snips: est(1),
        dr: est(2),
        logging: est(3),
        weights: WeightReport {
            mean: sw / n as f64,
            max: raw.iter().cloned().fold(0.0, f64::max),
            clipped: raw.iter().filter(|&&w| w > opts.clip).count(),
            clip: opts.clip,
            effective_sample_size: if sw2 > 0.0 { sw * sw / sw2 } else { 0.0 },
            largest,
        },
    })
}

/// The q-quantile by linear interpolation between order statistics.
fn quantile(xs: &mut [f64], q: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    let pos = q * (xs.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    xs[lo] + (xs[hi] - xs[lo]) * (pos - lo as f64)
}

#[cfg(test)]
#[path = "ope_tests.rs"]
mod tests;
