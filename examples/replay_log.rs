//! Produces a real decision log to retrain and evaluate on: replays prompts of
//! a shared routing dataset through the real Route and Feedback RPCs of a
//! server (real MiniLM and intent head, the bandit learning from no prior),
//! and leaves the SQLite log behind.
//!
//! `cargo run --example replay_log -- DATASET PROMPTS COST_WEIGHT OUT.db`,
//! e.g. `mmlu-pro 3000 200 replay.db` (DATASET is a name under
//! `../shared/data/routing/`).

use std::path::PathBuf;
use std::time::Duration;

use switchyard::catalog::Catalog;
use switchyard::config::Config;
use switchyard::offline::replay::{self, Dataset};
use switchyard::pb::router_client::RouterClient;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, prompts, weight, db] = &args[..] else {
        anyhow::bail!("usage: replay_log DATASET PROMPTS COST_WEIGHT OUT.db");
    };
    let (prompts, weight): (usize, f64) = (prompts.parse()?, weight.parse()?);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("../shared/data/routing");
    let data = Dataset::load(
        &dir.join(format!("{name}.train.jsonl")),
        &dir.join(format!("{name}.models.json")),
    )?
    .shuffled(7, prompts);
    anyhow::ensure!(!PathBuf::from(db).exists(), "{db} exists: give a new file");
    let toml = format!(
        "[server]\ndatabase = \"{db}\"\n[classifier]\nauto_fetch = false\nmodel_dir = \"{}\"\nintent_head = \"{}\"\n\
         [routing]\npolicy = \"bandit\"\n[bandit]\nseed = 11\n{}",
        root.join("models/all-MiniLM-L6-v2").display(),
        root.join("models/intent-head.json").display(),
        data.catalog_toml()
    );
    let config = Config::from_toml(&toml)?;
    let rt = tokio::runtime::Runtime::new()?;
    let steps = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let catalog = Catalog::from_env(&config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(switchyard::app::run(config, catalog, listener, async {
            let _ = stopped.await;
        }));
        let mut c = loop {
            if let Ok(c) = RouterClient::connect(format!("http://{addr}")).await {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let steps = replay::run(&mut c, &data, weight, 20, 7).await?;
        drop(c);
        let _ = stop.send(());
        server.await??;
        anyhow::Ok(steps)
    })?;
    let n = steps.len().max(1) as f64;
    let objective = steps.iter().map(|s| s.objective(weight)).sum::<f64>() / n;
    let b = replay::baselines(&data, &data.rows, weight);
    println!(
        "{} prompts of {name} at cost_weight {weight}: bandit {objective:.4}, best single {} {:.4}, uniform {:.4}, oracle {:.4}; log in {db}",
        steps.len(),
        b.best_single_model,
        b.best_single,
        b.uniform,
        b.oracle
    );
    Ok(())
}
