//! Selection latency of the contextual bandit: 30 models, d = 48 features,
//! 512 Monte Carlo samples (the request-path cost), and the cost of building
//! a snapshot (off the request path).
//!
//! Run with `cargo bench --bench select`. Before the criterion runs it times
//! 20,000 single decisions and prints p50/p90/p99/max, because criterion
//! reports means and medians of batches, not tail latency.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchyard::policy::bandit::{Bandit, BanditParams, BanditState};
use switchyard::policy::{Candidate, Context, Policy};

const MODELS: usize = 30;
const DIM: usize = 48;
const OBSERVATIONS_PER_MODEL: usize = 200;

/// Features like the router's: a bias, then values scaled so that ‖x‖ ≈ 1.
fn features(rng: &mut StdRng) -> Vec<f32> {
    let scale = 1.0 / (DIM as f32).sqrt();
    let mut x = vec![1.0f32];
    x.extend((1..DIM).map(|_| rng.random_range(-scale..scale)));
    x
}

fn arms() -> Vec<(String, f64)> {
    (0..MODELS)
        .map(|i| (format!("model-{i}"), 0.5 + 0.01 * i as f64))
        .collect()
}

fn learned_state() -> BanditState {
    let mut rng = StdRng::seed_from_u64(1);
    let mut state = BanditState::new(DIM);
    for (name, prior) in arms() {
        for _ in 0..OBSERVATIONS_PER_MODEL {
            let r = prior + rng.random_range(-0.3..0.3);
            state
                .observe(&name, &features(&mut rng), r)
                .expect("dimensions match");
        }
    }
    state
}

fn setup() -> (Bandit, Vec<Candidate>, Context) {
    let bandit = Bandit::build(&learned_state(), BanditParams::default(), &arms());
    let candidates = (0..MODELS)
        .map(|model| Candidate {
            model,
            eligible: true,
            reason: String::new(),
            expected_quality: 0.5,
            quality_std: 0.0,
            expected_cost_usd: 1e-4 * (model + 1) as f64,
            load: Default::default(),
            score: 0.0,
            probability: 0.0,
        })
        .collect();
    let ctx = Context {
        cost_weight: 10.0,
        features: features(&mut StdRng::seed_from_u64(2)),
        prompt_tokens: 500,
    };
    (bandit, candidates, ctx)
}

fn percentiles() {
    let (bandit, candidates, ctx) = setup();
    let mut rng = StdRng::seed_from_u64(3);
    let mut micros: Vec<f64> = (0..20_000)
        .map(|_| {
            let cands = candidates.clone();
            let start = Instant::now();
            black_box(bandit.decide(&ctx, cands, &mut rng));
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    println!(
        "decide {MODELS} models, d={DIM}, M=512, 20000 calls: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}

fn bench_select(c: &mut Criterion) {
    let (bandit, candidates, ctx) = setup();
    let mut rng = StdRng::seed_from_u64(4);
    c.bench_function("decide/30 models/d48/M512", |b| {
        b.iter(|| bandit.decide(black_box(&ctx), candidates.clone(), &mut rng))
    });
}

fn bench_build(c: &mut Criterion) {
    let state = learned_state();
    let arms = arms();
    c.bench_function("build/30 models/d48", |b| {
        b.iter(|| Bandit::build(black_box(&state), BanditParams::default(), &arms))
    });
}

criterion_group!(benches, bench_select, bench_build);

fn main() {
    // `cargo test --benches` passes --test: run each benchmark once, skip the timing pass.
    if !std::env::args().any(|a| a == "--test") {
        percentiles();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
