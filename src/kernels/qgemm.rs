//! Linear layers of the encoder: `y = x · Wᵀ + b` for row-major activations.
//!
//! Two implementations behind one enum:
//! * [`Linear::F32`]: an F32 GEMM (the `gemm` crate candle's CPU matmul uses, called
//!   directly so that it stays on the calling worker thread and reads the torch-layout
//!   weight through strides), used where int8 is unavailable and as its reference.
//! * [`Linear::Int8`]: our own int8 GEMM for CPUs with AVX512-VNNI (Zen 4, Ice Lake and
//!   later). F32 on one core peaks near 100 GFLOP/s on this class of machine, which puts
//!   a 64-token MiniLM pass at ≥ 14 ms whatever the code does; `vpdpbusd` does 64
//!   multiply-adds per instruction, so int8 is the only way to the latency target.
//!
//! Int8 scheme (chosen for accuracy first, measured against the fixture): weights are
//! quantised symmetrically per output column *and* per block of [`QBLOCK`] input values;
//! activations are quantised per row and per block at run time. Small blocks keep
//! BERT's few large "outlier" hidden dimensions from wiping out the precision of the
//! rest. Activations are quantised asymmetrically, `x ≈ min + s·u` with `u ∈ 0..=255`:
//! that is the unsigned operand `vpdpbusd` wants, and it spends all 8 bits on the
//! block's actual range (GELU outputs, the input of the second FFN layer, are almost all
//! ≥ 0, so a symmetric code would waste half its levels). The `min` term is added back
//! per block as `min · s_w · Σ q_w`, with `s_w · Σ q_w` precomputed per column and block.
//!
//! Invariant: an `Int8` layer exists only when the running CPU has AVX512F/BW/VNNI
//! (checked in [`Linear::new`]), which is what makes its `unsafe` calls sound.

/// Input values per quantisation block (a multiple of 4, the `vpdpbusd` width).
pub const QBLOCK: usize = 32;
/// Output columns per register tile: two 16-lane registers. With [`MR`] = 4 rows that is
/// 8 integer and 8 float accumulators, enough independent `vpdpbusd` chains to hide its
/// latency. Measured alternatives (6 × 32, 4 × 48) were no faster on Zen 4: the kernel
/// is bound by `vpdpbusd` throughput, not by loads.
const NR: usize = 32;
/// Activation rows per register tile.
const MR: usize = 4;

/// Arithmetic used by the encoder's linear layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// F32 everywhere: matches the reference to ~1e-7, several times slower.
    F32,
    /// Int8 weights and activations where the CPU has AVX512-VNNI, F32 elsewhere.
    Int8,
}

impl Precision {
    /// The fastest precision this CPU runs accurately.
    pub fn best_available() -> Self {
        if vnni_available() {
            Precision::Int8
        } else {
            Precision::F32
        }
    }
}

/// Whether the int8 kernel can run here.
pub fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A dense layer with `k` inputs and `n` outputs.
pub enum Linear {
    /// `w` is Wᵀ: `k × n`, row-major.
    F32 {
        w: Vec<f32>,
        bias: Vec<f32>,
        k: usize,
        n: usize,
    },
    Int8(Int8Linear),
}

/// Int8 weights packed for the VNNI kernel.
pub struct Int8Linear {
    k: usize,
    n: usize,
    /// `[panel][k-block][k/4 within block][column within panel][4]`: one 64-byte load
    /// feeds 16 columns × 4 inputs of `vpdpbusd`.
    w: Vec<i8>,
    /// `[panel][k-block][column]` weight scales.
    scale: Vec<f32>,
    /// `[panel][k-block][column]` = scale · Σ q over the block (for the activation minimum).
    wsum: Vec<f32>,
    bias: Vec<f32>,
}

/// Reusable buffers for quantised activations, one per worker.
#[derive(Default)]
pub struct Scratch {
    q: Vec<u8>,
    scale: Vec<f32>,
    min: Vec<f32>,
}

impl Linear {
    /// Builds a layer from a torch-layout weight (`n × k`, row = output) and bias.
    /// Falls back to F32 when int8 is not available or the shape does not tile.
    pub fn new(weight: Vec<f32>, bias: Vec<f32>, k: usize, n: usize, precision: Precision) -> Self {
        assert!(
            weight.len() == k * n && bias.len() == n,
            "linear shape mismatch: this is a bug"
        );
        let tiles = k.is_multiple_of(QBLOCK) && n.is_multiple_of(NR);
        if precision == Precision::Int8 && tiles && vnni_available() {
            return Linear::Int8(Int8Linear::quantize(&weight, bias, k, n));
        }
        // Stored transposed (k × n, row-major) so gemm reads the right-hand side along
        // rows; the torch layout read through strides was several times slower at
        // small m (measured: 7.2 ms for 16 tokens).
        let mut w_t = vec![0f32; k * n];
        for (j, row) in weight.chunks_exact(k).enumerate() {
            for (i, v) in row.iter().enumerate() {
                w_t[i * n + j] = *v;
            }
        }
        Linear::F32 { w: w_t, bias, k, n }
    }

    pub fn out_dim(&self) -> usize {
        match self {
            Linear::F32 { n, .. } => *n,
            Linear::Int8(l) => l.n,
        }
    }

    /// `out[m × n] = x[m × k] · Wᵀ + b`.
    pub fn forward(&self, x: &[f32], m: usize, out: &mut [f32], scratch: &mut Scratch) {
        match self {
            Linear::F32 { w, bias, k, n } => {
                let (k, n) = (*k, *n);
                assert!(
                    x.len() >= m * k && out.len() >= m * n,
                    "linear buffers too small: this is a bug"
                );
                // SAFETY: x is m × k and out m × n row-major (checked above), and w is
                // k × n row-major (built so in `new`).
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        out.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        x.as_ptr(),
                        1,
                        k as isize,
                        w.as_ptr(),
                        1,
                        n as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for row in out[..m * n].chunks_exact_mut(n) {
                    row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
                }
            }
            Linear::Int8(l) => l.forward(x, m, out, scratch),
        }
    }
}

impl Int8Linear {
    fn quantize(weight: &[f32], bias: Vec<f32>, k: usize, n: usize) -> Self {
        let kb = k / QBLOCK;
        let mut w = vec![0i8; k * n];
        let mut scale = vec![0f32; kb * n];
        let mut wsum = vec![0f32; kb * n];
        for col in 0..n {
            let (p, c) = (col / NR, col % NR);
            for b in 0..kb {
                let src = &weight[col * k + b * QBLOCK..col * k + (b + 1) * QBLOCK];
                let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
                let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
                let meta = (p * kb + b) * NR + c;
                scale[meta] = s;
                let mut qsum = 0i32;
                for (i, v) in src.iter().enumerate() {
                    let q = (v / s).round().clamp(-127.0, 127.0) as i8;
                    qsum += q as i32;
                    let (g, j) = (i / 4, i % 4);
                    w[((p * kb + b) * (QBLOCK / 4) + g) * NR * 4 + c * 4 + j] = q;
                }
                wsum[meta] = s * qsum as f32;
            }
        }
        Int8Linear {
            k,
            n,
            w,
            scale,
            wsum,
            bias,
        }
    }

    fn forward(&self, x: &[f32], m: usize, out: &mut [f32], scratch: &mut Scratch) {
        assert!(
            x.len() >= m * self.k && out.len() >= m * self.n,
            "linear buffers too small: this is a bug"
        );
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Int8Linear is only built after `vnni_available()` returned true, and
        // the buffer sizes were checked above.
        unsafe {
            quantize_rows(&x[..m * self.k], scratch);
            vnni::gemm(self, scratch, m, out);
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("Int8Linear is only built on x86_64: this is a bug");
    }
}

/// Quantises `x` per block of [`QBLOCK`] values to `u8` with a scale and a minimum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_rows(x: &[f32], scratch: &mut Scratch) {
    use core::arch::x86_64::*;
    const V: usize = QBLOCK / 16;
    const {
        assert!(
            QBLOCK.is_multiple_of(16),
            "a block is whole 16-lane registers"
        )
    };
    let blocks = x.len() / QBLOCK;
    scratch.q.resize(x.len(), 0);
    scratch.scale.resize(blocks, 0.0);
    scratch.min.resize(blocks, 0.0);
    for b in 0..blocks {
        // SAFETY: b < blocks, so the block's values and output bytes are in bounds.
        unsafe {
            let src = x.as_ptr().add(b * QBLOCK);
            let v: [__m512; V] = std::array::from_fn(|i| _mm512_loadu_ps(src.add(16 * i)));
            let (mut lo, mut hi) = (v[0], v[0]);
            for r in &v[1..] {
                lo = _mm512_min_ps(lo, *r);
                hi = _mm512_max_ps(hi, *r);
            }
            let (mn, mx) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
            let s = (mx - mn) / 255.0;
            let inv = _mm512_set1_ps(if s > 0.0 { 1.0 / s } else { 0.0 });
            let vmn = _mm512_set1_ps(mn);
            let dst = scratch.q.as_mut_ptr().add(b * QBLOCK);
            for (i, r) in v.iter().enumerate() {
                // cvtps rounds to nearest; results are in 0..=255, so the truncating
                // byte pack keeps them exactly.
                let u = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(*r, vmn), inv));
                _mm_storeu_si128(dst.add(16 * i) as *mut __m128i, _mm512_cvtepi32_epi8(u));
            }
            *scratch.scale.get_unchecked_mut(b) = s;
            *scratch.min.get_unchecked_mut(b) = mn;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{Int8Linear, MR, NR, QBLOCK, Scratch};
    use core::arch::x86_64::*;

    /// `out = dequant(q · Wᵀ) + b` for `m` rows of quantised activations.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn gemm(l: &Int8Linear, sc: &Scratch, m: usize, out: &mut [f32]) {
        for p in 0..l.n / NR {
            let mut r = 0;
            while r + MR <= m {
                unsafe { tile::<MR>(l, sc, r, p, out) };
                r += MR;
            }
            match m - r {
                3 => unsafe { tile::<3>(l, sc, r, p, out) },
                2 => unsafe { tile::<2>(l, sc, r, p, out) },
                1 => unsafe { tile::<1>(l, sc, r, p, out) },
                _ => {}
            }
        }
    }

    /// One `R × NR` output tile over the whole input length.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile<const R: usize>(
        l: &Int8Linear,
        sc: &Scratch,
        r0: usize,
        p: usize,
        out: &mut [f32],
    ) {
        const H: usize = NR / 16;
        let (k, n) = (l.k, l.n);
        let kb = k / QBLOCK;
        unsafe {
            let bias: [__m512; H] =
                std::array::from_fn(|h| _mm512_loadu_ps(l.bias.as_ptr().add(p * NR + 16 * h)));
            let mut acc = [bias; R];
            let panel = l.w.as_ptr().add(p * kb * QBLOCK * NR);
            for b in 0..kb {
                let meta = (p * kb + b) * NR;
                let mut isum = [[_mm512_setzero_si512(); H]; R];
                let wb = panel.add(b * QBLOCK * NR);
                let qb = sc.q.as_ptr().add(r0 * k + b * QBLOCK);
                for g in 0..QBLOCK / 4 {
                    let w: [__m512i; H] = std::array::from_fn(|h| {
                        _mm512_loadu_si512(wb.add(g * NR * 4 + 64 * h) as *const _)
                    });
                    for (i, s) in isum.iter_mut().enumerate() {
                        let a = _mm512_set1_epi32(std::ptr::read_unaligned(
                            qb.add(i * k + g * 4) as *const i32
                        ));
                        for h in 0..H {
                            s[h] = _mm512_dpbusd_epi32(s[h], a, w[h]);
                        }
                    }
                }
                let ws: [__m512; H] =
                    std::array::from_fn(|h| _mm512_loadu_ps(l.scale.as_ptr().add(meta + 16 * h)));
                let wm: [__m512; H] =
                    std::array::from_fn(|h| _mm512_loadu_ps(l.wsum.as_ptr().add(meta + 16 * h)));
                for (i, (a, s)) in acc.iter_mut().zip(&isum).enumerate() {
                    let sa = _mm512_set1_ps(*sc.scale.get_unchecked((r0 + i) * kb + b));
                    let mn = _mm512_set1_ps(*sc.min.get_unchecked((r0 + i) * kb + b));
                    for h in 0..H {
                        let f = _mm512_cvtepi32_ps(s[h]);
                        a[h] = _mm512_fmadd_ps(f, _mm512_mul_ps(ws[h], sa), a[h]);
                        a[h] = _mm512_fmadd_ps(wm[h], mn, a[h]);
                    }
                }
            }
            for (i, a) in acc.iter().enumerate() {
                let dst = out.as_mut_ptr().add((r0 + i) * n + p * NR);
                for (h, v) in a.iter().enumerate() {
                    _mm512_storeu_ps(dst.add(16 * h), *v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(i: usize) -> f32 {
        ((i as f32 * 0.618_034).fract() - 0.5) * 2.0
    }

    #[test]
    fn int8_matches_f32_closely() {
        if !vnni_available() {
            return;
        }
        let (k, n) = (96, 96);
        let w: Vec<f32> = (0..k * n).map(pseudo).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        let f = Linear::new(w.clone(), b.clone(), k, n, Precision::F32);
        let q = Linear::new(w, b, k, n, Precision::Int8);
        assert!(matches!(q, Linear::Int8(_)));
        for m in [1, 3, 4, 7] {
            let x: Vec<f32> = (0..m * k).map(|i| pseudo(i * 7 + 3) * 3.0).collect();
            let (mut yf, mut yq) = (vec![0.0; m * n], vec![0.0; m * n]);
            let mut s = Scratch::default();
            f.forward(&x, m, &mut yf, &mut s);
            q.forward(&x, m, &mut yq, &mut s);
            let err = yf
                .iter()
                .zip(&yq)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            let scale = yf.iter().map(|v| v.abs()).fold(0.0, f32::max);
            assert!(err < 0.02 * scale, "m={m}: max err {err} vs scale {scale}");
        }
    }
}
