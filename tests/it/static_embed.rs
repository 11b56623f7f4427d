//! Fast-mode static table against the real all-MiniLM-L6-v2 files (located by
//! `SWITCHYARD_MODEL_DIR`, else `models/all-MiniLM-L6-v2`). Only the ids of a few test
//! sentences are distilled (plus the special ids), so the test takes seconds, not the
//! minutes a whole vocabulary would in a debug build.

use std::path::PathBuf;

use switchyard::classify::encoder::{Encoder, EncoderOptions, Precision};
use switchyard::classify::static_embed::{self, StaticTable};
use switchyard::classify::{ClassifierConfig, Embedder, StaticClassifier};

fn model_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2")
        })
}

fn encoder() -> Encoder {
    let opts = EncoderOptions {
        precision: Precision::F32,
        ..EncoderOptions::default()
    };
    Encoder::load(&model_dir(), opts).expect("model loads")
}

const TEXTS: [&str; 4] = [
    "how do I reverse a linked list in python",
    "write a rust function that sorts a vector of integers",
    "what is a good recipe for banana bread",
    "bake a chocolate cake with flour, sugar and eggs",
];

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A full-vocabulary-sized table where only the ids of `texts` (and the specials) are
/// distilled; every other row is a placeholder unit vector no test text uses.
fn partial_table(enc: &Encoder, texts: &[&str]) -> StaticTable {
    let special = static_embed::special_ids(enc).expect("special ids");
    let mut ids: Vec<u32> = texts
        .iter()
        .flat_map(|t| enc.tokenize(t).expect("tokenizes").0)
        .collect();
    ids.extend(&special);
    ids.sort_unstable();
    ids.dedup();
    let dim = enc.dim();
    let rows = static_embed::distill_ids(enc, &ids).expect("distils");
    let vocab = 30522;
    let mut all = vec![0.0f32; vocab * dim];
    for (i, chunk) in all.chunks_exact_mut(dim).enumerate() {
        chunk[i % dim] = 1.0;
    }
    for (&id, row) in ids.iter().zip(rows.chunks_exact(dim)) {
        all[id as usize * dim..(id as usize + 1) * dim].copy_from_slice(row);
    }
    StaticTable::from_rows(dim, &all, &special).expect("table builds")
}

#[test]
fn distilled_rows_are_finite_and_unit_norm() {
    let enc = encoder();
    let ids: Vec<u32> = (1000..1016).chain([100, 101, 102, 103]).collect();
    let rows = static_embed::distill_ids(&enc, &ids).expect("distils");
    assert_eq!(rows.len(), ids.len() * enc.dim());
    for row in rows.chunks_exact(enc.dim()) {
        assert!(row.iter().all(|v| v.is_finite()));
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    // Different tokens get different rows.
    assert!(cosine(&rows[..enc.dim()], &rows[enc.dim()..2 * enc.dim()]) < 0.999);
}

#[test]
fn specials_are_cls_sep_pad_mask() {
    let mut s = static_embed::special_ids(&encoder()).expect("special ids");
    s.sort_unstable();
    assert_eq!(s, vec![0, 101, 102, 103]); // [PAD], [CLS], [SEP], [MASK] in MiniLM's vocab
}

#[test]
fn table_round_trips_through_a_file() {
    let dim = 4;
    let rows: Vec<f32> = (0..40)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0)
        .collect();
    let t = StaticTable::from_rows(dim, &rows, &[0, 3]).expect("builds");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("static-embeddings.bin");
    t.save(&path).expect("saves");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        24 + 2 * 4 + 2 * 40,
        "header + specials + f16 rows"
    );
    let back = StaticTable::load(&path).expect("loads");
    assert_eq!(back, t);
    assert_eq!(back.special_ids(), &[0, 3]);
    // A truncated file is rejected, not misread.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
    assert!(StaticTable::load(&path).is_err());
}

#[test]
fn text_embedding_is_the_normalised_mean_of_its_rows() {
    let enc = encoder();
    let table = partial_table(&enc, &TEXTS[..1]);
    let (ids, _) = enc.tokenize(TEXTS[0]).unwrap();
    let mut sum = vec![0.0f32; enc.dim()];
    // [CLS] and [SEP] are left out of the mean.
    for &id in &ids[1..ids.len() - 1] {
        for (s, v) in sum.iter_mut().zip(table.row(id).unwrap()) {
            *s += v;
        }
    }
    let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt();
    let expected: Vec<f32> = sum.iter().map(|v| v / norm).collect();
    let got = table.embed(&ids);
    assert!(cosine(&got, &expected) > 0.99999);
    assert!((cosine(&got, &got) - 1.0).abs() < 1e-5);
}

#[tokio::test]
async fn related_texts_score_higher_than_unrelated_ones() {
    let enc = encoder();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("static-embeddings.bin");
    partial_table(&enc, &TEXTS).save(&path).expect("saves");
    let mut cfg = ClassifierConfig::new(model_dir());
    cfg.max_tokens = 64;
    let embedder = Embedder::load(&cfg, Some(&path)).expect("static mode loads");
    assert!(matches!(embedder, Embedder::Static(_)));
    assert_eq!(embedder.dim(), enc.dim());
    let e = embedder.embed_batch_blocking(&TEXTS).expect("embeds");
    let (code, cake) = (cosine(&e[0], &e[1]), cosine(&e[2], &e[3]));
    for cross in [(0, 2), (0, 3), (1, 2), (1, 3)] {
        let c = cosine(&e[cross.0], &e[cross.1]);
        assert!(code > c && cake > c, "code {code} cake {cake} cross {c}");
    }
    // classify agrees with the batch path and reports tokens.
    let c = embedder.classify(TEXTS[0]).await.expect("classifies");
    assert_eq!(c.embedding, e[0]);
    assert_eq!(c.tokens, enc.tokenize(TEXTS[0]).unwrap().0.len());
    assert!(embedder.classify("   ").await.is_err());
}

#[test]
fn static_classifier_rejects_a_table_too_small_for_the_tokenizer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("small.bin");
    StaticTable::from_rows(2, &[1.0, 0.0, 0.0, 1.0], &[])
        .unwrap()
        .save(&path)
        .unwrap();
    assert!(StaticClassifier::load(&model_dir(), &path, 64).is_err());
}
