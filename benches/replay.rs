//! The learning benchmark: every prompt of each shared routing dataset goes
//! through the real Route RPC of a running server (real MiniLM, the bandit
//! from no prior knowledge), rewards come back through Feedback in shuffled
//! batches, for several `cost_weight` values. Reports the mean of
//! quality − cost_weight × cost over time against the best single model,
//! uniform random and the per-prompt oracle, and writes the curves to
//! `target/replay/*.json` (plot them with `python3 training/plot_replay.py`).
//!
//! `cargo bench --bench replay`; `REPLAY_PROMPTS=N` limits each dataset.

mod common;

use std::time::Instant;

use common::Served;
use switchyard::config::Config;
use switchyard::offline::replay::{self, Dataset};

const WEIGHTS: [f64; 3] = [0.0, 200.0, 2000.0];
const WINDOW: usize = 500;
const LATE: usize = 1000;

fn main() -> anyhow::Result<()> {
    let root = common::root();
    let dir = root.join("../shared/data/routing");
    let limit: usize = common::env_or("REPLAY_PROMPTS", 0);
    let out = root.join("target/replay");
    std::fs::create_dir_all(&out)?;
    let rt = tokio::runtime::Runtime::new()?;
    println!(
        "{:<10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}  (mean objective over the last {LATE} prompts)",
        "dataset", "weight", "bandit", "best", "uniform", "oracle", "secs"
    );
    for name in ["llmrouter", "mmlu-pro"] {
        let data = Dataset::load(
            &dir.join(format!("{name}.train.jsonl")),
            &dir.join(format!("{name}.models.json")),
        )?
        .shuffled(7, limit);
        for w in WEIGHTS {
            let started = Instant::now();
            let tmp =
                std::env::temp_dir().join(format!("switchyard-replay-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&tmp)?;
            let toml = format!(
                "[server]\nhttp_listen = \"\"\ndatabase = \"{}\"\n[classifier]\nauto_fetch = false\nmodel_dir = \"{}\"\nintent_head = \"{}\"\n\
                 [routing]\npolicy = \"bandit\"\n[bandit]\nseed = 11\n{}",
                tmp.join("replay.db").display(),
                root.join("models/all-MiniLM-L6-v2").display(),
                root.join("models/intent-head.json").display(),
                data.catalog_toml()
            );
            let config = Config::from_toml(&toml)?;
            let steps = rt.block_on(async {
                let mut served = Served::start(config).await?;
                let steps = replay::run(&mut served.client, &data, w, 20, 7).await?;
                served.stop().await?;
                anyhow::Ok(steps)
            })?;
            let _ = std::fs::remove_dir_all(&tmp);

            let n = steps.len();
            let late_from = n.saturating_sub(LATE);
            let obj: Vec<f64> = steps.iter().map(|s| s.objective(w)).collect();
            let late = obj[late_from..].iter().sum::<f64>() / (n - late_from) as f64;
            let b_late = replay::baselines(&data, &data.rows[late_from..], w);
            let b_all = replay::baselines(&data, &data.rows, w);
            // Moving average of the bandit's objective, and the baselines over the same windows.
            let curve: Vec<serde_json::Value> = (WINDOW..=n)
                .step_by(50)
                .map(|end| {
                    let rows = &data.rows[end - WINDOW..end];
                    let b = replay::baselines(&data, rows, w);
                    serde_json::json!({
                        "step": end,
                        "bandit": obj[end - WINDOW..end].iter().sum::<f64>() / WINDOW as f64,
                        "best_single": b.best_single, "uniform": b.uniform, "oracle": b.oracle,
                    })
                })
                .collect();
            let mut share = std::collections::BTreeMap::<String, f64>::new();
            for s in &steps[late_from..] {
                *share.entry(s.model.clone()).or_default() += 1.0 / (n - late_from) as f64;
            }
            let report = serde_json::json!({
                "dataset": name, "cost_weight": w, "prompts": n, "window": WINDOW,
                "late": {"prompts": n - late_from, "bandit": late, "baselines": b_late, "model_share": share},
                "all": {"bandit": obj.iter().sum::<f64>() / n as f64, "baselines": b_all},
                "curve": curve,
            });
            std::fs::write(
                out.join(format!("{name}-w{w}.json")),
                serde_json::to_string_pretty(&report)?,
            )?;
            println!(
                "{name:<10} {w:>7} {late:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.1}",
                b_late.best_single,
                b_late.uniform,
                b_late.oracle,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
