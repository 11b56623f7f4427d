//! The decision log as offline tools read it: decisions joined with their
//! feedback and attempts, decoded (context vector, candidates, cost, label),
//! with clear errors for a missing database or an empty selection.

use std::path::Path;

use serde::Deserialize;

use crate::store::codec::{unpack_f16, unpack_f32};
use crate::store::{LoggedDecision, Store};

/// The metadata key whose string value is taken as a decision's true intent
/// label (e.g. set by a labelling job or a client that knows the task).
pub const LABEL_KEY: &str = "intent_label";

/// One catalog model's numbers at decision time, as logged.
#[derive(Debug, Clone, Deserialize)]
pub struct LoggedCandidate {
    pub model: String,
    pub eligible: bool,
    pub expected_cost_usd: f64,
    /// Load penalty subtracted from the score (0 in logs that predate it).
    #[serde(default)]
    pub load_penalty: f64,
}

/// One rewarded decision, decoded.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub id: String,
    pub created_at_ms: i64,
    /// The model the logging policy chose (the action of off-policy evaluation).
    pub chosen: String,
    /// The model that earned the reward (the served model for Complete), as
    /// the service learns it; `None` when nothing served.
    pub arm: Option<String>,
    pub pinned: bool,
    pub propensity: f64,
    pub cost_weight: f64,
    pub context: Vec<f32>,
    pub candidates: Vec<LoggedCandidate>,
    /// One reward per feedback source.
    pub rewards: Vec<f64>,
    /// Realised cost: the attempts' sum, or the chosen model's expected cost
    /// when the caller dispatched itself (Route).
    pub cost_usd: f64,
    pub label: Option<String>,
    pub embedding: Option<Vec<f32>>,
}

impl LogRow {
    /// Mean reward over feedback sources.
    pub fn reward(&self) -> f64 {
        self.rewards.iter().sum::<f64>() / self.rewards.len().max(1) as f64
    }
}

/// A selection of the log.
#[derive(Debug, Clone)]
pub struct Log {
    pub rows: Vec<LogRow>,
    pub since_ms: i64,
    /// Feedback recorded up to this time is included.
    pub through_ms: i64,
    /// Decisions with feedback but no context vector (logged before contexts were).
    pub without_context: usize,
}

/// Opens an existing log; a missing file is an error, never a new database.
/// How long offline commands wait for the database's write lock.
const OFFLINE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

pub async fn open(database: &Path) -> anyhow::Result<Store> {
    anyhow::ensure!(
        database.is_file(),
        "database {} does not exist",
        database.display()
    );
    let cfg = crate::config::Config::embedded().store;
    // Nobody's request waits on an offline command: it may wait out a
    // server's commits far longer than the service would.
    let (store, _writer) = Store::open_with(database, &cfg, OFFLINE_BUSY_TIMEOUT)
        .await
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", database.display()))?;
    Ok(store)
}

/// `--since` and `--until` in Unix ms (0 and `None` when not given).
pub fn window(
    since: Option<&str>,
    until: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<(i64, Option<i64>)> {
    let since_ms = since
        .map(|s| parse_since(s, now_ms))
        .transpose()?
        .unwrap_or(0);
    let until_ms = until
        .map(|s| parse_since(s, now_ms).map_err(|e| anyhow::anyhow!("{e}").context("--until")))
        .transpose()?;
    Ok((since_ms, until_ms))
}

/// Loads every decision made at or after `since_ms` with feedback recorded
/// up to `until_ms` (default: now). Errors when nothing is selected, saying why.
pub async fn load(
    store: &Store,
    database: &Path,
    since_ms: i64,
    until_ms: Option<i64>,
) -> anyhow::Result<Log> {
    let watermark = store.feedback_watermark().await?;
    anyhow::ensure!(
        watermark > 0,
        "database {} has no feedback: nothing to learn from or evaluate on",
        database.display()
    );
    let through_ms = until_ms.map_or(watermark, |u| u.min(watermark));
    let decisions = store.logged_decisions(since_ms, through_ms).await?;
    if decisions.is_empty() {
        let all = store.logged_decisions(0, through_ms).await?.len();
        anyhow::bail!("--since/--until select no decision with feedback ({all} in the whole log)");
    }
    let mut rows = Vec::with_capacity(decisions.len());
    let mut without_context = 0;
    for d in decisions {
        match decode(d)? {
            Some(r) => rows.push(r),
            None => without_context += 1,
        }
    }
    anyhow::ensure!(
        !rows.is_empty(),
        "none of the {without_context} selected decisions has a context vector"
    );
    // Rows logged before the context gained its shape features take the
    // newest row's layout (see `policy::features::widen`).
    let dim = rows.last().map_or(0, |r: &LogRow| r.context.len());
    for r in &mut rows {
        if let Some(std::borrow::Cow::Owned(wide)) = crate::policy::features::widen(&r.context, dim)
        {
            r.context = wide;
        }
    }
    Ok(Log {
        rows,
        since_ms,
        through_ms,
        without_context,
    })
}

fn decode(d: LoggedDecision) -> anyhow::Result<Option<LogRow>> {
    let Some(context) = d.context.as_deref().map(unpack_f32) else {
        return Ok(None);
    };
    let candidates: Vec<LoggedCandidate> = serde_json::from_str(&d.candidates)
        .map_err(|e| anyhow::anyhow!("decision {}: unreadable candidates: {e}", d.id))?;
    let expected = candidates
        .iter()
        .find(|c| c.model == d.model)
        .map_or(0.0, |c| c.expected_cost_usd);
    let label = serde_json::from_str::<serde_json::Value>(&d.metadata)
        .ok()
        .and_then(|m| m.get(LABEL_KEY)?.as_str().map(str::to_owned))
        .filter(|l| !l.trim().is_empty());
    let arm = if d.rpc == "route" {
        Some(d.model.clone())
    } else {
        d.served_model.clone()
    };
    Ok(Some(LogRow {
        id: d.id,
        created_at_ms: d.created_at_ms,
        chosen: d.model,
        arm,
        pinned: d.pinned,
        propensity: d.propensity,
        cost_weight: d.cost_weight,
        context,
        candidates,
        rewards: d.rewards,
        cost_usd: d.cost_usd.unwrap_or(expected),
        label,
        embedding: d.features.as_deref().map(unpack_f16),
    }))
}

/// Parses a time for `--since`/`--until`: Unix milliseconds, a UTC date `YYYY-MM-DD` or time
/// `YYYY-MM-DDTHH:MM:SSZ`, or an age such as `90m`, `12h`, `7d` before now.
pub fn parse_since(s: &str, now_ms: i64) -> anyhow::Result<i64> {
    let s = s.trim();
    let bad = || {
        anyhow::anyhow!(
            "--since {s:?}: expected Unix ms, YYYY-MM-DD[THH:MM:SSZ] or an age like 7d, 12h, 90m"
        )
    };
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Some(unit) = s.chars().last().filter(|c| matches!(c, 'd' | 'h' | 'm')) {
        let n: i64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
        let per = match unit {
            'd' => 86_400_000,
            'h' => 3_600_000,
            _ => 60_000,
        };
        return Ok(now_ms - n.checked_mul(per).ok_or_else(bad)?);
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let ymd: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [y, m, d] = ymd[..] else {
        return Err(bad());
    };
    anyhow::ensure!((1..=12).contains(&m) && (1..=31).contains(&d), bad());
    let mut secs = crate::clock::days_from_civil(y, m, d) * 86_400;
    if let Some(t) = time {
        let hms: Vec<i64> = t
            .split(':')
            .map(|p| p.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let [h, mi, se] = hms[..] else {
            return Err(bad());
        };
        anyhow::ensure!(h < 24 && mi < 60 && se < 61, bad());
        secs += h * 3600 + mi * 60 + se;
    }
    Ok(secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_ms_dates_and_ages() {
        assert_eq!(parse_since("1700000000000", 0).unwrap(), 1_700_000_000_000);
        assert_eq!(parse_since("1970-01-02", 0).unwrap(), 86_400_000);
        assert_eq!(parse_since("2024-03-01", 0).unwrap(), 1_709_251_200_000);
        assert_eq!(
            parse_since("2024-03-01T01:02:03Z", 0).unwrap(),
            1_709_251_200_000 + 3_723_000
        );
        assert_eq!(
            parse_since("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        for bad in ["", "yesterday", "2024-13-01", "2024-03-01T01:02", "xd"] {
            assert!(parse_since(bad, 0).is_err(), "{bad}");
        }
    }
}
