//! Online learning: the bandit's state lives in one background task; the
//! request path only reads an immutable snapshot through an `ArcSwap`, so
//! Route never waits on learning.
//!
//! The state is sums over rewarded decisions (see `policy::bandit`), so it is
//! rebuilt exactly from the log at start: nothing but the log needs to be
//! durable, and a restart learns nothing twice and forgets nothing.

mod follow;
mod promoted;

pub use follow::Follow;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::RngCore;
use tokio::sync::mpsc;

use crate::config::BanditConfig;
use crate::dispatch::Blame;
use crate::policy::bandit::{Bandit, BanditParams, BanditState, Serving};
use crate::policy::{Candidate, Context, Decision, Policy};
use crate::store::codec::unpack_f32;
use crate::store::{FeedbackOutcome, Store, StoreError};

/// One change to the state, sent by the feedback path.
#[derive(Debug)]
enum Update {
    Add {
        arm: String,
        x: Vec<f32>,
        reward: f64,
    },
    Replace {
        arm: String,
        x: Vec<f32>,
        old: f64,
        new: f64,
    },
}

/// The live bandit: a snapshot to decide with, a channel to learn through.
pub struct Learning {
    snapshot: Arc<ArcSwap<Bandit>>,
    updates: mpsc::UnboundedSender<Update>,
    dim: usize,
    /// On a shared log: what this process observes reaches the state
    /// through the log ([`follow`]), not through `observe`.
    follows: bool,
}

impl Learning {
    /// Rebuilds the state from the log (plus an optional warm start), or from
    /// the promoted policy when one is current (see `promoted`), and starts the
    /// learner task. `serving` is what each snapshot is built over and `dim`
    /// the width of the context the engine builds; `bandit.reload_interval`
    /// is how often the learner polls for a newly promoted policy (`None`: never).
    /// On a shared log ([`Store::is_shared`]) the state is the warm start plus
    /// the shared observations, and the learner keeps following them (`follow`).
    pub async fn start(
        store: &Store,
        bandit: &BanditConfig,
        serving: Serving,
        dim: usize,
        follow: Follow,
    ) -> anyhow::Result<Learning> {
        let (params, warm_start, reload) = (
            bandit.params,
            bandit.warm_start.as_deref(),
            bandit.reload_interval,
        );
        // Read first: a promoted policy loaded below covers at least this much.
        let cursor = store.learn_cursor().await?;
        let mut seen = store.latest_promotion_id().await?;
        let promoted = match promoted::load_current(store, dim).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "promoted policy not used; rebuilding from the log");
                None
            }
        };
        let mut cursor = store.is_shared().then_some(follow::Cursor {
            follow,
            seq: cursor,
        });
        let (mut state, params, version) = match promoted {
            Some(p) => {
                seen = seen.max(p.id);
                (p.state, p.params, Some(p.version))
            }
            None if store.is_shared() => (warm(dim, warm_start)?, params, None),
            None => (rebuild(store, dim, warm_start).await?, params, None),
        };
        if let Some(c) = cursor.as_mut().filter(|_| version.is_none()) {
            c.seq = 0;
            let n = c.catch_up(store, &mut state, dim).await?.len();
            tracing::info!(observations = n, "bandit state built from the shared log");
        }
        let snapshot = Arc::new(ArcSwap::from_pointee(serving.bandit(&state, params)));
        record(store, &snapshot.load(), &state, &params, version.as_deref()).await;
        let (tx, rx) = mpsc::unbounded_channel();
        let learner = Learner {
            state,
            params,
            serving,
            snapshot: Arc::clone(&snapshot),
            store: store.clone(),
            dim,
            seen,
            promoted: version,
            cursor,
        };
        let follows = learner.cursor.is_some();
        tokio::spawn(learner.run(rx, reload));
        Ok(Learning {
            snapshot,
            updates: tx,
            dim,
            follows,
        })
    }

    /// Feeds a recorded feedback to the learner (never blocks).
    pub fn observe(&self, f: &FeedbackOutcome, reward: f64) {
        if self.follows {
            return; // the shared log brings it, to every replica
        }
        let (Some(arm), Some(ctx)) = (&f.arm, &f.context) else {
            return; // nothing served, or decided without a context
        };
        let x = unpack_f32(ctx);
        let Some(x) = crate::policy::features::widen(&x, self.dim).map(|x| x.into_owned()) else {
            return; // decided under another feature layout
        };
        let update = match f.previous {
            Some(old) => Update::Replace {
                arm: arm.clone(),
                x,
                old,
                new: reward,
            },
            None => Update::Add {
                arm: arm.clone(),
                x,
                reward,
            },
        };
        // The receiver lives as long as the runtime; a send fails only at shutdown,
        // and the log still holds the feedback for the next start.
        let _ = self.updates.send(update);
    }

    /// A model failed a request through its provider's fault: learn it as
    /// an outcome with `reward` (never blocks). Client cancels never get here.
    pub fn observe_failure(&self, arm: &str, context: &[f32], reward: f64) {
        if self.follows {
            return; // the shared log brings it, to every replica
        }
        let Some(x) = crate::policy::features::widen(context, self.dim) else {
            return; // decided under another feature layout
        };
        let _ = self.updates.send(Update::Add {
            arm: arm.to_owned(),
            x: x.into_owned(),
            reward,
        });
    }

    /// Re-learns the failures in the log (at start, after `start`): the same
    /// observations `observe_failure` made before a restart.
    pub async fn replay_failures(&self, store: &Store, reward: f64) -> anyhow::Result<usize> {
        if self.follows {
            return Ok(0); // folded in with the shared log at start
        }
        let failures = failure_observations(store).await?;
        let n = failures.len();
        for (arm, x) in failures {
            self.observe_failure(&arm, &x, reward);
        }
        Ok(n)
    }

    /// The snapshot deciding now.
    pub fn current(&self) -> Arc<Bandit> {
        self.snapshot.load_full()
    }
}

impl Policy for Learning {
    fn version(&self) -> String {
        self.snapshot.load().version()
    }

    fn decide(&self, ctx: &Context, candidates: Vec<Candidate>, rng: &mut dyn RngCore) -> Decision {
        self.snapshot.load().decide(ctx, candidates, rng)
    }
}

/// The warm start (widened to `dim`), or an empty state; `eval --mode
/// online` starts from it the same way.
pub fn warm(dim: usize, warm_start: Option<&Path>) -> anyhow::Result<BanditState> {
    Ok(match warm_start {
        Some(p) => {
            let s = crate::policy::file::load_warm_start(p)?;
            let found = s.dim;
            s.widen(dim).map_err(|_| {
                anyhow::anyhow!(
                    "warm start {} has dimension {found}, the context {dim}",
                    p.display()
                )
            })?
        }
        None => BanditState::new(dim),
    })
}

/// The state from the warm start plus every reward in the log.
pub async fn rebuild(
    store: &Store,
    dim: usize,
    warm_start: Option<&Path>,
) -> anyhow::Result<BanditState> {
    let mut state = warm(dim, warm_start)?;
    let mut skipped = 0usize;
    let observations = store.observations().await?;
    for o in &observations {
        let x = unpack_f32(&o.context);
        let observed = crate::policy::features::widen(&x, dim)
            .is_some_and(|x| state.observe(&o.arm, &x, o.reward).is_ok());
        if !observed {
            skipped += 1; // logged under another feature layout
        }
    }
    tracing::info!(
        observations = observations.len() - skipped,
        skipped,
        "bandit state rebuilt from the log"
    );
    Ok(state)
}

/// After publishing a snapshot the learner waits this long before the next,
/// so a feedback storm costs at most a few rebuilds (and log rows) a second.
const COALESCE: Duration = Duration::from_millis(100);

struct Learner {
    state: BanditState,
    params: BanditParams,
    /// The catalog, its anchors and the bound the snapshots are built over.
    serving: Serving,
    snapshot: Arc<ArcSwap<Bandit>>,
    store: Store,
    dim: usize,
    /// The newest promotion id already handled.
    seen: i64,
    /// The promoted policy's version the state started from, if any.
    promoted: Option<String>,
    /// On a shared log: where this learner is in it.
    cursor: Option<follow::Cursor>,
}

impl Learner {
    /// Applies every queued update, then publishes one new snapshot: under a
    /// burst of feedback the O(arms·d³) rebuild happens once per burst. Every
    /// `reload` it also checks (one indexed read, off the request path) for a
    /// newly promoted policy and swaps it in.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Update>, reload: Option<Duration>) {
        let mut ticker = tokio::time::interval(reload.unwrap_or(Duration::from_secs(3600)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; start already loaded
        let every = self.cursor.as_ref().map(|c| c.follow.interval);
        let mut follow = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
        follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                update = rx.recv() => {
                    let Some(first) = update else { break };
                    apply(&mut self.state, first);
                    while let Ok(more) = rx.try_recv() {
                        apply(&mut self.state, more);
                    }
                    self.publish().await;
                    tokio::time::sleep(COALESCE).await;
                }
                _ = ticker.tick(), if reload.is_some() => self.poll_promotion(&mut rx).await,
                _ = follow.tick(), if every.is_some() => self.follow().await,
            }
        }
    }

    /// Folds in what every replica observed since the last read.
    async fn follow(&mut self) {
        let Some(cursor) = self.cursor.as_mut() else {
            return;
        };
        match cursor
            .catch_up(&self.store, &mut self.state, self.dim)
            .await
        {
            Ok(made) if made.is_empty() => {}
            Ok(made) => {
                self.publish().await;
                if let Some(c) = &self.cursor {
                    c.published(&made);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the shared log failed; retrying"),
        }
    }

    async fn publish(&self) {
        let bandit = self.serving.bandit(&self.state, self.params);
        record(
            &self.store,
            &bandit,
            &self.state,
            &self.params,
            self.promoted.as_deref(),
        )
        .await;
        self.snapshot.store(Arc::new(bandit));
    }

    /// Swaps in a policy promoted since the last check. Updates already queued
    /// were committed before the read below, so they are in it: drop them.
    async fn poll_promotion(&mut self, rx: &mut mpsc::UnboundedReceiver<Update>) {
        // Read first: the promoted policy loaded below covers at least this much.
        let cursor = match self.store.learn_cursor().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "checking for a promoted policy failed");
                return;
            }
        };
        match self.store.latest_promotion_id().await {
            Ok(id) if id > self.seen => self.seen = id,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "checking for a promoted policy failed");
                return;
            }
        }
        while rx.try_recv().is_ok() {}
        match promoted::load_current(&self.store, self.dim).await {
            Ok(Some(p)) => {
                tracing::info!(version = %p.version, "switching to the promoted policy");
                self.state = p.state;
                self.params = p.params;
                self.promoted = Some(p.version);
                if let Some(c) = self.cursor.as_mut() {
                    c.seq = cursor;
                }
                self.publish().await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "promoted policy not used; keeping the current one")
            }
        }
    }
}

/// Logs a version with everything needed to rebuild it: parameters and sums.
/// Recorded before it serves, so every decision's version resolves in the log.
async fn record(
    store: &Store,
    bandit: &Bandit,
    state: &BanditState,
    p: &BanditParams,
    promoted: Option<&str>,
) {
    let params = serde_json::json!({
        "promoted": promoted,
        "lambda": p.lambda(),
        "sigma": p.sigma(),
        "explore_floor": p.explore_floor(),
        "mc_samples": p.mc_samples(),
        "exploration": p.exploration(),
        "state": state,
    });
    let at = crate::clock::now_ms();
    if let Err(e) = store
        .record_policy_version(bandit.version(), "bandit", params.to_string(), at)
        .await
    {
        tracing::warn!(error = %e, "policy version not recorded");
    }
}

/// Every (model, context) in the log that failed a decision it did not end up
/// serving through its provider's fault, once per (decision, model): the
/// observations `observe_failure` made live, by the same rule ([`Blame`]).
pub async fn failure_observations(store: &Store) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
    let mut out: Vec<(String, Vec<f32>)> = Vec::new();
    let mut last: Option<(String, String)> = None;
    for a in store.failed_attempts().await? {
        if Blame::of_status(a.http_status) != Blame::Provider {
            continue;
        }
        let key = (a.decision_id, a.model);
        if last.as_ref() == Some(&key) {
            continue;
        }
        out.push((key.1.clone(), unpack_f32(&a.context)));
        last = Some(key);
    }
    Ok(out)
}

fn apply(state: &mut BanditState, u: Update) {
    let result = match &u {
        Update::Add { arm, x, reward } => state.observe(arm, x, *reward),
        Update::Replace { arm, x, old, new } => state.replace_reward(arm, x, *old, *new),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "feedback not learned");
    }
}
