//! Element-wise kernels of the encoder: layer norm, GELU, softmax, and the lane-wise
//! reductions they need, written over plain slices.
//!
//! Everything here is `#[inline(always)]` and branch-free in its inner loops on purpose:
//! the encoder compiles its whole forward pass once more inside a
//! `#[target_feature(enable = "avx512f,...")]` function, and these bodies are inlined
//! into it, so LLVM vectorises them with 16-wide registers while the crate itself is
//! still built for baseline x86-64. Reductions keep 16 independent partial sums because
//! LLVM never reorders a single floating-point sum (that would change its rounding).
//!
//! `exp` and `erf` are polynomial approximations (Cephes `expf`, Abramowitz & Stegun
//! 7.1.26) because libm calls cannot be vectorised; both are accurate to ~1e-7, far
//! below the int8 quantisation error of the linear layers.

const LANES: usize = 16;

/// Sum of a slice with 16 independent accumulators (vectorisable).
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// Largest element (−inf for an empty slice).
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    acc.iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Dot product with 16 independent accumulators.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `e^x`, Cephes `expf` polynomial; inputs are clamped to the finite range of f32.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to the nearest integer without a `round` instruction
    // (SSE2 has none), and leaves that integer in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let bits = (t.to_bits() as i32 - MAGIC.to_bits() as i32 + 127) << 23;
    er * f32::from_bits(bits as u32)
}

/// Exact (erf-based) GELU, which BERT's `hidden_act = "gelu"` means.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    // erf(z) by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), z = x / sqrt(2).
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let erf_abs = 1.0 - poly * exp(-a * a);
    let erf = erf_abs.copysign(z);
    0.5 * x * (1.0 + erf)
}

/// GELU applied in place.
#[inline(always)]
pub fn gelu_inplace(xs: &mut [f32]) {
    for x in xs {
        *x = gelu(*x);
    }
}

/// Softmax in place over one row.
#[inline(always)]
pub fn softmax_inplace(xs: &mut [f32]) {
    let m = max(xs);
    for x in xs.iter_mut() {
        *x = exp(*x - m);
    }
    let inv = 1.0 / sum(xs);
    for x in xs.iter_mut() {
        *x *= inv;
    }
}

/// `x = LayerNorm(x + residual)` over one row, as BERT's `LayerNorm(hidden + input)`.
#[inline(always)]
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    for (v, r) in x.iter_mut().zip(residual) {
        *v += r;
    }
    layer_norm(x, gamma, beta, eps);
}

/// Layer norm in place over one row (biased variance, as torch's `LayerNorm`).
#[inline(always)]
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for c in chunks {
        for l in 0..LANES {
            let d = c[l] - mean;
            acc[l] += d * d;
        }
    }
    let var = (acc.iter().sum::<f32>() + tail) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in x.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// `y += a * x`.
#[inline(always)]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (v, u) in y.iter_mut().zip(x) {
        *v += a * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        for i in -800..800 {
            let x = i as f32 * 0.1;
            let (got, want) = (exp(x), x.exp());
            assert!(
                ((got - want) / want).abs() < 2e-6,
                "exp({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_matches_erf_definition() {
        // Reference values of 0.5 x (1 + erf(x / sqrt 2)) from torch.nn.functional.gelu.
        let cases = [
            (-3.0f32, -0.004_049_7),
            (-1.0, -0.158_655_26),
            (0.5, 0.345_731_14),
            (2.0, 1.954_499_7),
        ];
        for (x, want) in cases {
            assert!((gelu(x) - want).abs() < 1e-6, "gelu({x}) = {}", gelu(x));
        }
    }

    #[test]
    fn softmax_and_layer_norm_are_normalised() {
        let mut xs: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        softmax_inplace(&mut xs);
        assert!((sum(&xs) - 1.0).abs() < 1e-6);
        let mut ys: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let ones = vec![1.0; 40];
        let zeros = vec![0.0; 40];
        layer_norm(&mut ys, &ones, &zeros, 1e-12);
        assert!(sum(&ys).abs() < 1e-4);
        assert!((dot(&ys, &ys) / 40.0 - 1.0).abs() < 1e-4);
    }
}
