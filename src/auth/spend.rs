//! Budgets: each key's spend today and this month (UTC), checked before a
//! call is made and added to as answers' costs are known.
//!
//! The totals are kept in memory for the request path and rebuilt at start
//! from the log (attempts' costs joined with their decisions' key), which
//! holds every acknowledged answer, so spend survives a restart and
//! `kill -9` exactly as the answers do.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::{month_of, now_ms, utc_day};
use crate::error::Error;
use crate::store::{KeyRow, Store, StoreError};

/// Past this share of a budget the cost weight stops rising (at 20×).
const MAX_STEER_SHARE: f64 = 0.95;

#[derive(Debug, Default, Clone)]
struct KeySpend {
    day: String,
    day_usd: f64,
    month_usd: f64,
}

#[derive(Debug, Default)]
pub struct Spend {
    by_key: Mutex<HashMap<String, KeySpend>>,
}

impl KeySpend {
    /// Starts a new day (and month) when `today` is past the kept one.
    fn roll(&mut self, today: &str) {
        if self.day != today {
            if month_of(&self.day) != month_of(today) {
                self.month_usd = 0.0;
            }
            self.day_usd = 0.0;
            self.day = today.to_owned();
        }
    }
}

impl Spend {
    /// This month's spend per key, from the log.
    pub async fn load(store: &Store) -> Result<Spend, StoreError> {
        let now = now_ms();
        let today = utc_day(now);
        let mut by_key: HashMap<String, KeySpend> = HashMap::new();
        for r in store.spend(crate::clock::month_start_ms(now)).await? {
            if r.shadow {
                continue;
            }
            // A key's spend, and its tenant's (all the tenant's keys).
            let ids = r.key_id.into_iter().chain([KeyRow::tenant_id(&r.tenant)]);
            for id in ids {
                let s = by_key.entry(id).or_insert_with(|| KeySpend {
                    day: today.clone(),
                    ..KeySpend::default()
                });
                s.month_usd += r.usd;
                if r.day == today {
                    s.day_usd += r.usd;
                }
            }
        }
        Ok(Spend {
            by_key: Mutex::new(by_key),
        })
    }

    /// Refuses a call whose expected cost would take `key` past a budget:
    /// an OpenAI-style `insufficient_quota` naming the budget.
    pub fn check(&self, key: &KeyRow, expected_usd: f64) -> Result<(), Error> {
        if key.budget_day_usd.is_none() && key.budget_month_usd.is_none() {
            return Ok(());
        }
        let today = utc_day(now_ms());
        let mut by_key = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let s = by_key.entry(key.id.clone()).or_default();
        s.roll(&today);
        for (name, budget, spent) in [
            ("budget_day_usd", key.budget_day_usd, s.day_usd),
            ("budget_month_usd", key.budget_month_usd, s.month_usd),
        ] {
            if let Some(b) = budget
                && spent + expected_usd > b
            {
                return Err(Error::quota(format!(
                    "{} has spent ${spent:.6} of its {name} of ${b:.6}; this call's expected ${expected_usd:.6} would pass it",
                    key.who()
                )));
            }
        }
        Ok(())
    }

    /// How much more cost weighs for `key` as it nears a budget: with `f`
    /// the larger share of a budget spent (day or month), the cost weight is
    /// multiplied by 1 / (1 − min(f, 0.95)): 1 with nothing spent, 2 at half,
    /// 4 at three quarters, 10 at 90%, at most 20. So routing turns to
    /// cheaper models as the budget runs down, and the refusal comes last.
    pub fn steer(&self, key: &KeyRow) -> f64 {
        if key.budget_day_usd.is_none() && key.budget_month_usd.is_none() {
            return 1.0;
        }
        let today = utc_day(now_ms());
        let mut by_key = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let s = by_key.entry(key.id.clone()).or_default();
        s.roll(&today);
        let share = |spent: f64, budget: Option<f64>| match budget {
            Some(b) if b > 0.0 => spent / b,
            Some(_) => 1.0,
            None => 0.0,
        };
        let f = share(s.day_usd, key.budget_day_usd).max(share(s.month_usd, key.budget_month_usd));
        1.0 / (1.0 - f.clamp(0.0, MAX_STEER_SHARE))
    }

    /// On a shared log, replaces the spend of `keys` that have a budget with
    /// the counters every replica adds to (`key_spend`), so that a budget
    /// holds across replicas; the local totals stay if the database is away.
    pub async fn refresh(&self, store: &Store, keys: &[&KeyRow]) {
        let ids: Vec<String> = keys
            .iter()
            .filter(|k| k.budget_day_usd.is_some() || k.budget_month_usd.is_some())
            .map(|k| k.id.clone())
            .collect();
        if ids.is_empty() || !store.is_shared() {
            return;
        }
        let now = now_ms();
        let today = utc_day(now);
        let rows = match store
            .key_spend(&ids, &utc_day(crate::clock::month_start_ms(now)))
            .await
        {
            Ok(Some(rows)) => rows,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "shared spend not read; checking budgets against this replica's totals");
                return;
            }
        };
        let mut by_key = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            let mut s = KeySpend {
                day: today.clone(),
                ..KeySpend::default()
            };
            for (_, day, usd) in rows.iter().filter(|r| r.0 == id) {
                s.month_usd += usd;
                if *day == today {
                    s.day_usd += usd;
                }
            }
            by_key.insert(id, s);
        }
    }

    /// Adds an answer's cost to `key`'s spend.
    pub fn add(&self, key: &KeyRow, usd: f64) {
        if usd <= 0.0 || !usd.is_finite() {
            return;
        }
        let today = utc_day(now_ms());
        let mut by_key = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let s = by_key.entry(key.id.clone()).or_default();
        s.roll(&today);
        s.day_usd += usd;
        s.month_usd += usd;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_weight_rises_as_a_budget_runs_down() {
        let spend = Spend::default();
        let key = KeyRow {
            budget_day_usd: Some(1.0),
            budget_month_usd: Some(100.0),
            ..KeyRow::plain("k", "t")
        };
        assert_eq!(spend.steer(&key), 1.0);
        spend.add(&key, 0.5);
        assert!((spend.steer(&key) - 2.0).abs() < 1e-12);
        spend.add(&key, 0.4);
        assert!((spend.steer(&key) - 10.0).abs() < 1e-9);
        spend.add(&key, 5.0);
        assert!((spend.steer(&key) - 20.0).abs() < 1e-9);
        assert!(spend.check(&key, 0.0).is_err());
    }

    #[test]
    fn a_day_rolls_into_the_month_and_a_month_starts_afresh() {
        let mut s = KeySpend {
            day: "2026-11-30".into(),
            day_usd: 2.0,
            month_usd: 5.0,
        };
        s.roll("2026-11-30");
        assert_eq!((s.day_usd, s.month_usd), (2.0, 5.0));
        s.roll("2026-12-01");
        assert_eq!((s.day_usd, s.month_usd), (0.0, 0.0));
        s.day_usd = 1.0;
        s.month_usd = 1.0;
        s.roll("2026-12-02");
        assert_eq!((s.day_usd, s.month_usd), (0.0, 1.0));
    }
}
