//! Following the shared log: with replicas on PostgreSQL, every replica's
//! learner folds in the numbered observations of all of them (feedback and
//! provider failures, `learn_events`) in one order, instead of the feedback
//! this process took. The state is sums, so every replica converges on the
//! state of one node that saw everything: equal up to the order of
//! floating-point additions (a fresh rebuild sums in decision order, the
//! followers in commit order; see docs/deployment.md for the tolerance).

use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;

use crate::clock::now_ms;
use crate::policy::bandit::BanditState;
use crate::store::codec::unpack_f32;
use crate::store::{LearnEvent, Store, StoreError};

/// Observations read per query.
const PAGE: i64 = 5000;

/// How a learner on a shared log follows it.
#[derive(Clone)]
pub struct Follow {
    /// How often the log is read for others' observations.
    pub interval: Duration,
    /// The reward a provider's failure is learnt as (`None`: failures are not learnt).
    pub failure_reward: Option<f64>,
    /// Where the lag of each folded observation is recorded.
    pub lag: Histogram,
}

/// A follower's place in the log.
pub(super) struct Cursor {
    pub follow: Follow,
    /// The newest observation folded in.
    pub seq: i64,
}

impl Cursor {
    /// Folds every observation after the cursor into `state`; returns when
    /// each was made (Unix ms), so that its lag is taken once it is published.
    pub(super) async fn catch_up(
        &mut self,
        store: &Store,
        state: &mut BanditState,
        dim: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let mut made = Vec::new();
        loop {
            let events = store.learn_events(self.seq, PAGE).await?;
            for e in &events {
                fold(state, e, dim, self.follow.failure_reward);
                self.seq = e.seq;
                made.push(e.at_ms);
            }
            if events.len() < PAGE as usize {
                return Ok(made);
            }
        }
    }

    /// Records the lag of observations made at `made` (now in the posterior).
    pub(super) fn published(&self, made: &[i64]) {
        let now = now_ms();
        for at in made {
            self.follow.lag.observe((now - at).max(0) as f64 / 1000.0);
        }
    }
}

fn fold(state: &mut BanditState, e: &LearnEvent, dim: usize, failure_reward: Option<f64>) {
    let x = unpack_f32(&e.context);
    let Some(x) = crate::policy::features::widen(&x, dim) else {
        return; // decided under another feature layout
    };
    let result = match (e.kind.as_str(), e.reward, e.previous) {
        ("feedback", Some(new), Some(old)) => state.replace_reward(&e.arm, &x, old, new),
        ("feedback", Some(reward), None) => state.observe(&e.arm, &x, reward),
        ("failure", _, _) => match failure_reward {
            Some(r) => state.observe(&e.arm, &x, r),
            None => Ok(()),
        },
        _ => {
            tracing::warn!(seq = e.seq, kind = %e.kind, "an observation of an unknown kind");
            Ok(())
        }
    };
    if let Err(err) = result {
        tracing::warn!(error = %err, seq = e.seq, "observation not learned");
    }
}
