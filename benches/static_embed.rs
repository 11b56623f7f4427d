//! Fast-mode (static table) classification benchmarks.
//!
//! `cargo bench --bench static_embed`: criterion timings of `StaticClassifier::classify`
//! (tokenise + average table rows + normalise) at 16/64/128/256 tokens.
//!
//! `STATIC_LATENCY=1 cargo bench --bench static_embed`: instead prints wall-clock
//! p50/p99 per length over 5 000 runs each, through the async `classify` as the service
//! calls it.
//!
//! Needs a distilled table: `switchyard distill-static` writes `static-embeddings.bin`
//! into the model folder (found via `SWITCHYARD_MODEL_DIR`, else
//! `models/all-MiniLM-L6-v2`); `SWITCHYARD_STATIC_TABLE` points elsewhere. Without it the
//! bench says so and exits.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use switchyard::classify::StaticClassifier;

mod common;

use common::{model_dir, percentile, words_text};

const LENGTHS: [usize; 4] = [16, 64, 128, 256];
/// A text of exactly `tokens` tokens (`[CLS]`/`[SEP]` included).
fn text_of(c: &StaticClassifier, tokens: usize) -> String {
    let text = words_text(tokens);
    let got = c.embed(&text).expect("embeds");
    assert!(
        got.tokens == tokens && !got.truncated,
        "bench text has {} tokens, wanted {tokens}",
        got.tokens
    );
    text
}

fn latency_report(c: &StaticClassifier) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for n in LENGTHS {
        let text = text_of(c, n);
        for _ in 0..200 {
            rt.block_on(c.classify(&text)).expect("classifies");
        }
        let mut wall: Vec<f64> = (0..5000)
            .map(|_| {
                let t = Instant::now();
                rt.block_on(c.classify(&text)).expect("classifies");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        wall.sort_by(f64::total_cmp);
        println!(
            "{n:>4} tokens via StaticClassifier::classify: p50 {:.3} ms p99 {:.3} ms",
            percentile(&wall, 0.5),
            percentile(&wall, 0.99)
        );
    }
}

fn main() {
    let table = std::env::var_os("SWITCHYARD_STATIC_TABLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| model_dir().join("static-embeddings.bin"));
    if !table.exists() {
        eprintln!(
            "no static table at {}: run `switchyard distill-static` first",
            table.display()
        );
        return;
    }
    let c = StaticClassifier::load(&model_dir(), &table, 256).expect("static classifier loads");
    if std::env::var_os("STATIC_LATENCY").is_some() {
        latency_report(&c);
        return;
    }
    let mut crit = Criterion::default().configure_from_args();
    let mut group = crit.benchmark_group("static");
    group.measurement_time(Duration::from_secs(3));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for n in LENGTHS {
        let text = text_of(&c, n);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("classify", n), &text, |b, text| {
            b.iter(|| rt.block_on(c.classify(text)).expect("classifies"))
        });
    }
    group.finish();
    crit.final_summary();
}
