//! The exact response cache: an answer given once is given again, without a
//! provider call, to a request identical to it (see docs/cache.md).
//!
//! Entries live in a `moka` cache bounded by the bytes they hold, least
//! recently used out first, each until `cache.ttl_secs` after the answer was
//! first given. Keys are SHA-256 digests of the normalised request, made by
//! the engine, which alone knows what a request's answer depends on.
//!
//! With `cache.redis_url`, answers are also written to Redis (with the same
//! time to live) and a local miss looks there, so one replica's answer
//! serves every replica. Redis being slow or away makes a lookup a miss and
//! a write a no-op: the cache never holds a request up past its timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::config::CacheConfig;
use crate::dispatch::{ToolCall, Usage};
use crate::metrics::{GaugeFamily, Metrics};
use crate::redis_link::RedisLink;

mod semantic;

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

/// A whole answer, as it is served again (and as Redis holds it, in JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// When it was first given (Unix ms): it is served until the TTL after.
    pub made_at_ms: i64,
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
    shared: Option<Arc<Shared>>,
    /// Questions by meaning, when `cache.semantic_threshold` is set.
    semantic: Option<semantic::Semantic>,
    metrics: Arc<Metrics>,
}

/// The answers every replica sees, in Redis.
struct Shared {
    redis: RedisLink,
    ttl: Duration,
}

/// An entry lives until the TTL after its answer was first given, however
/// it came here (answered here, or found in Redis later).
struct UntilStale(Duration);

impl moka::Expiry<Key, Arc<Answer>> for UntilStale {
    fn expire_after_create(&self, _: &Key, a: &Arc<Answer>, _: Instant) -> Option<Duration> {
        Some(self.0.saturating_sub(age(a)))
    }
}

fn age(a: &Answer) -> Duration {
    Duration::from_millis(u64::try_from(now_ms() - a.made_at_ms).unwrap_or(0))
}

/// The Redis key of a request's answer.
fn redis_key(key: &Key) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(20 + 64);
    s.push_str("switchyard:cache:v1:");
    for b in key {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Cache {
    /// The cache `cfg` describes, or `None` when it is off. Its counts go
    /// to `metrics`.
    pub fn new(cfg: &CacheConfig, metrics: &Arc<Metrics>) -> anyhow::Result<Option<Arc<Cache>>> {
        if !cfg.enabled {
            return Ok(None);
        }
        let shared = match &cfg.redis_url {
            Some(url) => Some(Arc::new(Shared {
                redis: RedisLink::open(
                    url,
                    "cache.redis_url",
                    cfg.redis_timeout,
                    "the response cache",
                )?,
                ttl: cfg.ttl,
            })),
            None => None,
        };
        let counted = Arc::clone(metrics);
        let entries = moka::sync::Cache::builder()
            .max_capacity(cfg.max_bytes)
            .weigher(|_: &Key, a: &Arc<Answer>| a.weight())
            .expire_after(UntilStale(cfg.ttl))
            .eviction_listener(move |_, _, cause| match cause {
                RemovalCause::Size => counted.cache_evicted("size"),
                RemovalCause::Expired => counted.cache_evicted("expired"),
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build();
        let cache = Arc::new(Cache {
            entries,
            shared,
            semantic: cfg
                .semantic_threshold
                .map(|_| semantic::Semantic::new(cfg.semantic_max_entries)),
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
                    help: "Answers held by the response cache (this replica's memory)",
                    series: vec![(Vec::new(), c.entries.entry_count() as f64)],
                },
                GaugeFamily {
                    name: "switchyard_cache_bytes",
                    help: "Bytes the response cache's answers take (estimated)",
                    series: vec![(Vec::new(), c.entries.weighted_size() as f64)],
                },
            ]
        });
        Ok(Some(cache))
    }

    /// The answer for `key`, from memory or else from Redis.
    pub async fn get(&self, key: &Key) -> Option<Arc<Answer>> {
        match self.entries.get(key) {
            Some(a) => Some(a),
            None => self.shared_get(key).await,
        }
    }

    /// The answer to the question in `scope` most similar to `embedding`, at
    /// `threshold` or above, with its similarity (this replica's questions).
    pub fn similar(
        &self,
        scope: &Key,
        embedding: &[f32],
        threshold: f32,
    ) -> Option<(Arc<Answer>, f32)> {
        let index = self.semantic.as_ref()?;
        let (key, similarity) = index.nearest(scope, embedding, threshold)?;
        match self.entries.get(&key) {
            Some(a) => Some((a, similarity)),
            None => {
                index.forget(scope, &key);
                None
            }
        }
    }

    /// Counts a lookup: a hit (with what it saved), or a miss.
    pub fn counted(&self, hit: Option<&Answer>) {
        match hit {
            Some(a) => self.metrics.cache_hit(&a.model, a.cost_usd),
            None => self.metrics.cache_lookup("miss"),
        }
    }

    async fn shared_get(&self, key: &Key) -> Option<Arc<Answer>> {
        let shared = self.shared.as_ref()?;
        let name = redis_key(key);
        let bytes = shared
            .redis
            .run(|mut c| async move { c.get::<_, Option<Vec<u8>>>(name).await })
            .await;
        let bytes = match bytes {
            Ok(b) => b?,
            Err(e) => {
                tracing::debug!(error = %e, "the shared cache is unreachable; a miss");
                return None;
            }
        };
        let answer = match serde_json::from_slice::<Answer>(&bytes) {
            Ok(a) if age(&a) < shared.ttl => Arc::new(a),
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "an answer in the shared cache does not parse; a miss");
                return None;
            }
        };
        self.entries.insert(*key, Arc::clone(&answer));
        Some(answer)
    }

    /// The bytes the entries are estimated to take: what `cache.max_mb` bounds.
    pub fn weighted_bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }

    /// Counts a request that skipped the cache.
    pub fn bypassed(&self) {
        self.metrics.cache_lookup("bypass");
    }

    /// Keeps `answer` here at once, and in Redis off the request path; with
    /// `question` (its scope and embedding), in the semantic index too.
    pub fn put(&self, key: Key, answer: Answer, question: Option<(Key, Vec<f32>)>) {
        let answer = Arc::new(answer);
        self.entries.insert(key, Arc::clone(&answer));
        if let (Some(index), Some((scope, embedding))) = (&self.semantic, question) {
            index.add(scope, embedding, key);
        }
        let Some(shared) = self.shared.clone() else {
            return;
        };
        tokio::spawn(async move {
            let left = shared.ttl.saturating_sub(age(&answer));
            let Ok(bytes) = serde_json::to_vec(&*answer) else {
                return;
            };
            let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
            let name = redis_key(&key);
            let set = shared
                .redis
                .run(|mut c| async move { c.pset_ex::<_, _, ()>(name, bytes, ms).await })
                .await;
            if let Err(e) = set {
                tracing::debug!(error = %e, "could not share an answer through Redis");
            }
        });
    }
}
