//! The promoted policy in the service: at start and on every poll, the newest
//! row of `policy_promotions` becomes the bandit's state and parameters.
//!
//! How it combines with feedback: the promoted state holds the sums over
//! every reward first recorded up to its `trained_through_ms`; the service
//! adds every reward recorded after that (read from the log when it swaps the
//! policy in, then live), so nothing is counted twice or lost across the swap
//! and later feedback keeps refining the promoted policy. The promoted file's
//! parameters (σ, exploration floor, …) replace the configured ones;
//! `bandit.warm_start` is not added on top (a policy trained with
//! `--warm-start` already contains it). A reward *replaced* after training
//! keeps its trained value until the next `train`.

use crate::policy::bandit::{BanditParams, BanditState};
use crate::policy::file::PolicyFile;
use crate::store::Store;

use crate::store::codec::unpack_f32;

/// A promoted policy ready to serve.
pub(super) struct Promoted {
    pub id: i64,
    pub version: String,
    pub state: BanditState,
    pub params: BanditParams,
}

/// The newest promotion with the rewards recorded after its training, or
/// `None` when nothing was promoted. Errors (unreadable file, other context
/// layout) leave the caller on its current policy.
pub(super) async fn load_current(store: &Store, dim: usize) -> anyhow::Result<Option<Promoted>> {
    let Some(row) = store.current_promotion().await? else {
        return Ok(None);
    };
    let policy = PolicyFile::from_json(&row.policy).map_err(|e| {
        anyhow::anyhow!(
            "promoted policy {} (promotion {}): {e}",
            row.version,
            row.id
        )
    })?;
    let mut state = policy.state.widen(dim).map_err(|_| {
        anyhow::anyhow!(
            "promoted policy {} expects {} features, the service builds {dim}",
            row.version,
            policy.layout.dim
        )
    })?;
    let mut skipped = 0usize;
    let after = store
        .observations_after(policy.source.trained_through_ms)
        .await?;
    for o in &after {
        let x = unpack_f32(&o.context);
        let observed = crate::policy::features::widen(&x, dim)
            .is_some_and(|x| state.observe(&o.arm, &x, o.reward).is_ok());
        if !observed {
            skipped += 1;
        }
    }
    tracing::info!(
        promotion = row.id,
        version = %row.version,
        later_rewards = after.len() - skipped,
        skipped,
        "promoted policy loaded"
    );
    Ok(Some(Promoted {
        id: row.id,
        version: row.version,
        state,
        params: policy.params.validated()?,
    }))
}
