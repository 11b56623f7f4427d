//! The quality head (and the logistic-regression baseline): per model, a logistic regression of
//! quality (P(correct) when quality is 0/1; a soft label otherwise, with the
//! same cross-entropy loss) on the 384-d MiniLM embedding, L2-regularised.
//!
//! Features are standardised on the training rows (unit-norm embeddings have
//! tiny per-dimension scales, which would make one L2 strength mean very
//! different things per dimension) plus a bias that is not regularised. All
//! models share the design matrix, so they are fitted together by full-batch
//! Nesterov gradient descent from zero with the step 1/L from a power-iteration
//! bound on the Hessian: no sampling, so the fit is deterministic. The L2
//! strength is picked from a small grid by k-fold cross-validation inside the
//! training rows (folds from a seeded shuffle): the evaluation rows are never
//! seen.

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::classify::quality::{QualityHead, sigmoid};
use crate::offline::replay::{DatasetModel, Row};

/// L2 strengths tried by cross-validation (per-example loss scale).
pub const LAMBDAS: [f64; 4] = [3e-2, 1e-1, 3e-1, 1.0];
const FOLDS: usize = 3;
const ITERS: usize = 100;

/// Fits per-model logistic regressions: the quality head the service loads.
pub struct LogReg;

impl LogReg {
    /// Fits on the training rows, choosing λ by cross-validation (seeded folds).
    pub fn fit(emb: &[Vec<f32>], rows: &[Row], models: &[DatasetModel], seed: u64) -> QualityHead {
        let y = targets(rows, models);
        let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
        let lambda = LogReg::cross_validate(emb, &y, &names, seed);
        LogReg::fit_with(emb, &y, &names, lambda)
    }

    /// Predictions for each training row from a head fitted without that
    /// row's fold (`FOLDS` seeded folds, at the given λ): what a head would
    /// say of prompts it never saw, which is what the bandit must learn to
    /// trust, not the in-sample fit.
    pub fn out_of_fold(
        emb: &[Vec<f32>],
        rows: &[Row],
        models: &[DatasetModel],
        lambda: f64,
        seed: u64,
    ) -> Vec<Vec<f64>> {
        let y = targets(rows, models);
        let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
        if emb.len() < 2 * FOLDS {
            let h = LogReg::fit_with(emb, &y, &names, lambda);
            return emb.iter().map(|e| h.predict(e)).collect();
        }
        let idx = shuffled(emb.len(), seed ^ 0x9e37);
        let mut out = vec![Vec::new(); emb.len()];
        for f in 0..FOLDS {
            let (tr, te) = folds(&idx, f);
            let (xa, ya) = pick(emb, &y, &tr);
            let h = LogReg::fit_with(&xa, &ya, &names, lambda);
            for i in te {
                out[i] = h.predict(&emb[i]);
            }
        }
        out
    }

    /// The λ of [`LAMBDAS`] with the least held-out log loss over seeded folds.
    fn cross_validate(emb: &[Vec<f32>], y: &[Vec<f64>], names: &[String], seed: u64) -> f64 {
        if emb.len() >= 2 * FOLDS {
            let idx = shuffled(emb.len(), seed);
            let loss = |l: f64| -> f64 {
                (0..FOLDS)
                    .map(|f| {
                        let (tr, te) = folds(&idx, f);
                        let ((xa, ya), (xb, yb)) = (pick(emb, y, &tr), pick(emb, y, &te));
                        let m = LogReg::fit_with(&xa, &ya, names, l);
                        xb.iter()
                            .zip(&yb)
                            .map(|(x, t)| log_loss(&m.predict(x), t))
                            .sum::<f64>()
                    })
                    .sum()
            };
            LAMBDAS
                .iter()
                .map(|&l| (loss(l), l))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map_or(LAMBDAS[0], |p| p.1)
        } else {
            LAMBDAS[LAMBDAS.len() / 2]
        }
    }

    /// Fits with a given L2 strength `lambda`, one regression per name.
    pub fn fit_with(x: &[Vec<f32>], y: &[Vec<f64>], names: &[String], lambda: f64) -> QualityHead {
        let models = names.len();
        let d = x.first().map_or(0, Vec::len);
        let n = x.len().max(1) as f64;
        let mut mean = vec![0.0; d];
        for v in x {
            mean.iter_mut()
                .zip(v)
                .for_each(|(m, &a)| *m += f64::from(a) / n);
        }
        let mut var = vec![0.0; d];
        for v in x {
            var.iter_mut()
                .zip(v)
                .zip(&mean)
                .for_each(|((s, &a), m)| *s += (f64::from(a) - m).powi(2) / n);
        }
        let scale: Vec<f64> = var.iter().map(|v| 1.0 / v.sqrt().max(1e-8)).collect();
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|v| {
                let mut r: Vec<f64> = v
                    .iter()
                    .zip(&mean)
                    .zip(&scale)
                    .map(|((&a, m), s)| (f64::from(a) - m) * s)
                    .collect();
                r.push(1.0);
                r
            })
            .collect();
        // Logistic loss curvature is at most 1/4 of the design's top eigenvalue.
        let step = 1.0 / (0.25 * top_eigen(&z) + lambda);
        let dd = d + 1;
        let mut w = vec![0.0; dd * models];
        let mut prev = w.clone();
        let mut grad = vec![0.0; dd * models];
        for t in 0..ITERS {
            // Nesterov look-ahead point.
            let beta = t as f64 / (t as f64 + 3.0);
            let look: Vec<f64> = w
                .iter()
                .zip(&prev)
                .map(|(a, b)| a + beta * (a - b))
                .collect();
            grad.iter_mut().for_each(|g| *g = 0.0);
            for (row, target) in z.iter().zip(y) {
                let mut s = vec![0.0; models];
                for (j, &a) in row.iter().enumerate() {
                    let wj = &look[j * models..(j + 1) * models];
                    s.iter_mut().zip(wj).for_each(|(s, w)| *s += a * w);
                }
                for (s, t) in s.iter_mut().zip(target) {
                    *s = (sigmoid(*s) - t) / n;
                }
                for (j, &a) in row.iter().enumerate() {
                    let gj = &mut grad[j * models..(j + 1) * models];
                    gj.iter_mut().zip(&s).for_each(|(g, r)| *g += a * r);
                }
            }
            // The bias row (the last one) is not regularised.
            for (i, g) in grad.iter_mut().enumerate().take(d * models) {
                *g += lambda * look[i];
            }
            prev = std::mem::replace(
                &mut w,
                look.iter().zip(&grad).map(|(l, g)| l - step * g).collect(),
            );
        }
        QualityHead {
            models: names.to_vec(),
            mean,
            scale,
            w,
            lambda,
        }
    }
}

/// Quality per training row and model, dataset order.
fn targets(rows: &[Row], models: &[DatasetModel]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| models.iter().map(|m| r.outcomes[&m.name].quality).collect())
        .collect()
}

fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    idx
}

/// (training, held-out) row indices of fold `f`: every `FOLDS`-th position
/// of the seeded shuffle `idx`.
fn folds(idx: &[usize], f: usize) -> (Vec<usize>, Vec<usize>) {
    let mut split = (Vec::new(), Vec::new());
    for (pos, &i) in idx.iter().enumerate() {
        if pos % FOLDS == f {
            split.1.push(i);
        } else {
            split.0.push(i);
        }
    }
    split
}

fn pick(x: &[Vec<f32>], y: &[Vec<f64>], ix: &[usize]) -> (Vec<Vec<f32>>, Vec<Vec<f64>>) {
    ix.iter().map(|&i| (x[i].clone(), y[i].clone())).unzip()
}

fn log_loss(p: &[f64], t: &[f64]) -> f64 {
    p.iter()
        .zip(t)
        .map(|(&p, &t)| {
            let p = p.clamp(1e-9, 1.0 - 1e-9);
            -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
        })
        .sum()
}

/// The largest eigenvalue of XᵀX/n by power iteration (an upper estimate is
/// what the step needs: 1.1× margin for the iteration's shortfall).
fn top_eigen(z: &[Vec<f64>]) -> f64 {
    let d = z.first().map_or(0, Vec::len);
    let n = z.len().max(1) as f64;
    let mut v = vec![1.0 / (d.max(1) as f64).sqrt(); d];
    let mut lam = 1.0;
    for _ in 0..30 {
        let mut u = vec![0.0; d];
        for row in z {
            let p: f64 = row.iter().zip(&v).map(|(a, b)| a * b).sum();
            u.iter_mut().zip(row).for_each(|(u, a)| *u += p * a / n);
        }
        lam = u.iter().map(|a| a * a).sum::<f64>().sqrt();
        if lam <= 0.0 {
            return 1.0;
        }
        v = u.iter().map(|a| a / lam).collect();
    }
    1.1 * lam
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_models_by_region_and_is_deterministic() {
        // Model 0 is right on prompts near e0, model 1 near e1.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..40 {
            let t = i as f32 / 40.0;
            x.push(vec![1.0, 0.1 * t, 0.05]);
            y.push(vec![1.0, 0.0]);
            x.push(vec![0.1 * t, 1.0, 0.05]);
            y.push(vec![0.0, 1.0]);
        }
        let names = ["a".to_string(), "b".to_string()];
        let m = LogReg::fit_with(&x, &y, &names, 1e-3);
        let a = m.predict(&[1.0, 0.0, 0.05]);
        let b = m.predict(&[0.0, 1.0, 0.05]);
        assert!(a[0] > 0.8 && a[1] < 0.2, "{a:?}");
        assert!(b[1] > 0.8 && b[0] < 0.2, "{b:?}");
        let again = LogReg::fit_with(&x, &y, &names, 1e-3);
        assert_eq!(
            again.predict(&[0.5, 0.5, 0.05]),
            m.predict(&[0.5, 0.5, 0.05])
        );
    }

    #[test]
    fn stronger_regularisation_shrinks_towards_the_base_rate() {
        let x: Vec<Vec<f32>> = (0..20).map(|i| vec![i as f32 / 20.0, 1.0]).collect();
        let y: Vec<Vec<f64>> = (0..20).map(|i| vec![f64::from(i >= 10)]).collect();
        let names = ["a".to_string()];
        let weak = LogReg::fit_with(&x, &y, &names, 1e-4).predict(&[1.0, 1.0])[0];
        let strong = LogReg::fit_with(&x, &y, &names, 10.0).predict(&[1.0, 1.0])[0];
        assert!(
            weak > strong && strong > 0.5 && strong < 0.7,
            "{weak} {strong}"
        );
    }
}
