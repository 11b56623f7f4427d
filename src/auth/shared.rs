//! Rate limits shared by every replica (`limits.backend = "redis"`): the
//! same GCRA as `limits`, kept in Redis and run as one Lua script per
//! request, so that the check and the charge of both limits (requests and
//! tokens) are one atomic step whichever replica asks. The clock is Redis's
//! (`TIME`), so replicas' clocks need not agree.
//!
//! When Redis cannot be reached within `limits.redis_timeout_ms`, a key's
//! `on_unreachable` (else `limits.on_unreachable`) decides: "open" admits
//! (availability first: the limit is not enforced meanwhile), "closed"
//! refuses with 503 / UNAVAILABLE. How the connection behaves under faults
//! is [`RedisLink`]'s: a server starts (and serves, if open) while Redis is
//! down, and after a failure requests meet `on_unreachable` at once for a
//! moment instead of each waiting out a timeout.

use std::time::Duration;

use super::limits::{refused, too_large};
use crate::config::{LimitsConfig, OnUnreachable};
use crate::error::Error;
use crate::redis_link::{RedisLink, Unreachable};
use crate::store::KeyRow;

/// Admits a request under its requests- and tokens-per-minute limits, or
/// says which refused and how long until it fits. Times are microseconds of
/// Redis's clock; the theoretical arrival times are stored with `%.0f` so
/// they keep every digit.
const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = 60000000
local n = {1, tonumber(ARGV[3])}
local after = {}
for i = 1, 2 do
  local per_minute = tonumber(ARGV[i])
  if per_minute > 0 then
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    local a = tat + window / per_minute * n[i]
    if a - now > window then
      return {i, math.ceil(a - now - window)}
    end
    after[i] = a
  end
end
for i = 1, 2 do
  if after[i] then
    redis.call('SET', KEYS[i], string.format('%.0f', after[i]), 'PX',
      math.ceil((after[i] - now) / 1000) + 1000)
  end
end
return {0, 0}
"#;

/// Charges `ARGV[2]` more tokens (or gives back, when negative) to a token
/// limit of `ARGV[1]` per minute, without refusing.
const SETTLE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
tat = tat + 60000000 / tonumber(ARGV[1]) * tonumber(ARGV[2])
if tat < now then tat = now end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return 1
"#;

pub struct SharedLimits {
    redis: RedisLink,
    on_unreachable: OnUnreachable,
    admit: redis::Script,
    settle: redis::Script,
}

impl SharedLimits {
    pub fn new(config: &LimitsConfig) -> anyhow::Result<SharedLimits> {
        Ok(SharedLimits {
            redis: RedisLink::open(
                &config.redis_url,
                "limits.redis_url",
                config.redis_timeout,
                "the shared rate limiter",
            )?,
            on_unreachable: config.on_unreachable,
            admit: redis::Script::new(ADMIT),
            settle: redis::Script::new(SETTLE),
        })
    }

    /// Runs `script` through the link (its timeout, its pause after a failure).
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, Unreachable> {
        self.redis
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
    }

    /// Admits a request of `tokens` estimated prompt tokens under `key`'s
    /// limits in one atomic step for every replica; a refusal charges neither.
    pub async fn admit(&self, key: &KeyRow, tokens: u32) -> Result<(), Error> {
        if key.rpm.is_none() && key.tpm.is_none() {
            return Ok(());
        }
        if let Some(tpm) = key.tpm {
            too_large(key, tokens, tpm)?;
        }
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .key(bucket(key, "rpm"))
            .key(bucket(key, "tpm"))
            .arg(key.rpm.unwrap_or(0))
            .arg(key.tpm.unwrap_or(0))
            .arg(tokens);
        match self.run::<(u8, i64)>(invocation).await {
            Ok((0, _)) => Ok(()),
            Ok((which, wait_us)) => {
                let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
                Err(if which == 1 {
                    refused(key, "requests", key.rpm.unwrap_or(0), wait)
                } else {
                    refused(key, "tokens", key.tpm.unwrap_or(0), wait)
                })
            }
            Err(e) => self.unreachable(key, e),
        }
    }

    /// What a request meets while Redis cannot be reached.
    fn unreachable(&self, key: &KeyRow, e: Unreachable) -> Result<(), Error> {
        let closed = match key.on_unreachable.as_deref() {
            Some("closed") => true,
            Some("open") => false,
            _ => self.on_unreachable == OnUnreachable::Closed,
        };
        tracing::debug!(key = %key.id, error = %e, closed, "the shared rate limiter is unreachable");
        if closed {
            return Err(Error::unavailable(format!(
                "the rate limiter is unreachable and {}'s limits fail closed; retry shortly",
                key.who()
            )));
        }
        Ok(())
    }

    /// Settles a request's tokens with its real usage, off the request path.
    pub fn settle(self: &std::sync::Arc<Self>, key: &KeyRow, delta: i64) {
        let Some(tpm) = key.tpm.filter(|_| delta != 0) else {
            return;
        };
        let (me, bucket) = (std::sync::Arc::clone(self), bucket(key, "tpm"));
        tokio::spawn(async move {
            let mut invocation = me.settle.prepare_invoke();
            invocation.key(bucket).arg(tpm).arg(delta);
            if let Err(e) = me.run::<i64>(invocation).await {
                tracing::warn!(error = %e, "could not settle a token limit in Redis");
            }
        });
    }
}

/// The Redis key of one of a key's limits.
fn bucket(key: &KeyRow, which: &str) -> String {
    format!("switchyard:limits:{}:{which}", key.id)
}
