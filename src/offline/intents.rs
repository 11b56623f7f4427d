//! `train-intents` and `eval-intents`: embed labelled prompts with the real
//! encoder, fit or score a softmax head, report accuracy, macro-F1 and the
//! most frequent confusions (and out-of-scope recall with a threshold).
//! With a static table (`--static-table`) the same runs use fast-mode embeddings, so a
//! head can be trained for, and measured in, the mode the service will run.

use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::classify::{
    Classifier, ClassifierConfig, Embedder, EvalReport, IntentHead, TrainOptions, intent,
};

/// Texts per progress-bar step; small enough to show movement on 2 cores.
const CHUNK: usize = 64;

#[derive(Deserialize)]
struct Row {
    text: String,
    label: String,
}

/// Reads `{"text","label"}` lines, skipping blank texts; errors name the line.
pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let r: Row = serde_json::from_str(&line).with_context(|| {
            format!(
                "{}:{}: not a {{\"text\",\"label\"}} object",
                path.display(),
                i + 1
            )
        })?;
        if !r.text.trim().is_empty() {
            rows.push((r.text, r.label));
        }
    }
    anyhow::ensure!(!rows.is_empty(), "{} has no labelled rows", path.display());
    Ok(rows)
}

/// Embeds every row with a progress bar; blocking.
pub fn embed_rows(
    classifier: &Embedder,
    rows: Vec<(String, String)>,
    what: &str,
) -> anyhow::Result<Vec<(Vec<f32>, String)>> {
    let bar = ProgressBar::new(rows.len() as u64).with_message(what.to_owned());
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("static template is valid: this is a bug")
            .progress_chars("=> "),
    );
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(CHUNK) {
        let texts: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
        let embs = classifier.embed_batch_blocking(&texts)?;
        out.extend(embs.into_iter().zip(chunk.iter().map(|(_, l)| l.clone())));
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    Ok(out)
}

pub fn classifier(model_dir: &Path, max_tokens: usize) -> anyhow::Result<Classifier> {
    let mut cfg = ClassifierConfig::new(model_dir);
    cfg.max_tokens = max_tokens;
    Classifier::load(&cfg)
        .with_context(|| format!("loading the encoder from {}", model_dir.display()))
}

/// The full encoder, or static mode when `static_table` is given.
pub fn embedder(
    model_dir: &Path,
    max_tokens: usize,
    static_table: Option<&Path>,
) -> anyhow::Result<Embedder> {
    match static_table {
        None => classifier(model_dir, max_tokens).map(Embedder::Full),
        Some(table) => {
            let mut cfg = ClassifierConfig::new(model_dir);
            cfg.max_tokens = max_tokens;
            Embedder::load(&cfg, Some(table))
                .with_context(|| format!("loading the static table {}", table.display()))
        }
    }
}

/// Trains a head on `data` and writes it to `out`.
pub fn train(
    model_dir: &Path,
    data: &Path,
    out: &Path,
    max_tokens: usize,
    epochs: usize,
    oos_max_loss: f64,
    static_table: Option<&Path>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&oos_max_loss),
        "--oos-max-loss must be in [0, 1]"
    );
    let rows = read_jsonl(data)?;
    let c = embedder(model_dir, max_tokens, static_table)?;
    let examples = embed_rows(&c, rows, "embedding")?;
    let opts = TrainOptions {
        epochs,
        ..TrainOptions::default()
    };
    let calibration = intent::calibrate_oos(&examples, &opts, oos_max_loss)?;
    let head = intent::train(&examples, &opts)?
        .with_oos_threshold(calibration.as_ref().map(|c| c.threshold));
    head.save(out)?;
    if let Some(c) = &calibration {
        println!(
            "oos threshold {:.2}, chosen on {} held-out examples: in-scope accuracy {:.4} -> {:.4}, oos recall {:.4} -> {:.4}",
            c.threshold,
            c.held_out,
            c.in_scope_accuracy_before,
            c.in_scope_accuracy,
            c.oos_recall_before,
            c.oos_recall
        );
    }
    let report = intent::evaluate(&head, &examples, None);
    println!(
        "trained {} labels on {} examples; training accuracy {:.4}; wrote {}",
        head.labels().len(),
        examples.len(),
        report.accuracy,
        out.display()
    );
    Ok(())
}

/// Scores a head on `data` and prints the report.
pub fn eval(
    model_dir: &Path,
    data: &Path,
    head: &Path,
    max_tokens: usize,
    oos: Option<f32>,
    static_table: Option<&Path>,
) -> anyhow::Result<EvalReport> {
    let head = IntentHead::load(head)?;
    let rows = read_jsonl(data)?;
    let c = embedder(model_dir, max_tokens, static_table)?;
    let examples = embed_rows(&c, rows, "embedding")?;
    // The head's calibrated threshold unless one is given.
    let oos = oos.or(head.oos_threshold());
    let report = intent::evaluate(&head, &examples, oos);
    println!("examples      {}", report.examples);
    println!("accuracy      {:.4}", report.accuracy);
    println!("macro-F1      {:.4}", report.macro_f1);
    if let Some(a) = report.in_scope_accuracy {
        println!("in-scope acc  {a:.4}");
    }
    if let Some(r) = report.oos_recall {
        println!("oos recall    {r:.4} (threshold {})", oos.unwrap_or(0.0));
    }
    println!("top confusions (truth -> predicted: count):");
    for (t, p, n) in &report.top_confusions {
        println!("  {t} -> {p}: {n}");
    }
    Ok(report)
}
