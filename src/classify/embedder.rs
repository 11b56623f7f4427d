//! [`Embedder`]: the service's one handle on text embedding, either the full encoder
//! ([`Classifier`], worker threads, milliseconds) or the distilled static table
//! ([`StaticClassifier`], inline, microseconds).
//!
//! Both give the same [`Classification`] for the same call, so the service swaps them by
//! configuration alone. Static mode has no worker pool and no queue: tokenising and
//! averaging at most `max_tokens` table rows costs tens of microseconds, less than a
//! channel round trip, so it runs on the caller's thread and is never `Overloaded`.
//! Text is cut to the same head and tail of `max_tokens` wordpieces as in full mode, so
//! both modes read the same part of a long prompt.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokenizers::Tokenizer;

use super::static_embed::StaticTable;
use super::worker::{Classification, Classifier, ClassifierConfig};
use super::{ClassifyError, tokenize};

/// Static-table classification: the encoder's tokenizer plus a [`StaticTable`]. Cheap to
/// clone (both are shared).
#[derive(Clone)]
pub struct StaticClassifier {
    tok: Arc<Tokenizer>,
    table: Arc<StaticTable>,
    max_tokens: usize,
}

impl StaticClassifier {
    /// Loads `tokenizer.json` from `model_dir` and the table from `table`, and checks that
    /// the table has a row for every id of the tokenizer.
    pub fn load(model_dir: &Path, table: &Path, max_tokens: usize) -> Result<Self, ClassifyError> {
        let tok = tokenize::load(&model_dir.join("tokenizer.json"))?;
        let t = StaticTable::load(table)?;
        let vocab = tok.get_vocab_size(true);
        if t.vocab() < vocab {
            return Err(ClassifyError::InvalidModel {
                path: table.to_path_buf(),
                reason: format!(
                    "{} rows but the tokenizer has {vocab} ids: distil it again from this model",
                    t.vocab()
                ),
            });
        }
        if max_tokens < 3 {
            return Err(ClassifyError::InvalidConfig(
                "max_tokens must be at least 3".into(),
            ));
        }
        Ok(StaticClassifier {
            tok: Arc::new(tok),
            table: Arc::new(t),
            max_tokens,
        })
    }

    /// Tokenises and embeds one text on the calling thread.
    pub fn embed(&self, text: &str) -> Result<Classification, ClassifyError> {
        let start = Instant::now();
        let t = tokenize::encode(&self.tok, text, self.max_tokens)?;
        let embedding = self.table.embed(&t.ids);
        Ok(Classification {
            embedding,
            tokens: t.ids.len(),
            truncated: t.truncated,
            micros: start.elapsed().as_micros() as u64,
        })
    }

    /// As [`Classifier::classify`]; runs inline (see the module docs for why).
    pub async fn classify(&self, text: &str) -> Result<Classification, ClassifyError> {
        self.embed(text)
    }

    /// As [`Classifier::embed_batch_blocking`].
    pub fn embed_batch_blocking(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ClassifyError> {
        texts
            .iter()
            .map(|t| self.embed(t).map(|c| c.embedding))
            .collect()
    }

    pub fn dim(&self) -> usize {
        self.table.dim()
    }

    pub fn table(&self) -> &StaticTable {
        &self.table
    }
}

/// Full or static embedding behind one API.
#[derive(Clone)]
pub enum Embedder {
    Full(Classifier),
    Static(StaticClassifier),
}

impl Embedder {
    /// Full mode when `static_table` is `None`; otherwise static mode with that table and
    /// the tokenizer and `max_tokens` of `cfg` (its worker settings are unused then).
    pub fn load(
        cfg: &ClassifierConfig,
        static_table: Option<&Path>,
    ) -> Result<Self, ClassifyError> {
        match static_table {
            None => Classifier::load(cfg).map(Embedder::Full),
            Some(table) => {
                let s = StaticClassifier::load(&cfg.model_dir, table, cfg.max_tokens)?;
                tracing::info!(table = %table.display(), rows = s.table().vocab(), "static classifier loaded");
                Ok(Embedder::Static(s))
            }
        }
    }

    pub async fn classify(&self, text: &str) -> Result<Classification, ClassifyError> {
        match self {
            Embedder::Full(c) => c.classify(text).await,
            Embedder::Static(s) => s.classify(text).await,
        }
    }

    /// Blocking: never call it from async code (full mode waits on worker threads).
    pub fn embed_batch_blocking(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ClassifyError> {
        match self {
            Embedder::Full(c) => c.embed_batch_blocking(texts),
            Embedder::Static(s) => s.embed_batch_blocking(texts),
        }
    }

    pub fn dim(&self) -> usize {
        match self {
            Embedder::Full(c) => c.dim(),
            Embedder::Static(s) => s.dim(),
        }
    }
}
