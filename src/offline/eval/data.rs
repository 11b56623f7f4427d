//! Preparing a routing dataset for `eval`: the seeded train/eval split, an
//! optional subset of models, and each prompt's embedding and policy context,
//! computed exactly as the service computes them for a Route.

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::cache::{EmbeddingCache, text_key};
use crate::classify::{Embedder, IntentHead};
use crate::offline::replay::{Dataset, Row};
use crate::policy::features;
use crate::tokens;

/// Texts per progress step and per cache append.
const CHUNK: usize = 32;

/// Splits `rows` with a seeded shuffle: the first `holdout` fraction (rounded,
/// at least one row) is the evaluation set, the rest the training set. The
/// same seed, fraction and file always give the same split.
pub fn split(mut rows: Vec<Row>, seed: u64, holdout: f64) -> (Vec<Row>, Vec<Row>) {
    rows.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let n_eval = ((rows.len() as f64 * holdout).round() as usize).clamp(1, rows.len());
    let train = rows.split_off(n_eval);
    (train, rows)
}

/// Keeps only the named models (in the dataset's order); checks that every row
/// has an outcome for every kept model.
pub fn restrict(mut data: Dataset, subset: Option<&[String]>) -> anyhow::Result<Dataset> {
    if let Some(names) = subset {
        for n in names {
            anyhow::ensure!(
                data.models.iter().any(|m| &m.name == n),
                "--models-subset: {n:?} is not a model of this dataset"
            );
        }
        data.models.retain(|m| names.contains(&m.name));
    }
    anyhow::ensure!(!data.models.is_empty(), "the dataset lists no models");
    for r in &data.rows {
        for m in &data.models {
            let o = r
                .outcomes
                .get(&m.name)
                .with_context(|| format!("row {}: no outcome for model {}", r.id, m.name))?;
            anyhow::ensure!(
                o.quality.is_finite() && o.cost_usd.is_finite() && o.cost_usd >= 0.0,
                "row {}: outcome for {} is not a finite quality and cost",
                r.id,
                m.name
            );
        }
    }
    Ok(data)
}

/// Embeddings of `rows`' prompts, from the cache or the encoder (with a progress bar).
pub fn embed(
    embedder: &Embedder,
    cache: &mut EmbeddingCache,
    rows: &[Row],
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut missing: Vec<&str> = rows
        .iter()
        .map(|r| r.prompt.as_str())
        .filter(|p| cache.get(&text_key(p)).is_none())
        .collect();
    missing.sort_unstable();
    missing.dedup();
    // Similar lengths together: less padding in a batch (see STACK-NOTES).
    missing.sort_by_key(|p| p.len());
    if !missing.is_empty() {
        let bar = ProgressBar::new(missing.len() as u64).with_message("embedding");
        bar.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .expect("static template is valid: this is a bug")
                .progress_chars("=> "),
        );
        for chunk in missing.chunks(CHUNK) {
            let texts: Vec<&str> = chunk
                .iter()
                .map(|t| if t.trim().is_empty() { "(empty)" } else { t })
                .collect();
            let vecs = embedder.embed_batch_blocking(&texts)?;
            cache.insert_all(chunk.iter().map(|t| text_key(t)).zip(vecs).collect())?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
    }
    Ok(rows
        .iter()
        .map(|r| {
            cache
                .get(&text_key(&r.prompt))
                .cloned()
                .expect("every prompt was just embedded: this is a bug")
        })
        .collect())
}

/// One prompt as the policy sees it.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The bandit context (`policy::features::context`).
    pub features: Vec<f32>,
    pub prompt_tokens: u32,
}

/// The service's context for each prompt: estimated tokens, the routing
/// head's probabilities over the embedding and the quality head's
/// predictions (`quality`, one per row; empty without a quality head).
pub fn prepare(
    rows: &[Row],
    embeddings: &[Vec<f32>],
    head: Option<&IntentHead>,
    quality: &[Vec<f64>],
) -> Vec<Prepared> {
    rows.iter()
        .zip(embeddings)
        .zip(quality)
        .map(|((r, e), q)| {
            let prompt_tokens = tokens::estimate_prompt_tokens([r.prompt.as_str()]);
            let intent_probs = head.map(|h| h.probabilities(e));
            Prepared {
                features: features::context(
                    intent_probs.as_deref(),
                    prompt_tokens,
                    // The datasets' prompts are plain single-turn chats.
                    &features::Shape::default(),
                    q,
                ),
                prompt_tokens,
            }
        })
        .collect()
}

/// Loads a dataset with a clear error naming the file.
pub fn load(jsonl: &Path, models: &Path) -> anyhow::Result<Dataset> {
    Dataset::load(jsonl, models)
        .with_context(|| format!("loading {} with {}", jsonl.display(), models.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| Row {
                id: format!("r{i}"),
                prompt: format!("p{i}"),
                task: "t".into(),
                outcomes: Default::default(),
            })
            .collect()
    }

    #[test]
    fn split_is_seeded_disjoint_and_sized() {
        let (tr, ev) = split(rows(100), 3, 0.3);
        assert_eq!((tr.len(), ev.len()), (70, 30));
        let (tr2, ev2) = split(rows(100), 3, 0.3);
        assert_eq!(
            ev.iter().map(|r| &r.id).collect::<Vec<_>>(),
            ev2.iter().map(|r| &r.id).collect::<Vec<_>>()
        );
        assert_eq!(tr.len(), tr2.len());
        assert!(ev.iter().all(|e| tr.iter().all(|t| t.id != e.id)));
        let (_, ev3) = split(rows(100), 4, 0.3);
        assert_ne!(ev[0].id, ev3[0].id);
    }
}
