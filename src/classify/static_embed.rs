//! Fast mode: a static embedding table distilled from the encoder, Model2Vec style.
//!
//! [`distill`] runs the encoder once per vocabulary id on `[CLS] id [SEP]` and keeps the
//! sentence embedding of that three-token text as the id's row. A text is then embedded
//! by [`StaticTable::embed`]: the mean of its tokens' rows, L2-normalised — a table
//! lookup per token instead of six transformer layers, so microseconds instead of
//! milliseconds, at some loss of accuracy (context no longer changes a token's vector).
//!
//! Why the mean over the three positions and not the middle token's own output:
//! Model2Vec's vocabulary distillation (`create_output_embeddings_from_model` in
//! `model2vec/distill/inference.py`) does the same, `last_hidden_state.mean(1)` over
//! `[SEP] id [CLS]`; and it is what the public [`Encoder::embed_ids`] returns, so this
//! module needs no access to the encoder's internals. Unlike Model2Vec, each row is the
//! encoder's L2-normalised output (so every token weighs the same in a mean) and there is
//! no PCA or Zipf weighting: the plain table is measured first (see the notes in
//! `offline::distill`).
//!
//! Invariants: every row is finite and unit-norm; ids marked special (`[CLS]`, `[SEP]`,
//! `[PAD]`, `[MASK]`) are left out of a text's mean unless the text has nothing else.
//! `[UNK]` keeps its row: the full encoder also sees it, and a text of unknown symbols
//! must still get an embedding.
//!
//! File format (`static-embeddings.bin`, generated per machine, never committed):
//! magic `SWSTATIC`, then little-endian u32 version (1), rows, dim, special count, the
//! special ids, and `rows × dim` little-endian f16 values. f16 keeps 30 522 × 384 rows
//! in 23 MB with a relative error of ~5e-4 per component, far below what separates
//! intents.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::ClassifyError;
use super::encoder::{Encoder, Workspace};
use crate::kernels::simd;

const MAGIC: &[u8; 8] = b"SWSTATIC";
const VERSION: u32 = 1;
/// Ids per unit of work handed to a distillation thread: large enough that the channel
/// is cheap, small enough that the progress bar moves (~0.1 s of work).
const CHUNK: usize = 256;
/// No BERT-family vocabulary comes near this; it bounds the id probe and file headers.
const MAX_VOCAB: usize = 1 << 22;

/// A distilled table: one unit-norm f16 row of `dim` values per vocabulary id.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticTable {
    dim: usize,
    rows: Vec<f16>,
    /// Sorted ids left out of a text's mean.
    special: Vec<u32>,
    /// `skip[id]`: whether `id` is in `special` (kept beside it for O(1) lookups).
    skip: Vec<bool>,
}

impl StaticTable {
    /// Builds a table from f32 rows (`rows.len()` a multiple of `dim`).
    pub fn from_rows(dim: usize, rows: &[f32], special: &[u32]) -> Result<Self, ClassifyError> {
        if dim == 0 || rows.is_empty() || !rows.len().is_multiple_of(dim) {
            return Err(ClassifyError::InvalidConfig(format!(
                "static table: {} values do not make rows of {dim}",
                rows.len()
            )));
        }
        let mut half = vec![f16::ZERO; rows.len()];
        half.convert_from_f32_slice(rows);
        Self::from_half(dim, half, special.to_vec())
    }

    fn from_half(dim: usize, rows: Vec<f16>, mut special: Vec<u32>) -> Result<Self, ClassifyError> {
        let vocab = rows.len() / dim;
        special.sort_unstable();
        special.dedup();
        let mut skip = vec![false; vocab];
        for &id in &special {
            *skip.get_mut(id as usize).ok_or_else(|| {
                ClassifyError::InvalidConfig(format!(
                    "static table: special id {id} is outside {vocab} rows"
                ))
            })? = true;
        }
        Ok(StaticTable {
            dim,
            rows,
            special,
            skip,
        })
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows (vocabulary size).
    pub fn vocab(&self) -> usize {
        self.rows.len() / self.dim
    }

    /// Ids left out of a text's mean.
    pub fn special_ids(&self) -> &[u32] {
        &self.special
    }

    /// The row of `id` as f32, or `None` outside the vocabulary.
    pub fn row(&self, id: u32) -> Option<Vec<f32>> {
        let r = self
            .rows
            .get(id as usize * self.dim..(id as usize + 1) * self.dim)?;
        let mut out = vec![0.0; self.dim];
        r.convert_to_f32_slice(&mut out);
        Some(out)
    }

    /// The mean of the rows of `ids` (special ids left out, unless only they are
    /// present), L2-normalised. Ids outside the vocabulary are ignored; only when no id is
    /// inside it is the result the zero vector.
    pub fn embed(&self, ids: &[u32]) -> Vec<f32> {
        let mut acc = vec![0.0f32; self.dim];
        let mut row = vec![0.0f32; self.dim];
        let in_vocab = |id: &&u32| (**id as usize) < self.skip.len();
        let content = ids
            .iter()
            .filter(in_vocab)
            .any(|&id| !self.skip[id as usize]);
        for &id in ids.iter().filter(in_vocab) {
            if content && self.skip[id as usize] {
                continue;
            }
            let at = id as usize * self.dim;
            self.rows[at..at + self.dim].convert_to_f32_slice(&mut row);
            simd::axpy(&mut acc, 1.0, &row);
        }
        // The 1/n of the mean cancels in the normalisation (`F.normalize`: divide by
        // max(‖x‖₂, 1e-12)), so the sum is normalised directly.
        let norm = simd::dot(&acc, &acc).sqrt().max(1e-12);
        acc.iter_mut().for_each(|v| *v /= norm);
        acc
    }

    /// Writes the table in the format of the module docs.
    pub fn save(&self, path: &Path) -> Result<(), ClassifyError> {
        let io = |source| ClassifyError::ModelFile {
            path: path.to_path_buf(),
            source,
        };
        let mut buf = Vec::with_capacity(28 + 4 * self.special.len() + 2 * self.rows.len());
        buf.extend_from_slice(MAGIC);
        for v in [VERSION, self.vocab() as u32, self.dim as u32] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        buf.extend_from_slice(&(self.special.len() as u32).to_le_bytes());
        for id in &self.special {
            buf.extend_from_slice(&id.to_le_bytes());
        }
        for v in &self.rows {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        // Write beside the target and rename, so a reader never sees half a table.
        let tmp = path.with_extension("bin.partial");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&buf).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a table written by [`StaticTable::save`], checking every size and that the
    /// values are finite.
    pub fn load(path: &Path) -> Result<Self, ClassifyError> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|source| ClassifyError::ModelFile {
                path: path.to_path_buf(),
                source,
            })?;
        let bad = |reason: String| ClassifyError::InvalidModel {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return Err(bad("not a static embedding table".into()));
        }
        let word = |i: usize| u32::from_le_bytes(bytes[8 + 4 * i..12 + 4 * i].try_into().unwrap());
        let (version, vocab, dim, n_special) = (word(0), word(1), word(2), word(3));
        let (vocab, dim, n_special) = (vocab as usize, dim as usize, n_special as usize);
        if version != VERSION {
            return Err(bad(format!("table version {version}, expected {VERSION}")));
        }
        if vocab == 0 || vocab > MAX_VOCAB || dim == 0 || dim > 8192 || n_special > vocab {
            return Err(bad(format!("implausible shape {vocab} × {dim}")));
        }
        let rows_at = 24 + 4 * n_special;
        if bytes.len() != rows_at + 2 * vocab * dim {
            return Err(bad(format!(
                "{} bytes, expected {} for {vocab} × {dim}",
                bytes.len(),
                rows_at + 2 * vocab * dim
            )));
        }
        let special = (0..n_special).map(|i| word(4 + i)).collect();
        let rows: Vec<f16> = bytes[rows_at..]
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]))
            .collect();
        if rows.iter().any(|v| !v.is_finite()) {
            return Err(bad("non-finite value in the table".into()));
        }
        Self::from_half(dim, rows, special).map_err(|e| bad(e.to_string()))
    }
}

/// Distills the whole vocabulary of `encoder` on every core, calling
/// `progress(done, total)` from the calling thread as rows arrive.
pub fn distill(
    encoder: &Encoder,
    mut progress: impl FnMut(usize, usize),
) -> Result<StaticTable, ClassifyError> {
    let vocab = vocab_size(encoder)?;
    let special = special_ids(encoder)?;
    let dim = encoder.dim();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunks = vocab.div_ceil(CHUNK);
    let next = AtomicUsize::new(0);
    let mut rows = vec![0.0f32; vocab * dim];
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<Result<(usize, Vec<f32>), ClassifyError>>();
        for _ in 0..threads {
            let (tx, next) = (tx.clone(), &next);
            s.spawn(move || {
                let mut ws = Workspace::default();
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks {
                        return;
                    }
                    let ids: Vec<u32> = (c * CHUNK..((c + 1) * CHUNK).min(vocab))
                        .map(|i| i as u32)
                        .collect();
                    let out = distill_with(encoder, &ids, &mut ws).map(|r| (c, r));
                    let failed = out.is_err();
                    if tx.send(out).is_err() || failed {
                        // Stop the other threads early too: the result is an error anyway.
                        next.store(chunks, Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for msg in rx {
            let (c, r) = msg?;
            rows[c * CHUNK * dim..c * CHUNK * dim + r.len()].copy_from_slice(&r);
            done += r.len() / dim;
            progress(done, vocab);
        }
        Ok::<(), ClassifyError>(())
    })?;
    StaticTable::from_rows(dim, &rows, &special)
}

/// The rows of `ids` (each the unit-norm embedding of `[CLS] id [SEP]`), concatenated;
/// one thread. [`distill`] is this over the whole vocabulary.
pub fn distill_ids(encoder: &Encoder, ids: &[u32]) -> Result<Vec<f32>, ClassifyError> {
    distill_with(encoder, ids, &mut Workspace::default())
}

fn distill_with(
    encoder: &Encoder,
    ids: &[u32],
    ws: &mut Workspace,
) -> Result<Vec<f32>, ClassifyError> {
    let (cls, sep) = cls_sep(encoder)?;
    let mut out = Vec::with_capacity(ids.len() * encoder.dim());
    for &id in ids {
        out.extend(encoder.embed_ids(&[cls, id, sep], ws)?);
    }
    Ok(out)
}

/// `[CLS]` and `[SEP]`: the first and last ids of any tokenised text (how Model2Vec finds
/// its bos/eos ids too).
fn cls_sep(encoder: &Encoder) -> Result<(u32, u32), ClassifyError> {
    let (ids, _) = encoder.tokenize("a")?;
    match (ids.first(), ids.last()) {
        (Some(&c), Some(&s)) if ids.len() >= 3 => Ok((c, s)),
        _ => Err(ClassifyError::Tokenizer(
            "the tokenizer adds no [CLS]/[SEP] around a text".into(),
        )),
    }
}

/// Ids to leave out of a text's mean: `[CLS]`, `[SEP]`, and `[PAD]`/`[MASK]` when the
/// tokenizer knows them as single tokens.
pub fn special_ids(encoder: &Encoder) -> Result<Vec<u32>, ClassifyError> {
    let (cls, sep) = cls_sep(encoder)?;
    let mut out = vec![cls, sep];
    for name in ["[PAD]", "[MASK]"] {
        if let Ok((ids, _)) = encoder.tokenize(name)
            && ids.len() == 3
        {
            out.push(ids[1]);
        }
    }
    Ok(out)
}

/// The encoder's vocabulary size, found by bisection on which single ids
/// [`Encoder::embed_ids`] accepts (it rejects ids outside the embedding matrix before
/// any work). ~15 one-token passes: negligible beside distillation, and it needs no
/// access to the encoder's internals.
fn vocab_size(encoder: &Encoder) -> Result<usize, ClassifyError> {
    let mut ws = Workspace::default();
    let mut ok = |id: usize| encoder.embed_ids(&[id as u32], &mut ws).is_ok();
    if !ok(0) {
        return Err(ClassifyError::Tokenizer(
            "the encoder accepts no token id".into(),
        ));
    }
    let (mut lo, mut hi) = (0, MAX_VOCAB); // ok(lo), and every id ≥ hi fails
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embed_skips_specials_unless_alone() {
        let rows = [1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
        let t = StaticTable::from_rows(2, &rows, &[2]).unwrap();
        assert_eq!(t.embed(&[2, 0, 2]), vec![1.0, 0.0]);
        let e = t.embed(&[2]);
        assert!((e[0] - 0.6).abs() < 1e-3 && (e[1] - 0.8).abs() < 1e-3);
        let both = t.embed(&[0, 1, 99]);
        assert!((both[0] - both[1]).abs() < 1e-6);
        assert_eq!(t.embed(&[]), vec![0.0, 0.0]);
    }

    #[test]
    fn rejects_ragged_rows_and_bad_specials() {
        assert!(StaticTable::from_rows(3, &[1.0; 4], &[]).is_err());
        assert!(StaticTable::from_rows(2, &[1.0; 4], &[5]).is_err());
    }
}
