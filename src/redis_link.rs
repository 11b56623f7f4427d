//! One connection to Redis for a feature that shares state through it (the
//! rate limiter, the response cache), with the same behaviour under faults:
//! the connection is made on first use and remade after a failure, so a
//! server starts (and serves) while Redis is down; every call is bounded by
//! a timeout; after a failure Redis is not asked again for [`RETRY_AFTER`],
//! so requests meanwhile meet the fallback at once instead of each waiting
//! out a timeout, and one warning is logged per outage, not per request.

use std::future::Future;
use std::sync::Mutex as SyncMutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

/// How long after a failure Redis is left alone.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct RedisLink {
    client: redis::Client,
    /// Made on first use; dropped after a failure so the next call reconnects.
    conn: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
    /// Set by a failure: until then, Redis counts as unreachable.
    down_until: SyncMutex<Option<Instant>>,
    /// Who uses the link, for the log ("the shared rate limiter").
    user: &'static str,
}

/// A failure to reach Redis (or a reply it should not give).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(String);

impl RedisLink {
    /// `setting` names the URL's config key, for the error.
    pub fn open(
        url: &str,
        setting: &str,
        timeout: Duration,
        user: &'static str,
    ) -> anyhow::Result<RedisLink> {
        let client =
            redis::Client::open(url).map_err(|e| anyhow::anyhow!("{setting} {url:?}: {e}"))?;
        Ok(RedisLink {
            client,
            conn: Mutex::new(None),
            timeout,
            down_until: SyncMutex::new(None),
            user,
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, Unreachable> {
        let down = *self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if down.is_some_and(|until| Instant::now() < until) {
            return Err(Unreachable("down; not retried yet".into()));
        }
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(self.timeout, ConnectionManager::new(self.client.clone()))
            .await
            .map_err(|_| Unreachable("connecting timed out".into()))?
            .map_err(|e| Unreachable(e.to_string()))?;
        *conn = Some(c.clone());
        Ok(c)
    }

    /// Runs `call` on the connection within the timeout. A failure drops the
    /// connection and leaves Redis alone for [`RETRY_AFTER`]; a success ends
    /// an outage.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, Unreachable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let result = match self.connection().await {
            Ok(c) => match tokio::time::timeout(self.timeout, call(c)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(Unreachable(e.to_string())),
                Err(_) => Err(Unreachable("timed out".into())),
            },
            Err(e) => Err(e),
        };
        let failed_now = {
            let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
            match &result {
                Ok(_) => {
                    if down.take().is_some() {
                        tracing::info!(user = self.user, "Redis is reachable again");
                    }
                    false
                }
                Err(e) if down.is_none_or(|until| Instant::now() >= until) => {
                    if down.is_none() {
                        tracing::warn!(error = %e, user = self.user, "Redis is unreachable");
                    }
                    *down = Some(Instant::now() + RETRY_AFTER);
                    true
                }
                Err(_) => false,
            }
        };
        if failed_now {
            *self.conn.lock().await = None;
        }
        result
    }
}
