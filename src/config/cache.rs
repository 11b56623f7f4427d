//! The `[cache]` section: answers served again, without a provider call, to
//! a request identical to one already answered (see docs/cache.md).

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub(super) enabled: bool,
    pub(super) max_mb: u64,
    pub(super) ttl_secs: u64,
    pub(super) redis_url: String,
    #[serde(rename = "redis_timeout_ms", deserialize_with = "super::raw::millis")]
    pub(super) redis_timeout: Duration,
    pub(super) semantic_threshold: f64,
    pub(super) semantic_tenants: Vec<String>,
    pub(super) semantic_any_settings: bool,
    pub(super) semantic_max_entries: u64,
}

/// The exact response cache; `enabled: false` is off.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub enabled: bool,
    /// What the cached answers may take in memory, in bytes; the least
    /// recently used go first past it.
    pub max_bytes: u64,
    /// How long an answer is served again after it was first given.
    pub ttl: Duration,
    /// Where replicas share their answers; `None`: each keeps its own.
    pub redis_url: Option<String>,
    /// A Redis call slower than this counts as Redis unreachable (the
    /// request goes on as a miss).
    pub redis_timeout: Duration,
    /// The semantic cache: `None` is off; else the cosine similarity of
    /// MiniLM embeddings at or above which a question takes a cached answer.
    pub semantic_threshold: Option<f32>,
    /// The tenants that opted in (`"*"`: every tenant).
    pub semantic_tenants: Vec<String>,
    /// Also for requests that sample (temperature not 0) or offer tools.
    pub semantic_any_settings: bool,
    /// Questions the semantic index holds, at most.
    pub semantic_max_entries: u64,
}

impl CacheConfig {
    /// Whether `tenant` opted in to the semantic cache (and it is on).
    pub fn semantic_for(&self, tenant: &str) -> Option<f32> {
        self.semantic_threshold.filter(|_| {
            self.semantic_tenants
                .iter()
                .any(|t| t == "*" || t == tenant)
        })
    }
}

pub(super) fn validate(c: RawCache) -> Result<CacheConfig, ConfigError> {
    if c.max_mb == 0 {
        return Err(invalid("cache.max_mb", "must be positive"));
    }
    if c.ttl_secs == 0 {
        return Err(invalid("cache.ttl_secs", "must be positive"));
    }
    if !(0.0..=1.0).contains(&c.semantic_threshold) {
        return Err(invalid(
            "cache.semantic_threshold",
            "must be in [0, 1] (0: off)",
        ));
    }
    if c.semantic_max_entries == 0 {
        return Err(invalid("cache.semantic_max_entries", "must be positive"));
    }
    if c.redis_timeout.is_zero() {
        return Err(invalid("cache.redis_timeout_ms", "must be positive"));
    }
    Ok(CacheConfig {
        enabled: c.enabled,
        max_bytes: c.max_mb.saturating_mul(1 << 20),
        ttl: Duration::from_secs(c.ttl_secs),
        redis_url: Some(c.redis_url).filter(|u| !u.trim().is_empty()),
        redis_timeout: c.redis_timeout,
        semantic_threshold: Some(c.semantic_threshold as f32).filter(|t| *t > 0.0),
        semantic_tenants: c.semantic_tenants,
        semantic_any_settings: c.semantic_any_settings,
        semantic_max_entries: c.semantic_max_entries,
    })
}
