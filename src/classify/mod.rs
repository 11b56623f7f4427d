//! Prompt classification: a local sentence-transformer encoder plus small heads over its
//! embedding.
//!
//! * [`encoder`] tokenises a prompt and runs all-MiniLM-L6-v2 (or any BERT-family
//!   sentence-transformer folder) with a hand-written forward pass, mean pooling and L2
//!   normalisation, matching sentence-transformers' output.
//! * the numeric kernels the encoder needs (int8 VNNI linear layers, vectorised layer
//!   norm / GELU / softmax, the forward pass) live in [`crate::kernels`], the one module
//!   allowed `unsafe`.
//! * [`worker`] owns encoders on dedicated OS threads behind a bounded queue, so inference
//!   never runs on tokio threads and a full queue is reported at once instead of queueing
//!   without bound.
//! * [`intent`] is a multinomial logistic-regression (or nearest-centroid) head that turns
//!   an embedding into intent probabilities.
//! * [`static_embed`] distils the encoder into a per-token table (fast mode), and
//!   [`embedder`] puts the full and static paths behind one [`Embedder`].
//!
//! Invariant: every embedding this module hands out is L2-normalised and has
//! [`Encoder::dim`] components.

pub mod embedder;
pub mod encoder;
pub mod intent;
pub mod quality;
mod reader;
pub mod static_embed;
mod tokenize;
mod weights;
pub mod worker;

pub use embedder::{Embedder, StaticClassifier};
pub use encoder::{Encoder, EncoderOptions, Precision};
pub use intent::{EvalReport, IntentHead, TrainOptions};
pub use reader::{Intent, Reader, Reading};
pub use worker::{Classification, Classifier, ClassifierConfig};

use std::path::PathBuf;

/// Why classification failed. Callers decide by variant (for example the service maps
/// [`ClassifyError::Overloaded`] to `RESOURCE_EXHAUSTED`), never by message text.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// A model file is missing or unreadable.
    #[error("cannot read model file {path}")]
    ModelFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The model folder is readable but not a model we can run.
    #[error("invalid model in {path}: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    /// candle failed while loading or converting weights.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The tokenizer rejected the text or its own file.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The text is empty or only whitespace: there is nothing to classify.
    #[error("text to classify is empty")]
    EmptyText,
    /// Every worker is busy and the queue is full; retry later.
    #[error("classifier queue is full")]
    Overloaded,
    /// The workers have stopped (the classifier is shutting down or a worker panicked).
    #[error("classifier workers are gone")]
    WorkersGone,
    /// The configuration cannot work (zero workers, zero queue depth, ...).
    #[error("invalid classifier configuration: {0}")]
    InvalidConfig(String),
    /// An intent-head file could not be read or written.
    #[error("intent head file {path}: {reason}")]
    IntentFile { path: PathBuf, reason: String },
    /// Training or prediction input does not fit the head.
    #[error("intent head: {0}")]
    Intent(String),
}

impl ClassifyError {
    /// Whether trying again later may succeed (only overload is transient).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClassifyError::Overloaded)
    }
}
