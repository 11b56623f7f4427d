//! Small dense linear algebra for the bandit's d×d posteriors (d ≈ 20–60), in f64.
//!
//! Full matrices are square and row-major (`Vec<f64>` of length d²). Symmetric
//! matrices that are stored or serialised use the packed upper triangle, row
//! by row: row i holds columns i..d at offset [`row_offset`]`(d, i)`.
//!
//! Only what the posterior needs: a Cholesky factorisation of a symmetric
//! positive-definite matrix, solves through it and the inverse. The O(d³)
//! work happens in `Bandit::build`, never on the request path.

/// The matrix is not numerically symmetric positive definite.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("matrix is not positive definite: pivot {pivot} is {value}")]
pub struct NotPositiveDefinite {
    pub pivot: usize,
    pub value: f64,
}

/// Entries in the packed upper triangle of a d×d symmetric matrix.
pub const fn packed_len(d: usize) -> usize {
    d * (d + 1) / 2
}

/// Offset of row `i` (columns i..d) in the packed upper triangle.
pub const fn row_offset(d: usize, i: usize) -> usize {
    i * (2 * d - i + 1) / 2
}

/// Expands a packed upper triangle into the full symmetric matrix.
pub fn unpack_symmetric(packed: &[f64], d: usize) -> Vec<f64> {
    debug_assert_eq!(packed.len(), packed_len(d));
    let mut full = vec![0.0; d * d];
    for i in 0..d {
        let row = &packed[row_offset(d, i)..row_offset(d, i + 1)];
        for (k, &v) in row.iter().enumerate() {
            full[i * d + i + k] = v;
            full[(i + k) * d + i] = v;
        }
    }
    full
}

/// The quadratic form xᵀSx for a symmetric S given as a packed upper triangle
/// whose off-diagonal entries are already doubled (see [`pack_quadratic`]).
/// Each row is a contiguous dot product, so the loop vectorises; this is the
/// per-arm O(d²) cost of selection.
#[inline]
pub fn quadratic_form(doubled: &[f64], x: &[f64]) -> f64 {
    let d = x.len();
    debug_assert_eq!(doubled.len(), packed_len(d));
    let mut offset = 0;
    let mut total = 0.0;
    for i in 0..d {
        let row = &doubled[offset..offset + d - i];
        offset += d - i;
        total += x[i] * dot(row, &x[i..]);
    }
    total
}

/// Packs `scale`·S (S full, symmetric) for [`quadratic_form`]: the upper
/// triangle with off-diagonal entries doubled, so xᵀSx needs half the products.
pub fn pack_quadratic(full: &[f64], d: usize, scale: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(packed_len(d));
    for i in 0..d {
        out.push(scale * full[i * d + i]);
        out.extend((i + 1..d).map(|j| 2.0 * scale * full[i * d + j]));
    }
    out
}

/// Dot product with four independent accumulators (lets the compiler use SIMD
/// without reassociating a single sum, which it may not do for floats).
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 4];
    let chunks = n / 4;
    for c in 0..chunks {
        for k in 0..4 {
            acc[k] += a[4 * c + k] * b[4 * c + k];
        }
    }
    let mut tail = 0.0;
    for i in 4 * chunks..n {
        tail += a[i] * b[i];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// A = L·Lᵀ with L lower triangular (row-major d×d, zeros above the diagonal).
#[derive(Debug, Clone)]
pub struct Cholesky {
    d: usize,
    l: Vec<f64>,
}

impl Cholesky {
    /// Factorises the full symmetric matrix `a` (only its lower triangle is read).
    pub fn new(a: &[f64], d: usize) -> Result<Self, NotPositiveDefinite> {
        assert_eq!(
            a.len(),
            d * d,
            "matrix size does not match d: this is a bug"
        );
        let mut l = vec![0.0; d * d];
        for j in 0..d {
            let row_j = &l[j * d..j * d + j];
            let pivot = a[j * d + j] - dot(row_j, row_j);
            // `!(pivot > 0)` also rejects NaN.
            if !(pivot > 0.0 && pivot.is_finite()) {
                return Err(NotPositiveDefinite {
                    pivot: j,
                    value: pivot,
                });
            }
            let ljj = pivot.sqrt();
            l[j * d + j] = ljj;
            for i in j + 1..d {
                let s = a[i * d + j] - dot(&l[i * d..i * d + j], &l[j * d..j * d + j]);
                l[i * d + j] = s / ljj;
            }
        }
        Ok(Self { d, l })
    }

    /// Solves A·x = b by forward (L·y = b) then backward (Lᵀ·x = y) substitution.
    pub fn solve(&self, b: &[f64]) -> Vec<f64> {
        let d = self.d;
        assert_eq!(
            b.len(),
            d,
            "right-hand side does not match d: this is a bug"
        );
        let l = &self.l;
        let mut y = vec![0.0; d];
        for i in 0..d {
            y[i] = (b[i] - dot(&l[i * d..i * d + i], &y[..i])) / l[i * d + i];
        }
        let mut x = y;
        for i in (0..d).rev() {
            let mut s = x[i];
            for k in i + 1..d {
                s -= l[k * d + i] * x[k];
            }
            x[i] = s / l[i * d + i];
        }
        x
    }

    /// A⁻¹ = L⁻ᵀ·L⁻¹ as a full row-major matrix (exactly symmetric).
    pub fn inverse(&self) -> Vec<f64> {
        let d = self.d;
        let l = &self.l;
        // M = L⁻¹ (lower triangular), column by column: L·m_j = e_j.
        let mut m = vec![0.0; d * d];
        for j in 0..d {
            m[j * d + j] = 1.0 / l[j * d + j];
            for i in j + 1..d {
                let mut s = 0.0;
                for k in j..i {
                    s += l[i * d + k] * m[k * d + j];
                }
                m[i * d + j] = -s / l[i * d + i];
            }
        }
        // (A⁻¹)_ij = Σ_{k ≥ max(i,j)} M_ki·M_kj; compute the upper half and mirror it.
        let mut inv = vec![0.0; d * d];
        for i in 0..d {
            for j in i..d {
                let s: f64 = (j..d).map(|k| m[k * d + i] * m[k * d + j]).sum();
                inv[i * d + j] = s;
                inv[j * d + i] = s;
            }
        }
        inv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random SPD matrix G·Gᵀ + I from a fixed linear congruential sequence.
    fn spd(d: usize) -> Vec<f64> {
        let mut s = 12345u64;
        let mut g = vec![0.0; d * d];
        for v in g.iter_mut() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *v = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        }
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = (0..d).map(|k| g[i * d + k] * g[j * d + k]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        a
    }

    fn matvec(a: &[f64], x: &[f64]) -> Vec<f64> {
        let d = x.len();
        (0..d).map(|i| dot(&a[i * d..(i + 1) * d], x)).collect()
    }

    #[test]
    fn solve_and_inverse_recover_the_identity() {
        for d in [1, 2, 7, 48] {
            let a = spd(d);
            let chol = Cholesky::new(&a, d).unwrap();
            let x: Vec<f64> = (0..d).map(|i| i as f64 - 3.0).collect();
            let b = matvec(&a, &x);
            for (got, want) in chol.solve(&b).iter().zip(&x) {
                assert!((got - want).abs() < 1e-9, "d={d}: {got} vs {want}");
            }
            let inv = chol.inverse();
            for i in 0..d {
                for j in 0..d {
                    let p: f64 = (0..d).map(|k| a[i * d + k] * inv[k * d + j]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((p - want).abs() < 1e-9, "d={d} ({i},{j}): {p}");
                }
            }
        }
    }

    #[test]
    fn packing_and_quadratic_form_agree_with_the_full_matrix() {
        let d = 9;
        let a = spd(d);
        let mut packed = Vec::new();
        for i in 0..d {
            assert_eq!(packed.len(), row_offset(d, i));
            packed.extend_from_slice(&a[i * d + i..(i + 1) * d]);
        }
        assert_eq!(packed.len(), packed_len(d));
        assert_eq!(unpack_symmetric(&packed, d), a);
        let x: Vec<f64> = (0..d).map(|i| (i as f64).sin()).collect();
        let want = dot(&x, &matvec(&a, &x));
        let got = quadratic_form(&pack_quadratic(&a, d, 2.0), &x);
        assert!((got - 2.0 * want).abs() < 1e-9 * want.abs());
    }

    #[test]
    fn indefinite_matrices_are_rejected() {
        let a = [1.0, 2.0, 2.0, 1.0];
        assert_eq!(Cholesky::new(&a, 2).unwrap_err().pivot, 1);
        assert!(Cholesky::new(&[f64::NAN], 1).is_err());
    }
}
