//! Thompson sampling's choice probabilities by Monte Carlo, mixed with an
//! exploration floor, and the draw of the chosen arm from them.
//!
//! The procedure, given per-arm score means μ_a − w·c_a and sample scales v·s_a:
//! 1. draw M joint samples score_a + v·s_a·z_a with z_a ~ N(0, 1) independent,
//!    and count how often each arm is the argmax: p_TS(a) = wins_a / M;
//! 2. mix in the floor: p(a) = (1 − ε)·p_TS(a) + ε/n;
//! 3. draw the chosen arm from p.
//!
//! Invariant: the logged propensity p(chosen) is *exactly* the probability with
//! which the arm was chosen given the draws of step 1, so inverse-propensity
//! estimators stay unbiased. wins_a/M is an unbiased estimate of the true
//! Thompson probability with standard error √(p(1−p)/M) ≤ 0.5/√M (0.022 for
//! M = 512); that error only changes *which* exploring policy ran, never the
//! correctness of its logged propensities. With ε > 0 every eligible arm has
//! p ≥ ε/n > 0, so every arm stays in the support of the logging policy.
//!
//! Normal draws use the ziggurat method (Marsaglia & Tsang 2000, "The Ziggurat
//! Method for Generating Random Variables", J. Stat. Softw. 5(8)), in
//! Doornik's formulation (2005, "An Improved Ziggurat Method to Generate Normal
//! Random Samples") with 256 layers: one u64 and a table lookup per draw in
//! ~99% of cases, against a logarithm, a square root and sin/cos per pair for
//! Box–Muller, which is most of selection's cost at 30 arms × 512 samples.

use rand::RngCore;
use rand::rngs::SmallRng;

/// Layers of the ziggurat; the layer index is the low 8 bits of a draw.
const LAYERS: usize = 256;
/// Start of the tail and area of each layer for 256 layers (Marsaglia & Tsang 2000, §3).
const TAIL_START: f64 = 3.654_152_885_361_009;
const LAYER_AREA: f64 = 4.928_673_233_99e-3;
/// 2⁻⁵³: turns the top 53 bits of a u64 into a uniform in [0, 1).
const UNIT: f64 = 1.0 / (1u64 << 53) as f64;

/// The ziggurat tables: layer edges and the ratio of successive edges.
#[derive(Debug, Clone)]
pub(super) struct Ziggurat {
    edge: [f64; LAYERS + 1],
    ratio: [f64; LAYERS],
}

impl Ziggurat {
    pub(super) fn new() -> Self {
        let mut edge = [0.0; LAYERS + 1];
        let mut f = (-0.5 * TAIL_START * TAIL_START).exp();
        // Layer 0 is the base strip plus the tail, folded into a box of the same area.
        edge[0] = LAYER_AREA / f;
        edge[1] = TAIL_START;
        for i in 2..LAYERS {
            edge[i] = (-2.0 * (LAYER_AREA / edge[i - 1] + f).ln()).sqrt();
            f = (-0.5 * edge[i] * edge[i]).exp();
        }
        let mut ratio = [0.0; LAYERS];
        for i in 0..LAYERS {
            ratio[i] = edge[i + 1] / edge[i];
        }
        Self { edge, ratio }
    }

    /// One standard normal draw.
    #[inline]
    pub(super) fn sample(&self, rng: &mut SmallRng) -> f64 {
        loop {
            let bits = rng.next_u64();
            let u = 2.0 * ((bits >> 11) as f64 * UNIT) - 1.0;
            let i = (bits & (LAYERS as u64 - 1)) as usize;
            // Inside the layer's rectangle: accept at once (the common case).
            if u.abs() < self.ratio[i] {
                return u * self.edge[i];
            }
            if i == 0 {
                return tail(u < 0.0, rng);
            }
            // In the wedge between rectangle and curve: accept under the density.
            let x = u * self.edge[i];
            let f0 = (-0.5 * (self.edge[i] * self.edge[i] - x * x)).exp();
            let f1 = (-0.5 * (self.edge[i + 1] * self.edge[i + 1] - x * x)).exp();
            if f1 + open_unit(rng) * (f0 - f1) < 1.0 {
                return x;
            }
        }
    }
}

/// A draw from the normal tail beyond `TAIL_START` (Marsaglia 1964).
fn tail(negative: bool, rng: &mut SmallRng) -> f64 {
    loop {
        let x = open_unit(rng).ln() / TAIL_START;
        let y = open_unit(rng).ln();
        if -2.0 * y >= x * x {
            return if negative {
                x - TAIL_START
            } else {
                TAIL_START - x
            };
        }
    }
}

/// Uniform in the open interval (0, 1), safe for `ln`.
#[inline]
fn open_unit(rng: &mut SmallRng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) * UNIT
}

/// Step 1: how often each arm has the highest sampled score in `samples`
/// joint draws. Arms are compared in slice order with a strict `>`, so on an
/// exact tie (possible only for zero scales) the earlier arm wins; callers
/// order arms by their tie-break rule.
pub(super) fn thompson_wins(
    scores: &[f64],
    scales: &[f64],
    samples: u32,
    zig: &Ziggurat,
    rng: &mut SmallRng,
) -> Vec<u32> {
    let mut wins = vec![0u32; scores.len()];
    if scales.iter().all(|&s| s == 0.0) {
        // Every sample equals the means: no need to draw.
        wins[first_max(scores)] = samples;
        return wins;
    }
    for _ in 0..samples {
        let mut best = 0;
        let mut top = f64::NEG_INFINITY;
        for (a, (&m, &s)) in scores.iter().zip(scales).enumerate() {
            let q = if s == 0.0 { m } else { m + s * zig.sample(rng) };
            if q > top {
                top = q;
                best = a;
            }
        }
        wins[best] += 1;
    }
    wins
}

/// Step 2: p(a) = (1 − ε)·wins_a/M + ε/n. Sums to 1 up to rounding.
pub(super) fn mix(wins: &[u32], samples: u32, floor: f64) -> Vec<f64> {
    let uniform = floor / wins.len() as f64;
    let m = f64::from(samples.max(1));
    wins.iter()
        .map(|&w| (1.0 - floor) * f64::from(w) / m + uniform)
        .collect()
}

/// Step 3: an index drawn with probability `p[i]`. Zero-probability entries
/// are never returned; if rounding leaves the uniform past the last bucket,
/// the last entry with positive probability is returned.
pub(super) fn draw(p: &[f64], rng: &mut SmallRng) -> usize {
    let u = (rng.next_u64() >> 11) as f64 * UNIT;
    let mut cumulative = 0.0;
    for (i, &pi) in p.iter().enumerate() {
        cumulative += pi;
        if pi > 0.0 && u < cumulative {
            return i;
        }
    }
    p.iter()
        .rposition(|&pi| pi > 0.0)
        .expect("a probability vector has a positive entry: this is a bug")
}

/// Index of the first maximum (earliest wins ties).
pub(super) fn first_max(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::super::tests::cand;
    use super::super::{Bandit, BanditParams, BanditState};
    use super::*;
    use crate::policy::{Context, Policy};

    /// Selection frequencies match the mean logged propensity: the logged
    /// number is the probability with which the arm was actually chosen.
    #[test]
    fn selection_frequencies_match_logged_propensities() {
        // Close arms so that every probability is far from 0 and 1; model 2 is
        // not eligible.
        let mut state = BanditState::new(2);
        for (i, r) in [0.6, 0.62, 0.9, 0.55].into_iter().enumerate() {
            for k in 0..5 {
                state
                    .observe(&format!("m{i}"), &[1.0, 0.2 * k as f32], r)
                    .unwrap();
            }
        }
        let arms: Vec<_> = (0..4).map(|i| (format!("m{i}"), 0.5)).collect();
        let params = BanditParams::try_new(1.0, 0.3, 0.1, 64, 1.0).unwrap();
        let bandit = Bandit::build(&state, params, &arms);
        let mut cands: Vec<_> = (0..4).map(|m| cand(m, 0.5, 0.001)).collect();
        cands[2].eligible = false;
        let ctx = Context {
            cost_weight: 1.0,
            features: vec![1.0, 0.5],
            prompt_tokens: 0,
        };
        let mut rng = StdRng::seed_from_u64(2024);
        let draws = 20_000;
        let (mut chosen, mut mean_p) = ([0.0; 4], [0.0; 4]);
        for _ in 0..draws {
            let d = bandit.decide(&ctx, cands.clone(), &mut rng);
            let p: Vec<f64> = d.candidates.iter().map(|c| c.probability).collect();
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert_eq!(p[2], 0.0);
            assert!([0, 1, 3].iter().all(|&a| p[a] >= 0.1 / 3.0 - 1e-15));
            assert_eq!(d.propensity, p[d.model]);
            chosen[d.model] += 1.0;
            for a in 0..4 {
                mean_p[a] += p[a];
            }
        }
        for a in 0..4 {
            let (freq, p) = (chosen[a] / draws as f64, mean_p[a] / draws as f64);
            let se = (p * (1.0 - p) / draws as f64).sqrt();
            assert!(
                (freq - p).abs() <= 4.0 * se + 1e-12,
                "arm {a}: {freq} vs {p} (se {se})"
            );
            if a != 2 {
                assert!(
                    p > 0.05 && p < 0.95,
                    "arm {a} probability {p} is not informative"
                );
            }
        }
    }

    #[test]
    fn ziggurat_draws_are_standard_normal() {
        let zig = Ziggurat::new();
        let mut rng = SmallRng::seed_from_u64(7);
        let n = 400_000;
        let (mut sum, mut sq, mut beyond2, mut beyond3, mut beyond_tail) = (0.0, 0.0, 0, 0, 0);
        for _ in 0..n {
            let z = zig.sample(&mut rng);
            sum += z;
            sq += z * z;
            beyond2 += usize::from(z.abs() > 2.0);
            beyond3 += usize::from(z > 3.0);
            beyond_tail += usize::from(z.abs() > TAIL_START);
        }
        let nf = n as f64;
        // Tolerances are ~4 standard errors at n = 400k.
        assert!((sum / nf).abs() < 0.007, "mean {}", sum / nf);
        assert!((sq / nf - 1.0).abs() < 0.01, "variance {}", sq / nf);
        let p2 = beyond2 as f64 / nf; // P(|Z| > 2) = 0.04550
        assert!((p2 - 0.0455).abs() < 0.0014, "P(|Z|>2) = {p2}");
        let p3 = beyond3 as f64 / nf; // P(Z > 3) = 0.001350
        assert!((p3 - 0.00135).abs() < 0.00024, "P(Z>3) = {p3}");
        let pt = beyond_tail as f64 / nf; // P(|Z| > 3.654) = 0.000258
        assert!((pt - 0.000258).abs() < 0.0001, "tail {pt}");
    }

    #[test]
    fn mixing_keeps_the_floor_and_sums_to_one() {
        let p = mix(&[512, 0, 0, 0], 512, 0.05);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[1..].iter().all(|&q| (q - 0.0125).abs() < 1e-15));
        assert!((p[0] - (0.95 + 0.0125)).abs() < 1e-15);
    }

    #[test]
    fn draws_never_pick_zero_probability_entries() {
        let mut rng = SmallRng::seed_from_u64(3);
        let p = [0.0, 0.5, 0.0, 0.5, 0.0];
        for _ in 0..1000 {
            assert!(matches!(draw(&p, &mut rng), 1 | 3));
        }
        assert_eq!(first_max(&[1.0, 3.0, 3.0]), 1);
    }

    #[test]
    fn thompson_wins_follow_the_posterior() {
        let zig = Ziggurat::new();
        let mut rng = SmallRng::seed_from_u64(11);
        // Two arms 1 sd apart (difference sd √2): P(second wins) = Φ(1/√2) = 0.7602.
        let wins = thompson_wins(&[0.0, 1.0], &[1.0, 1.0], 100_000, &zig, &mut rng);
        let p = f64::from(wins[1]) / 100_000.0;
        assert!((p - 0.7602).abs() < 0.006, "{p}");
        // Zero scales: deterministic, ties to the first.
        assert_eq!(
            thompson_wins(&[0.5, 0.5], &[0.0, 0.0], 64, &zig, &mut rng),
            [64, 0]
        );
    }
}
