//! Classification benchmarks.
//!
//! `cargo bench --bench classify`: criterion timings of tokenise + embed at 16/64/128/256
//! tokens (one encoder on the calling thread, i.e. one thread) and of intent-head predict.
//!
//! `CLASSIFY_LATENCY=1 cargo bench --bench classify`: instead prints p50/p99 per length
//! (tokenise + embed, 500 runs each), p50/p99 of `Classifier::classify` at 64 tokens, and
//! throughput of a `Classifier` with one worker per core on 400 mixed 10–200-token prompts (`CLASSIFY_LATENCY=mixed`: only the
//! throughput part).
//!
//! `CLASSIFY_F32=1` runs either mode with the F32 encoder (what CPUs without AVX512-VNNI
//! get). The model is found via `SWITCHYARD_MODEL_DIR`, else `models/all-MiniLM-L6-v2`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use switchyard::classify::encoder::{Encoder, EncoderOptions, Precision, Workspace};
use switchyard::classify::{Classifier, ClassifierConfig, IntentHead};

mod common;

use common::{model_dir, percentile, words_text};

const LENGTHS: [usize; 4] = [16, 64, 128, 256];
/// A text that tokenises to exactly `tokens` tokens (`[CLS]`/`[SEP]` included).
fn text_of(enc: &Encoder, tokens: usize) -> String {
    let text = words_text(tokens);
    let (ids, truncated) = enc.tokenize(&text).expect("tokenizes");
    assert!(
        ids.len() == tokens && !truncated,
        "bench text has {} tokens, wanted {tokens}",
        ids.len()
    );
    text
}

fn bench_embed(c: &mut Criterion, enc: &Encoder) {
    let mut group = c.benchmark_group("embed");
    group.measurement_time(Duration::from_secs(4));
    let mut ws = Workspace::default();
    for n in LENGTHS {
        let text = text_of(enc, n);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("tokenize+embed", n), &text, |b, text| {
            b.iter(|| enc.embed(text, &mut ws).expect("embeds"))
        });
    }
    group.finish();
}

fn bench_intent(c: &mut Criterion, enc: &Encoder) {
    // A 77-label head (Banking77's size) built from pseudo-random unit vectors.
    let dim = enc.dim();
    let examples: Vec<(Vec<f32>, String)> = (0..77 * 4)
        .map(|i| {
            let v: Vec<f32> = (0..dim)
                .map(|j| ((i * 131 + j * 17) as f32 * 0.618).fract() - 0.5)
                .collect();
            (v, format!("intent_{}", i % 77))
        })
        .collect();
    let head = IntentHead::from_centroids(&examples, 0.05).expect("head builds");
    let query = examples[5].0.clone();
    c.bench_function("intent/predict_77", |b| b.iter(|| head.predict(&query)));
}

/// CPU time of the calling thread (Linux), so numbers stay meaningful on a busy machine.
fn thread_cpu_ms() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? / 1e6)
}

fn latency_report(enc: &Encoder, lengths: &[usize]) {
    let mut ws = Workspace::default();
    println!("precision {:?}", enc.precision());
    for &n in lengths {
        let text = text_of(enc, n);
        for _ in 0..20 {
            enc.embed(&text, &mut ws).expect("embeds");
        }
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..500 {
            let (t, c) = (Instant::now(), thread_cpu_ms());
            enc.embed(&text, &mut ws).expect("embeds");
            wall.push(t.elapsed().as_secs_f64() * 1e3);
            if let (Some(c0), Some(c1)) = (c, thread_cpu_ms()) {
                cpu.push(c1 - c0);
            }
        }
        wall.sort_by(f64::total_cmp);
        print!(
            "{n:>4} tokens: wall p50 {:.2} ms p99 {:.2} ms",
            percentile(&wall, 0.5),
            percentile(&wall, 0.99)
        );
        if !cpu.is_empty() {
            // The kernel accounts CPU time in ticks, so only the mean is meaningful.
            print!(
                " | cpu mean {:.2} ms",
                cpu.iter().sum::<f64>() / cpu.len() as f64
            );
        }
        println!();
    }
    // Mixed lengths 10..=200 tokens, seeded, through the worker pool.
    let mut state = 42u64;
    let texts: Vec<String> = (0..400)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text_of(enc, 10 + (state >> 33) as usize % 191)
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let classifier =
        Classifier::load(&ClassifierConfig::new(model_dir())).expect("classifier loads");
    classifier
        .embed_batch_blocking(&refs[..20])
        .expect("warm-up");
    // End to end through the queue and the oneshot reply, one request at a time.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let text = text_of(enc, 64);
    let mut wall: Vec<f64> = (0..500)
        .map(|_| {
            let t = Instant::now();
            rt.block_on(classifier.classify(&text)).expect("classifies");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    wall.sort_by(f64::total_cmp);
    println!(
        "  64 tokens via Classifier::classify: p50 {:.2} ms p99 {:.2} ms",
        percentile(&wall, 0.5),
        percentile(&wall, 0.99)
    );
    let t = Instant::now();
    classifier.embed_batch_blocking(&refs).expect("embeds");
    let secs = t.elapsed().as_secs_f64();
    let workers = ClassifierConfig::new(model_dir()).workers;
    println!(
        "mixed 10-200 tokens, {workers} workers: {:.0} prompts/s",
        refs.len() as f64 / secs
    );
}

fn main() {
    // CLASSIFY_F32=1 measures the F32 path that CPUs without AVX512-VNNI use.
    let mut opts = EncoderOptions::default();
    if std::env::var_os("CLASSIFY_F32").is_some() {
        opts.precision = Precision::F32;
    }
    let enc = Encoder::load(&model_dir(), opts).expect("model loads");
    if std::env::var_os("CLASSIFY_LATENCY").is_some() {
        // CLASSIFY_LATENCY=mixed runs only the throughput part (for `perf stat`).
        let mixed_only = std::env::var("CLASSIFY_LATENCY").is_ok_and(|v| v == "mixed");
        latency_report(&enc, if mixed_only { &[] } else { &LENGTHS });
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_embed(&mut c, &enc);
    bench_intent(&mut c, &enc);
    c.final_summary();
}
