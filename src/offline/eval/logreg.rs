//! The logistic-regression baseline: per model, a logistic regression of
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

use crate::offline::replay::{DatasetModel, Row};

/// L2 strengths tried by cross-validation (per-example loss scale).
pub const LAMBDAS: [f64; 4] = [3e-2, 1e-1, 3e-1, 1.0];
const FOLDS: usize = 3;
const ITERS: usize = 100;

/// Fitted per-model logistic regressions.
#[derive(Debug, Clone)]
pub struct LogReg {
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// (dim + 1) × models, row-major; the last row is the bias.
    w: Vec<f64>,
    models: usize,
    /// The L2 strength cross-validation chose.
    pub lambda: f64,
}

impl LogReg {
    /// Fits on the training rows, choosing λ by cross-validation (seeded folds).
    pub fn fit(emb: &[Vec<f32>], rows: &[Row], models: &[DatasetModel], seed: u64) -> LogReg {
        let y: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| models.iter().map(|m| r.outcomes[&m.name].quality).collect())
            .collect();
        let lambda = if emb.len() >= 2 * FOLDS {
            let mut idx: Vec<usize> = (0..emb.len()).collect();
            idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let loss = |l: f64| -> f64 {
                (0..FOLDS)
                    .map(|f| {
                        let (tr, te): (Vec<usize>, Vec<usize>) =
                            idx.iter().partition(|&&i| i % FOLDS != f);
                        let pick = |ix: &[usize]| -> (Vec<Vec<f32>>, Vec<Vec<f64>>) {
                            ix.iter().map(|&i| (emb[i].clone(), y[i].clone())).unzip()
                        };
                        let ((xa, ya), (xb, yb)) = (pick(&tr), pick(&te));
                        let m = LogReg::fit_with(&xa, &ya, models.len(), l);
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
        };
        LogReg::fit_with(emb, &y, models.len(), lambda)
    }

    /// Fits with a given L2 strength `lambda`.
    pub fn fit_with(x: &[Vec<f32>], y: &[Vec<f64>], models: usize, lambda: f64) -> LogReg {
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
        LogReg {
            mean,
            scale,
            w,
            models,
            lambda,
        }
    }

    /// Predicted quality (probability) per model, dataset order.
    pub fn predict(&self, e: &[f32]) -> Vec<f64> {
        let m = self.models;
        let mut s = self.w[self.mean.len() * m..].to_vec();
        for (j, ((&a, mu), sc)) in e.iter().zip(&self.mean).zip(&self.scale).enumerate() {
            let v = (f64::from(a) - mu) * sc;
            s.iter_mut()
                .zip(&self.w[j * m..(j + 1) * m])
                .for_each(|(s, w)| *s += v * w);
        }
        s.into_iter().map(sigmoid).collect()
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
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
        let m = LogReg::fit_with(&x, &y, 2, 1e-3);
        let a = m.predict(&[1.0, 0.0, 0.05]);
        let b = m.predict(&[0.0, 1.0, 0.05]);
        assert!(a[0] > 0.8 && a[1] < 0.2, "{a:?}");
        assert!(b[1] > 0.8 && b[0] < 0.2, "{b:?}");
        let again = LogReg::fit_with(&x, &y, 2, 1e-3);
        assert_eq!(
            again.predict(&[0.5, 0.5, 0.05]),
            m.predict(&[0.5, 0.5, 0.05])
        );
    }

    #[test]
    fn stronger_regularisation_shrinks_towards_the_base_rate() {
        let x: Vec<Vec<f32>> = (0..20).map(|i| vec![i as f32 / 20.0, 1.0]).collect();
        let y: Vec<Vec<f64>> = (0..20).map(|i| vec![f64::from(i >= 10)]).collect();
        let weak = LogReg::fit_with(&x, &y, 1, 1e-4).predict(&[1.0, 1.0])[0];
        let strong = LogReg::fit_with(&x, &y, 1, 10.0).predict(&[1.0, 1.0])[0];
        assert!(
            weak > strong && strong > 0.5 && strong < 0.7,
            "{weak} {strong}"
        );
    }
}
