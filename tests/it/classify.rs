//! Integration tests of the classification module against the real all-MiniLM-L6-v2
//! files (located by `SWITCHYARD_MODEL_DIR`, else `models/all-MiniLM-L6-v2`) and a
//! reference fixture computed by an independent NumPy implementation with
//! sentence-transformers semantics.

use std::path::PathBuf;

use serde::Deserialize;
use switchyard::classify::encoder::{Encoder, EncoderOptions, Precision, Workspace};
use switchyard::classify::intent::{self, IntentHead, OOS_LABEL, TrainOptions};
use switchyard::classify::{Classifier, ClassifierConfig, ClassifyError};

fn model_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2")
        })
}

#[derive(Deserialize)]
struct Fixture {
    max_seq_length: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

fn fixture() -> Fixture {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json");
    serde_json::from_slice(&std::fs::read(path).expect("fixture present")).expect("fixture parses")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Every fixture item within cosine 0.999 (F32: 0.99999). The fixture truncates like
/// sentence-transformers (first 255 wordpieces + `[SEP]`), so for the long item we build
/// those ids ourselves: this test checks the model, `truncation_keeps_head_and_tail` our
/// own truncation policy.
fn check_fixture(precision: Precision, min_cos: f32) {
    let fx = fixture();
    let enc = Encoder::load(
        &model_dir(),
        EncoderOptions {
            max_tokens: 512,
            precision,
        },
    )
    .expect("model loads");
    assert_eq!(enc.dim(), 384);
    let mut ws = Workspace::default();
    let mut worst = 1.0f32;
    for item in &fx.items {
        let (mut ids, _) = enc.tokenize(&item.text).expect("tokenizes");
        if ids.len() > fx.max_seq_length {
            let sep = *ids.last().unwrap();
            ids.truncate(fx.max_seq_length - 1);
            ids.push(sep);
        }
        assert_eq!(
            ids.len(),
            item.tokens,
            "token count for {:?}",
            &item.text[..item.text.len().min(40)]
        );
        let e = enc.embed_ids(&ids, &mut ws).expect("embeds");
        let norm: f32 = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-5,
            "embedding is not unit length: {norm}"
        );
        let c = cosine(&e, &item.embedding);
        worst = worst.min(c);
        assert!(
            c >= min_cos,
            "{precision:?}: cosine {c} < {min_cos} for {} tokens",
            item.tokens
        );
    }
    eprintln!("{precision:?}: worst cosine vs fixture {worst}");
}

#[test]
fn matches_reference_fixture_int8() {
    check_fixture(Precision::best_available(), 0.999);
}

#[test]
fn matches_reference_fixture_f32() {
    check_fixture(Precision::F32, 0.99999);
}

#[test]
fn truncation_keeps_head_and_tail() {
    let enc = Encoder::load(
        &model_dir(),
        EncoderOptions {
            max_tokens: 16,
            ..Default::default()
        },
    )
    .unwrap();
    let text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon";
    let (ids, truncated) = enc.tokenize(text).unwrap();
    assert!(truncated);
    assert_eq!(ids.len(), 16);
    let full = Encoder::load(
        &model_dir(),
        EncoderOptions {
            max_tokens: 512,
            ..Default::default()
        },
    )
    .unwrap();
    let (all, cut) = full.tokenize(text).unwrap();
    assert!(!cut && all.len() > 16);
    // [CLS] + first 7 + last 7 + [SEP]
    assert_eq!(ids[..8], all[..8]);
    assert_eq!(ids[8..], all[all.len() - 8..]);
    let e = enc.embed(text, &mut Workspace::default()).unwrap();
    assert!(e.truncated && e.tokens == 16);
    // A huge text is cut before tokenising but still keeps its first and last words.
    let huge = format!("first {} last", "lorem ipsum dolor ".repeat(100_000));
    let (ids, truncated) = enc.tokenize(&huge).unwrap();
    assert!(truncated && ids.len() == 16);
    let (first, _) = full.tokenize("first").unwrap();
    let (last, _) = full.tokenize("last").unwrap();
    assert_eq!(ids[1], first[1]);
    assert_eq!(ids[14], last[1]);
    let short = enc.embed("alpha beta", &mut Workspace::default()).unwrap();
    assert!(!short.truncated && short.tokens == 4);
}

fn classifier(workers: usize, queue_depth: usize) -> Classifier {
    let mut cfg = ClassifierConfig::new(model_dir());
    cfg.workers = workers;
    cfg.queue_depth = queue_depth;
    Classifier::load(&cfg).expect("classifier loads")
}

#[tokio::test]
async fn alone_equals_in_batch_and_empty_text_errors() {
    let c = classifier(2, 16);
    assert_eq!(c.dim(), 384);
    let texts = [
        "What's the capital of Australia?",
        "Solve 3x + 1 = 10",
        "Write a haiku about rust",
    ];
    let alone = c.classify(texts[1]).await.unwrap();
    assert_eq!(alone.embedding.len(), 384);
    assert!(!alone.truncated && alone.tokens > 2);
    let c2 = c.clone();
    let batch = tokio::task::spawn_blocking(move || c2.embed_batch_blocking(&texts))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.len(), 3);
    let max_diff = alone
        .embedding
        .iter()
        .zip(&batch[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(max_diff <= 1e-6, "alone vs batch differ by {max_diff}");
    assert!(matches!(
        c.classify("").await,
        Err(ClassifyError::EmptyText)
    ));
    assert!(matches!(
        c.classify("  \n\t").await,
        Err(ClassifyError::EmptyText)
    ));
    assert!(matches!(
        c.embed_batch_blocking(&["ok", ""]),
        Err(ClassifyError::EmptyText)
    ));
}

#[tokio::test]
async fn full_queue_is_overloaded_not_queued() {
    let c = classifier(1, 1);
    let long = "route this prompt to the cheapest model that can answer it well ".repeat(20);
    let calls: Vec<_> = (0..16).map(|_| c.classify(&long)).collect();
    let results = futures::future::join_all(calls).await;
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(ClassifyError::Overloaded)))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(ok >= 1, "some requests must be served");
    assert!(
        overloaded >= 1,
        "a 1-deep queue must reject some of 16 concurrent requests"
    );
    assert_eq!(ok + overloaded, results.len());
    assert!(ClassifyError::Overloaded.is_retryable());
}

#[test]
fn bad_config_is_rejected() {
    let mut cfg = ClassifierConfig::new(model_dir());
    cfg.workers = 0;
    assert!(matches!(
        Classifier::load(&cfg),
        Err(ClassifyError::InvalidConfig(_))
    ));
    let cfg = ClassifierConfig::new("/nonexistent/model");
    assert!(matches!(
        Classifier::load(&cfg),
        Err(ClassifyError::ModelFile { .. })
    ));
}

/// Three well-separated clusters on the unit sphere, with noise.
fn synthetic(n_per: usize, seed: u64) -> Vec<(Vec<f32>, String)> {
    let dim = 16;
    let mut state = seed;
    let mut rnd = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let mut out = Vec::new();
    for (c, label) in ["billing", "coding", "travel"].iter().enumerate() {
        for _ in 0..n_per {
            let mut v: Vec<f32> = (0..dim).map(|_| rnd() * 0.6).collect();
            v[c * 3] += 1.0;
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.push((v.iter().map(|x| x / norm).collect(), label.to_string()));
        }
    }
    out
}

#[test]
fn intent_head_trains_round_trips_and_flags_oos() {
    let train = synthetic(40, 1);
    let test = synthetic(20, 2);
    let head = intent::train(&train, &TrainOptions::default()).unwrap();
    let report = intent::evaluate(&head, &test, None);
    assert!(report.accuracy >= 0.95, "accuracy {}", report.accuracy);
    assert!(report.macro_f1 >= 0.95, "macro F1 {}", report.macro_f1);
    assert_eq!(report.oos_recall, None);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intent.json");
    head.save(&path).unwrap();
    let back = IntentHead::load(&path).unwrap();
    assert_eq!(back.labels(), head.labels());
    assert_eq!(back.predict(&test[0].0), head.predict(&test[0].0));
    let top = head.predict(&test[0].0);
    assert_eq!(top.len(), 3);
    assert!((top.iter().map(|p| p.1).sum::<f32>() - 1.0).abs() < 1e-5);
    assert!(top[0].1 >= top[1].1);

    // An embedding unlike every class is out of scope under a threshold.
    let mut odd = vec![0.0f32; 16];
    odd[15] = 1.0;
    let mut with_oos = test.clone();
    with_oos.push((odd, OOS_LABEL.to_string()));
    let report = intent::evaluate(&head, &with_oos, Some(0.9));
    assert_eq!(report.oos_recall, Some(1.0));

    // Nearest centroid from a handful of examples is also accurate here.
    let few = synthetic(5, 3);
    let centroid = IntentHead::from_centroids(&few, 0.05).unwrap();
    assert!(intent::evaluate(&centroid, &test, None).accuracy >= 0.95);
    std::fs::write(&path, b"{\"format\":\"other\"}").unwrap();
    assert!(matches!(
        IntentHead::load(&path),
        Err(ClassifyError::IntentFile { .. })
    ));
}
