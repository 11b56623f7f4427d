//! `distill-static`: builds the fast-mode table ([`crate::classify::static_embed`]) for a
//! model folder and writes it, typically as `static-embeddings.bin` beside the weights.
//!
//! The table is distilled from the F32 encoder: it is built once per machine, so the
//! exact model is worth the extra time over int8 (whose embeddings differ by up to
//! 5e-4 in cosine).

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::classify::static_embed::{self, StaticTable};
use crate::classify::{Encoder, EncoderOptions, Precision};

/// File name the service looks for in the model folder by default.
pub const TABLE_FILE: &str = "static-embeddings.bin";

/// Distils every vocabulary id of the model in `model_dir` and writes the table to `out`.
pub fn run(model_dir: &Path, out: &Path) -> anyhow::Result<StaticTable> {
    let encoder = Encoder::load(
        model_dir,
        EncoderOptions {
            precision: Precision::F32,
            ..EncoderOptions::default()
        },
    )
    .with_context(|| format!("loading the encoder from {}", model_dir.display()))?;
    let bar = ProgressBar::new(0).with_message("distilling");
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("static template is valid: this is a bug")
            .progress_chars("=> "),
    );
    let start = Instant::now();
    let table = static_embed::distill(&encoder, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish();
    let took = start.elapsed();
    table
        .save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "distilled {} rows × {} in {:.1} s; wrote {} ({:.1} MB)",
        table.vocab(),
        table.dim(),
        took.as_secs_f64(),
        out.display(),
        bytes as f64 / 1e6
    );
    Ok(table)
}
