//! What the response cache holds in memory: the process's resident memory
//! before and after filling the cache with `CACHE_ENTRIES` answers (default
//! 100,000) of `CACHE_ANSWER_BYTES` characters each (default 1,000, about a
//! 250-token answer), per entry and above the answers' own text, beside the
//! cache's own estimate (the weights it bounds `cache.max_mb` with); then how
//! long a hit's lookup takes among that many entries; then how long the
//! semantic cache's search takes in one scope of 1,000, 10,000 and 100,000
//! questions (384-wide unit vectors, as MiniLM gives).
//!
//! `cargo bench --bench cache_memory`

mod common;

use std::time::Instant;

use common::env_or;
use switchyard::cache::{Answer, Cache, Key};
use switchyard::config::Config;
use switchyard::dispatch::Usage;
use switchyard::metrics::Metrics;

/// Resident memory of this process, from `/proc/self/status`, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn key(i: u64) -> Key {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&i.to_le_bytes());
    k[8..16].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    k
}

fn answer(i: u64, bytes: usize) -> Answer {
    let mut content = format!("answer {i}: ");
    while content.len() < bytes {
        content.push_str("route the prompt to a cheap model when it can answer well ");
    }
    content.truncate(bytes);
    Answer {
        decision_id: uuid::Uuid::now_v7().to_string(),
        model: "gpt-4.1-mini".into(),
        provider: "openai".into(),
        content,
        tool_calls: Vec::new(),
        finish_reason: "stop".into(),
        usage: Usage {
            prompt_tokens: 40,
            completion_tokens: 250,
            ..Usage::default()
        },
        cost_usd: 0.0004,
        made_at_ms: switchyard::clock::now_ms(),
    }
}

fn main() -> anyhow::Result<()> {
    let n: u64 = env_or("CACHE_ENTRIES", 100_000);
    let bytes: usize = env_or("CACHE_ANSWER_BYTES", 1_000);
    let mut cfg = Config::embedded().cache;
    cfg.enabled = true;
    cfg.max_bytes = 16 << 30; // nothing is evicted: every entry is counted
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let metrics = Metrics::new(Vec::new());
        let cache = Cache::new(&cfg, &metrics)?.expect("the cache is on");
        let answers: Vec<Answer> = (0..n).map(|i| answer(i, bytes)).collect();
        let payload: usize = answers
            .iter()
            .map(|a| a.content.len() + a.decision_id.len() + a.model.len() + a.provider.len())
            .sum();
        let before = rss();
        for (i, a) in answers.into_iter().enumerate() {
            cache.put(key(i as u64), a, None);
        }
        let after = rss();
        let held = after.saturating_sub(before) as f64;
        let text = payload as f64;
        // The answers were built before `before`: what is counted is the
        // cache's own structures (moka's entries, the Arc and the key) plus
        // the answers moved into it, which `payload` measures apart.
        println!("entries {n}, answer text {bytes} bytes each");
        println!(
            "resident memory added by the cache's structures: {:.1} MiB ({:.0} bytes per entry)",
            held / f64::from(1 << 20),
            held / n as f64
        );
        println!(
            "with the answers' strings: {:.1} MiB per {n} entries ({:.0} bytes per entry; strings {:.0})",
            (held + text) / f64::from(1 << 20),
            (held + text) / n as f64,
            text / n as f64
        );
        println!(
            "the cache's own estimate (what cache.max_mb bounds): {:.1} MiB ({:.0} bytes per entry)",
            cache.weighted_bytes() as f64 / f64::from(1 << 20),
            cache.weighted_bytes() as f64 / n as f64
        );
        let mut lat = Vec::with_capacity(n as usize);
        for i in 0..n {
            let k = key((i * 7919) % n);
            let started = Instant::now();
            let hit = cache.get(&k).await;
            lat.push(started.elapsed().as_secs_f64() * 1e6);
            assert!(hit.is_some());
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "hit lookup among {n}: p50 {:.2} µs, p99 {:.2} µs",
            common::percentile(&lat, 0.5),
            common::percentile(&lat, 0.99)
        );
        for size in [1_000u64, 10_000, 100_000] {
            semantic_search(&metrics, size)?;
        }
        anyhow::Ok(())
    })
}

/// A unit vector of MiniLM's width from `seed` (a fixed LCG, no RNG crate).
fn unit(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut v: Vec<f32> = (0..384)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

/// The semantic search's time in one scope of `size` questions: each query
/// is one of the questions asked again, so every search is a hit.
fn semantic_search(metrics: &std::sync::Arc<Metrics>, size: u64) -> anyhow::Result<()> {
    let mut cfg = Config::embedded().cache;
    cfg.enabled = true;
    cfg.max_bytes = 16 << 30;
    cfg.semantic_threshold = Some(0.9);
    cfg.semantic_max_entries = size;
    let cache = Cache::new(&cfg, metrics)?.expect("the cache is on");
    let scope = key(u64::MAX);
    for i in 0..size {
        cache.put(key(i), answer(i, 100), Some((scope, unit(i))));
    }
    let queries = 200.min(size);
    let mut lat = Vec::with_capacity(queries as usize);
    for i in 0..queries {
        let q = unit((i * 7919) % size);
        let started = Instant::now();
        let hit = cache.similar(&scope, &q, 0.9);
        lat.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(hit.is_some());
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "semantic search in a scope of {size}: p50 {:.3} ms, p99 {:.3} ms",
        common::percentile(&lat, 0.5),
        common::percentile(&lat, 0.99)
    );
    Ok(())
}
