//! A BERT-family sentence-transformer (all-MiniLM-L6-v2 and its relatives) with a
//! hand-written forward pass for one text at a time.
//!
//! Why not `candle_transformers::models::bert`: it is general (batches, masks, any
//! dtype) and pays for it: several times slower for one text (docs/performance.md). This forward
//! pass is specialised for batch 1:
//! * no attention mask at all: a single sequence has no padding, so every token attends
//!   to every token, which is exactly what the masked model computes for that sequence;
//! * Q, K and V come from one fused linear layer with pre-concatenated weights;
//! * activations stay in row-major slices (no transposes or contiguous copies), and the
//!   element-wise ops are the vectorised loops of [`crate::kernels::simd`], compiled a
//!   second time for AVX-512 when the CPU has it;
//! * the linear layers use [`crate::kernels::qgemm`]: int8 with AVX512-VNNI, F32 otherwise; the
//!   attention products call the `gemm` crate (candle's CPU matmul engine) with strides
//!   that read Q, K and V in place from the fused QKV rows;
//! * everything runs on the calling thread (no thread pool), so N workers use N cores.
//!
//! Loading (config validation, weight layouts) lives in [`super::weights`]; the forward
//! pass itself in [`crate::kernels::bert`], with the crate's other `unsafe` code.
//!
//! How fast and how faithful it is (against the stock candle BERT, ONNX Runtime and the
//! NumPy reference fixture): docs/performance.md and docs/classifier.md.
//!
//! Output follows sentence-transformers' module stack for this model: `Transformer` →
//! `Pooling(mode_mean_tokens)` → `Normalize`. Mean pooling in sentence-transformers is
//! `sum(token_embeddings * mask) / clamp(sum(mask), min=1e-9)`; with one unpadded text
//! every mask entry is 1 (`[CLS]` and `[SEP]` included), so it is the plain mean over all
//! tokens. `Normalize` is `F.normalize(p=2, dim=1)`: divide by `max(‖x‖₂, 1e-12)`.

use std::path::Path;
use std::sync::Arc;

use tokenizers::Tokenizer;

use super::{ClassifyError, tokenize, weights};
use crate::kernels::bert::{self, Weights};
use crate::kernels::qgemm::Linear;

pub use crate::kernels::bert::Workspace;
pub use crate::kernels::qgemm::Precision;

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
        let w = weights::load(dir, opts.max_tokens, opts.precision)?;
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
        Ok(bert::forward(&self.w, ids, ws))
    }
}
