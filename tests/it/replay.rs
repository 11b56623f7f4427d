//! Evidence that the bandit learns, on real routing outcomes: a fixed slice of
//! `../shared/data/routing/llmrouter.train.jsonl` goes through the real Route
//! RPC, and the dataset's quality for the chosen model comes back through
//! Feedback, late and in shuffled batches (`switchyard::offline::replay`).
//! The late-phase mean quality must beat uniform random clearly and come
//! within a stated margin of the best single model on the same prompts.

use crate::common;

use std::path::PathBuf;

use switchyard::config::{Config, PolicyKind};
use switchyard::offline::replay::{self, Dataset};

const PROMPTS: usize = 600;
const LATE: usize = 200;
/// Feedback arrives in batches of this many decisions, shuffled.
const FEEDBACK_BATCH: usize = 20;
/// How far below the best single model the late phase may be.
const MARGIN_TO_BEST: f64 = 0.08;
/// How far above uniform random the late phase must be.
const MARGIN_OVER_UNIFORM: f64 = 0.08;

fn data_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/routing");
    if d.is_dir() {
        Some(d)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have ../shared/data"
        );
        None
    }
}

#[tokio::test]
async fn the_bandit_learns_on_real_routing_outcomes() {
    let Some(dir) = data_dir() else { return };
    let data = Dataset::load(
        &dir.join("llmrouter.train.jsonl"),
        &dir.join("llmrouter.models.json"),
    )
    .unwrap()
    .shuffled(7, PROMPTS);
    let tmp = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\ndatabase = \"{}\"\n[classifier]\nauto_fetch = false\n[routing]\npolicy = \"bandit\"\n[bandit]\nseed = 11\n{}",
        tmp.path().join("replay.db").display(),
        data.catalog_toml()
    );
    let config = Config::from_toml(&toml).unwrap();
    assert_eq!(config.routing.policy, PolicyKind::Bandit);
    let server = common::Server::start(config).await;
    let mut c = server.client().await;

    let steps = replay::run(&mut c, &data, 0.0, FEEDBACK_BATCH, 7)
        .await
        .unwrap();
    let late = &steps[PROMPTS - LATE..];
    let bandit = late.iter().map(|s| s.quality).sum::<f64>() / LATE as f64;
    let b = replay::baselines(&data, &data.rows[PROMPTS - LATE..], 0.0);
    eprintln!(
        "late-phase mean quality: bandit {bandit:.3}, best single {:.3} ({}), uniform {:.3}, oracle {:.3}",
        b.best_single, b.best_single_model, b.uniform, b.oracle
    );
    assert!(
        bandit > b.uniform + MARGIN_OVER_UNIFORM,
        "bandit {bandit:.3} vs uniform {:.3}",
        b.uniform
    );
    assert!(
        bandit > b.best_single - MARGIN_TO_BEST,
        "bandit {bandit:.3} vs best {:.3}",
        b.best_single
    );
    server.stop().await;
}
