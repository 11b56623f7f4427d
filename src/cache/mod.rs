//! The exact response cache: an answer given once is given again, without a
//! provider call, to a request identical to it (see docs/cache.md).
//!
//! Entries live in a `moka` cache bounded by the bytes they hold, least
//! recently used out first, each for `cache.ttl_secs` after it was written.
//! Keys are SHA-256 digests of the normalised request, made by the engine,
//! which alone knows what a request's answer depends on.

use std::sync::Arc;

use moka::notification::RemovalCause;

use crate::config::CacheConfig;
use crate::dispatch::{ToolCall, Usage};
use crate::metrics::{GaugeFamily, Metrics};

/// A request's digest.
pub type Key = [u8; 32];

/// What a request met in the cache, as the `x-switchyard-cache` header and
/// the gRPC `cache` field say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// No cache is configured.
    #[default]
    Off,
    Hit,
    Miss,
    /// The client asked to skip it (`cache-control: no-cache`).
    Bypass,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Off => "",
            Status::Hit => "hit",
            Status::Miss => "miss",
            Status::Bypass => "bypass",
        }
    }
}

/// A whole answer, as it is served again.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The decision that first gave it (logged as the hit's `cached_from`).
    pub decision_id: String,
    pub model: String,
    pub provider: String,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: String,
    pub usage: Usage,
    /// What the first answer cost: what each hit saves.
    pub cost_usd: f64,
}

impl Answer {
    /// Roughly what the entry holds in memory, for the byte bound.
    fn weight(&self) -> u32 {
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|c| c.id.len() + c.name.len() + c.arguments.len() + 72)
            .sum();
        let bytes = self.decision_id.len()
            + self.model.len()
            + self.provider.len()
            + self.content.len()
            + self.finish_reason.len()
            + calls
            + std::mem::size_of::<Answer>()
            + std::mem::size_of::<Key>()
            + 64;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

pub struct Cache {
    entries: moka::sync::Cache<Key, Arc<Answer>>,
    metrics: Arc<Metrics>,
}

impl Cache {
    /// The cache `cfg` describes, or `None` when it is off. Its counts go
    /// to `metrics`.
    pub fn new(cfg: &CacheConfig, metrics: &Arc<Metrics>) -> Option<Arc<Cache>> {
        if !cfg.enabled {
            return None;
        }
        let counted = Arc::clone(metrics);
        let entries = moka::sync::Cache::builder()
            .max_capacity(cfg.max_bytes)
            .weigher(|_: &Key, a: &Arc<Answer>| a.weight())
            .time_to_live(cfg.ttl)
            .eviction_listener(move |_, _, cause| match cause {
                RemovalCause::Size => counted.cache_evicted("size"),
                RemovalCause::Expired => counted.cache_evicted("expired"),
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build();
        let cache = Arc::new(Cache {
            entries,
            metrics: Arc::clone(metrics),
        });
        let read = Arc::downgrade(&cache);
        metrics.gauge_families_fn(move || {
            let Some(c) = read.upgrade() else {
                return Vec::new();
            };
            c.entries.run_pending_tasks();
            vec![
                GaugeFamily {
                    name: "switchyard_cache_entries",
                    help: "Answers held by the response cache",
                    series: vec![(Vec::new(), c.entries.entry_count() as f64)],
                },
                GaugeFamily {
                    name: "switchyard_cache_bytes",
                    help: "Bytes the response cache's answers take (estimated)",
                    series: vec![(Vec::new(), c.entries.weighted_size() as f64)],
                },
            ]
        });
        Some(cache)
    }

    /// The answer for `key`, counted as a hit (with what it saved) or a miss.
    pub fn get(&self, key: &Key) -> Option<Arc<Answer>> {
        let found = self.entries.get(key);
        match &found {
            Some(a) => self.metrics.cache_hit(&a.model, a.cost_usd),
            None => self.metrics.cache_lookup("miss"),
        }
        found
    }

    /// Counts a request that skipped the cache.
    pub fn bypassed(&self) {
        self.metrics.cache_lookup("bypass");
    }

    pub fn put(&self, key: Key, answer: Answer) {
        self.entries.insert(key, Arc::new(answer));
    }
}
