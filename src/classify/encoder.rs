//! A BERT-family sentence-transformer (all-MiniLM-L6-v2 and its relatives) with a
//! hand-written forward pass for one text at a time.
//!
//! Why not `candle_transformers::models::bert`: it is general (batches, masks, any
//! dtype) and pays for it — about 30 ms for 64 tokens on one thread here. This forward
//! pass is specialised for batch 1:
//! * no attention mask at all: a single sequence has no padding, so every token attends
//!   to every token, which is exactly what the masked model computes for that sequence;
//! * Q, K and V come from one fused linear layer with pre-concatenated weights;
//! * activations stay in row-major slices (no transposes or contiguous copies), and the
//!   element-wise ops are the vectorised loops of [`super::simd`], compiled a second time
//!   for AVX-512 when the CPU has it;
//! * the linear layers use [`super::qgemm`]: int8 with AVX512-VNNI, F32 otherwise; the
//!   attention products call the `gemm` crate (candle's CPU matmul engine) with strides
//!   that read Q, K and V in place from the fused QKV rows;
//! * everything runs on the calling thread (no thread pool), so N workers use N cores.
//!
//! Loading (config validation, weight layouts) lives in [`super::weights`].
//!
//! Measured with `CLASSIFY_LATENCY=1 cargo bench --bench classify` on the 2-core Zen 4
//! development machine (load average ~1.6; other builds were running on and off):
//! tokenise + embed on one thread, int8 — 16 tokens p50 0.70 / p99 0.83 ms, 64 tokens
//! 3.13 / 3.48 ms, 128 tokens 6.72 / 7.70 ms, 256 tokens 17.4 / 25.8 ms; through
//! `Classifier::classify` at 64 tokens p50 3.4 / p99 4.6 ms; 315–326 mixed 10–200-token
//! prompts/s with two workers (110–167/s while a parallel build held the load at 5–7).
//! The stock candle BERT takes ~30 ms at 64 tokens here. Worst cosine against the NumPy
//! reference fixture: 0.99950 in int8, 0.9999998 in F32.
//!
//! Output follows sentence-transformers' module stack for this model: `Transformer` →
//! `Pooling(mode_mean_tokens)` → `Normalize`. Mean pooling in sentence-transformers is
//! `sum(token_embeddings * mask) / clamp(sum(mask), min=1e-9)`; with one unpadded text
//! every mask entry is 1 (`[CLS]` and `[SEP]` included), so it is the plain mean over all
//! tokens. `Normalize` is `F.normalize(p=2, dim=1)`: divide by `max(‖x‖₂, 1e-12)`.

use std::path::Path;
use std::sync::Arc;

use tokenizers::Tokenizer;

use super::qgemm::{Linear, Scratch};
use super::weights::{self, Weights};
use super::{ClassifyError, simd, tokenize};

pub use super::qgemm::Precision;

/// Default token limit, `[CLS]` and `[SEP]` included: sentence-transformers'
/// `max_seq_length` for all-MiniLM-L6-v2. Longer prompts keep their head and tail.
/// A 256-token pass costs roughly 4× a 64-token one (see benches/classify.rs), so a
/// latency-critical deployment may lower it; 128 is what the model was trained with.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// How to run the encoder.
#[derive(Clone, Copy, Debug)]
pub struct EncoderOptions {
    /// Tokens kept per text, `[CLS]`/`[SEP]` included (3 ≤ max ≤ the model's positions).
    pub max_tokens: usize,
    pub precision: Precision,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            max_tokens: DEFAULT_MAX_TOKENS,
            precision: Precision::best_available(),
        }
    }
}

/// One embedded text.
#[derive(Clone, Debug)]
pub struct Embedded {
    /// L2-normalised mean-pooled embedding.
    pub embedding: Vec<f32>,
    /// Tokens actually encoded (after truncation, `[CLS]`/`[SEP]` included).
    pub tokens: usize,
    /// Whether the text was longer than `max_tokens`.
    pub truncated: bool,
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

/// A loaded model: cheap to clone (weights and tokenizer are shared).
#[derive(Clone)]
pub struct Encoder {
    w: Arc<Weights>,
    tok: Arc<Tokenizer>,
    max_tokens: usize,
}

impl Encoder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path, opts: EncoderOptions) -> Result<Self, ClassifyError> {
        let w = weights::load(dir, opts)?;
        let tok = tokenize::load(&dir.join("tokenizer.json"))?;
        Ok(Encoder {
            w: Arc::new(w),
            tok: Arc::new(tok),
            max_tokens: opts.max_tokens,
        })
    }

    /// Embedding size (384 for MiniLM).
    pub fn dim(&self) -> usize {
        self.w.hidden
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Whether the linear layers run in int8.
    pub fn precision(&self) -> Precision {
        match self.w.layers.first().map(|l| &l.up) {
            Some(Linear::Int8(_)) => Precision::Int8,
            _ => Precision::F32,
        }
    }

    /// Token ids for `text` after truncation (`[CLS]`/`[SEP]` included), and whether it was cut.
    pub fn tokenize(&self, text: &str) -> Result<(Vec<u32>, bool), ClassifyError> {
        let t = tokenize::encode(&self.tok, text, self.max_tokens)?;
        Ok((t.ids, t.truncated))
    }

    /// Tokenises and embeds one text.
    pub fn embed(&self, text: &str, ws: &mut Workspace) -> Result<Embedded, ClassifyError> {
        let (ids, truncated) = self.tokenize(text)?;
        let embedding = self.embed_ids(&ids, ws)?;
        Ok(Embedded {
            embedding,
            tokens: ids.len(),
            truncated,
        })
    }

    /// Embeds token ids as produced by [`Encoder::tokenize`].
    pub fn embed_ids(&self, ids: &[u32], ws: &mut Workspace) -> Result<Vec<f32>, ClassifyError> {
        if ids.is_empty() || ids.len() > self.max_tokens {
            return Err(ClassifyError::Tokenizer(format!(
                "{} tokens is outside 1..={}",
                ids.len(),
                self.max_tokens
            )));
        }
        let vocab = self.w.word.len() / self.w.hidden;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ClassifyError::Tokenizer(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        #[cfg(target_arch = "x86_64")]
        if self.w.avx512 {
            // SAFETY: `avx512` was set from runtime feature detection at load time.
            return Ok(unsafe { forward_avx512(&self.w, ids, ws) });
        }
        Ok(forward(&self.w, ids, ws))
    }
}

/// The forward pass compiled for AVX-512: the same body as [`forward`], inlined here so
/// the element-wise loops get 16-wide vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
unsafe fn forward_avx512(w: &Weights, ids: &[u32], ws: &mut Workspace) -> Vec<f32> {
    forward_body(w, ids, ws)
}

fn forward(w: &Weights, ids: &[u32], ws: &mut Workspace) -> Vec<f32> {
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
