//! The BERT encoder's forward pass for one unpadded text, over weights laid
//! out by `classify::weights`: embeddings, fused-QKV attention read in place
//! through strides, int8/F32 linear layers, GELU, layer norms, then mean
//! pooling and L2 normalisation (see `classify::encoder` for why each step is
//! what sentence-transformers computes). Compiled twice: once for the
//! baseline target and once for AVX-512, chosen at run time.

use super::qgemm::{Linear, Scratch};
use super::simd;

pub struct LayerNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

pub struct Layer {
    pub qkv: Linear,
    pub attn_out: Linear,
    pub ln_attn: LayerNorm,
    pub up: Linear,
    pub down: Linear,
    pub ln_out: LayerNorm,
}

/// Immutable weights, shared by every worker through an `Arc`.
pub struct Weights {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f32,
    pub word: Vec<f32>,
    /// Position embeddings with token type 0 already added (we never use type 1).
    pub pos_type: Vec<f32>,
    pub ln_emb: LayerNorm,
    pub layers: Vec<Layer>,
    pub avx512: bool,
}

/// Per-worker buffers, reused across texts so steady-state inference does not allocate
/// beyond the returned embedding.
#[derive(Default)]
pub struct Workspace {
    x: Vec<f32>,
    tmp: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    ffn: Vec<f32>,
    scores: Vec<f32>,
    q: Scratch,
}

/// Runs the forward pass; `ids` are non-empty and inside the vocabulary
/// (checked by the encoder).
pub fn forward(w: &Weights, ids: &[u32], ws: &mut Workspace) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if w.avx512 {
        // SAFETY: `avx512` was set from runtime feature detection at load time.
        return unsafe { forward_avx512(w, ids, ws) };
    }
    forward_baseline(w, ids, ws)
}

/// The forward pass compiled for AVX-512: the same body as [`forward`], inlined here so
/// the element-wise loops get 16-wide vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
unsafe fn forward_avx512(w: &Weights, ids: &[u32], ws: &mut Workspace) -> Vec<f32> {
    forward_body(w, ids, ws)
}

fn forward_baseline(w: &Weights, ids: &[u32], ws: &mut Workspace) -> Vec<f32> {
    forward_body(w, ids, ws)
}

#[inline(always)]
fn forward_body(w: &Weights, ids: &[u32], ws: &mut Workspace) -> Vec<f32> {
    let (t, h, eps) = (ids.len(), w.hidden, w.eps);
    ws.x.resize(t * h, 0.0);
    ws.tmp.resize(t * h, 0.0);
    ws.ctx.resize(t * h, 0.0);
    ws.qkv.resize(t * 3 * h, 0.0);
    ws.ffn.resize(t * w.intermediate, 0.0);
    // Embeddings: word + position + token type 0, then LayerNorm.
    for (i, (&id, row)) in ids.iter().zip(ws.x.chunks_exact_mut(h)).enumerate() {
        let word = &w.word[id as usize * h..(id as usize + 1) * h];
        for ((x, a), b) in row
            .iter_mut()
            .zip(word)
            .zip(&w.pos_type[i * h..(i + 1) * h])
        {
            *x = a + b;
        }
        simd::layer_norm(row, &w.ln_emb.gamma, &w.ln_emb.beta, eps);
    }
    for layer in &w.layers {
        layer.qkv.forward(&ws.x, t, &mut ws.qkv, &mut ws.q);
        attention(w, t, ws);
        layer.attn_out.forward(&ws.ctx, t, &mut ws.tmp, &mut ws.q);
        for (y, x) in ws.tmp.chunks_exact_mut(h).zip(ws.x.chunks_exact(h)) {
            simd::add_layer_norm(y, x, &layer.ln_attn.gamma, &layer.ln_attn.beta, eps);
        }
        std::mem::swap(&mut ws.x, &mut ws.tmp);
        layer.up.forward(&ws.x, t, &mut ws.ffn, &mut ws.q);
        simd::gelu_inplace(&mut ws.ffn);
        layer.down.forward(&ws.ffn, t, &mut ws.tmp, &mut ws.q);
        for (y, x) in ws.tmp.chunks_exact_mut(h).zip(ws.x.chunks_exact(h)) {
            simd::add_layer_norm(y, x, &layer.ln_out.gamma, &layer.ln_out.beta, eps);
        }
        std::mem::swap(&mut ws.x, &mut ws.tmp);
    }
    // Pooling(mode_mean_tokens) then Normalize, as in the module docs.
    let mut pooled = vec![0.0f32; h];
    for row in ws.x.chunks_exact(h) {
        simd::axpy(&mut pooled, 1.0, row);
    }
    let norm = (simd::dot(&pooled, &pooled) / (t * t) as f32)
        .sqrt()
        .max(1e-12);
    let k = 1.0 / (t as f32 * norm);
    pooled.iter_mut().for_each(|v| *v *= k);
    pooled
}

/// Unmasked multi-head self-attention over `ws.qkv` (`t × [Q | K | V]`) into `ws.ctx`.
#[inline(always)]
fn attention(w: &Weights, t: usize, ws: &mut Workspace) {
    match w.hidden / w.heads {
        16 => attention_d::<16>(w, t, ws),
        32 => attention_d::<32>(w, t, ws),
        64 => attention_d::<64>(w, t, ws),
        128 => attention_d::<128>(w, t, ws),
        d => unreachable!("head size {d} was rejected at load: this is a bug"),
    }
}

#[inline(always)]
fn attention_d<const D: usize>(w: &Weights, t: usize, ws: &mut Workspace) {
    let h = w.hidden;
    let stride = 3 * h;
    ws.scores.resize(t * t, 0.0);
    for head in 0..w.heads {
        let (qo, ko, vo) = (head * D, h + head * D, 2 * h + head * D);
        // scores = Q_h · K_hᵀ (Q was pre-scaled by 1/sqrt(D) at load time), read in place
        // from the fused QKV rows through strides: no transposes or copies.
        // SAFETY: Q_h, K_h and V_h are t × D blocks inside `qkv` (t rows of `stride`),
        // `scores` holds t × t values and `ctx` t rows of `h`, as the strides say.
        unsafe {
            gemm::gemm(
                t,
                t,
                D,
                ws.scores.as_mut_ptr(),
                1,
                t as isize,
                false,
                ws.qkv.as_ptr().add(qo),
                1,
                stride as isize,
                ws.qkv.as_ptr().add(ko),
                stride as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for row in ws.scores.chunks_exact_mut(t) {
            simd::softmax_inplace(row);
        }
        // ctx_h = softmax(scores) · V_h, written straight into the head's columns.
        // SAFETY: as above.
        unsafe {
            gemm::gemm(
                t,
                D,
                t,
                ws.ctx.as_mut_ptr().add(qo),
                1,
                h as isize,
                false,
                ws.scores.as_ptr(),
                1,
                t as isize,
                ws.qkv.as_ptr().add(vo),
                1,
                stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
}
