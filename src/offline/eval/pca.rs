//! An opt-in richer bandit context for `eval --pca K`: the first `K`
//! principal components of the prompt embedding (fitted on the training rows
//! only), appended to the service's context (bias, length, head
//! probabilities). The service's own feature layout is untouched: this only
//! exists in the offline evaluation.

/// Centred projection onto the top principal directions of the training
/// embeddings, found by power iteration with deflation (deterministic start).
#[derive(Debug, Clone)]
pub struct Pca {
    mean: Vec<f64>,
    /// Unit directions, scaled by 1/sqrt(eigenvalue) when applied so every
    /// component has unit variance on the training rows (the ridge's single
    /// λ then treats them alike).
    dirs: Vec<(Vec<f64>, f64)>,
}

impl Pca {
    pub fn fit(x: &[Vec<f32>], k: usize) -> Pca {
        let d = x.first().map_or(0, Vec::len);
        let n = x.len().max(1) as f64;
        let mut mean = vec![0.0; d];
        for v in x {
            mean.iter_mut()
                .zip(v)
                .for_each(|(m, &a)| *m += f64::from(a) / n);
        }
        let c: Vec<Vec<f64>> = x
            .iter()
            .map(|v| {
                v.iter()
                    .zip(&mean)
                    .map(|(&a, m)| f64::from(a) - m)
                    .collect()
            })
            .collect();
        let mut dirs: Vec<(Vec<f64>, f64)> = Vec::new();
        for i in 0..k.min(d) {
            // A fixed, non-degenerate start vector per component.
            let mut v: Vec<f64> = (0..d)
                .map(|j| 1.0 + ((i * 31 + j * 17) % 7) as f64)
                .collect();
            let mut lam = 0.0;
            for _ in 0..60 {
                let mut u = vec![0.0; d];
                for row in &c {
                    let p: f64 = row.iter().zip(&v).map(|(a, b)| a * b).sum();
                    u.iter_mut().zip(row).for_each(|(u, a)| *u += p * a / n);
                }
                // Deflate: remove the directions already found.
                for (w, _) in &dirs {
                    let p: f64 = u.iter().zip(w).map(|(a, b)| a * b).sum();
                    u.iter_mut().zip(w).for_each(|(u, b)| *u -= p * b);
                }
                lam = u.iter().map(|a| a * a).sum::<f64>().sqrt();
                if lam <= 1e-12 {
                    break;
                }
                v = u.iter().map(|a| a / lam).collect();
            }
            if lam <= 1e-12 {
                break;
            }
            dirs.push((v, lam));
        }
        Pca { mean, dirs }
    }

    /// The components of one embedding (unit variance on the training rows).
    pub fn project(&self, e: &[f32]) -> Vec<f32> {
        self.dirs
            .iter()
            .map(|(w, lam)| {
                let p: f64 = e
                    .iter()
                    .zip(&self.mean)
                    .zip(w)
                    .map(|((&a, m), b)| (f64::from(a) - m) * b)
                    .sum();
                (p / lam.sqrt()) as f32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_direction_of_largest_variance_first() {
        let x: Vec<Vec<f32>> = (0..50)
            .map(|i| {
                let t = i as f32 / 50.0 - 0.5;
                vec![3.0 * t, 0.5 * ((i % 5) as f32 - 2.0) / 5.0]
            })
            .collect();
        let p = Pca::fit(&x, 2);
        assert_eq!(p.dirs.len(), 2);
        assert!(p.dirs[0].0[0].abs() > 0.99, "{:?}", p.dirs[0]);
        assert!(p.dirs[0].1 > p.dirs[1].1);
        assert_eq!(p.project(&[0.0, 0.0]).len(), 2);
    }
}
