//! The shipped warm-start prior routes well before any feedback: a fresh
//! server over `config/mmlu-pro.toml` (real MiniLM, real SQLite, real gRPC)
//! routes held-out prompts of `../shared/data/routing/mmlu-pro.train.jsonl`
//! (the 30% that `switchyard eval --seed 7` held out when it fitted the prior)
//! far better with the prior than the same server without it.

use crate::common;

use std::path::PathBuf;

use switchyard::config::Config;
use switchyard::offline::eval::data;
use switchyard::offline::replay::Row;

/// Held-out prompts routed per server: enough that a 0.1 gap is far outside noise.
const PROMPTS: usize = 60;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn data_dir() -> Option<PathBuf> {
    let d = root().join("../shared/data/routing");
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

/// Mean dataset quality of the models a fresh server picks for `rows` at cost weight 0.
async fn route_quality(config: Config, rows: &[Row]) -> f64 {
    let server = common::Server::start(config).await;
    let mut c = server.client().await;
    let mut total = 0.0;
    for r in rows {
        let mut req = common::route_req(&r.prompt);
        req.cost_weight = Some(0.0);
        let model = c.route(req).await.unwrap().into_inner().model;
        total += r.outcomes[&model].quality;
    }
    server.stop().await;
    total / rows.len() as f64
}

#[tokio::test]
async fn the_shipped_prior_routes_held_out_prompts_well_before_any_feedback() {
    let Some(dir) = data_dir() else { return };
    let data = data::load(
        &dir.join("mmlu-pro.train.jsonl"),
        &dir.join("mmlu-pro.models.json"),
    )
    .unwrap();
    let (_, held_out) = data::split(data.rows, 7, 0.3);
    let rows = &held_out[..PROMPTS];
    let tmp = tempfile::tempdir().unwrap();
    let config = |warm: bool, db: &str| {
        let mut c = Config::load(&root().join("config/mmlu-pro.toml")).unwrap();
        c.server.database = tmp.path().join(db);
        c.classifier.auto_fetch = false;
        c.classifier.model_dir = root().join("models/all-MiniLM-L6-v2");
        c.classifier.intent_head = Some(root().join("models/priors/mmlu-pro.head.json"));
        c.bandit.seed = Some(11);
        c.bandit.warm_start = warm.then(|| root().join("models/priors/mmlu-pro.json"));
        c
    };
    let with = route_quality(config(true, "with.db"), rows).await;
    let without = route_quality(config(false, "without.db"), rows).await;
    let best_single = data
        .models
        .iter()
        .map(|m| {
            rows.iter()
                .map(|r| r.outcomes[&m.name].quality)
                .sum::<f64>()
                / PROMPTS as f64
        })
        .fold(0.0, f64::max);
    eprintln!("quality with prior {with:.3}, without {without:.3}, best single {best_single:.3}");
    assert!(
        with >= without + 0.15,
        "with prior {with:.3} vs without {without:.3}"
    );
    // Close to the best single model on these prompts (the floor explores 5%).
    assert!(
        with >= best_single - 0.12,
        "with {with:.3} vs best {best_single:.3}"
    );
}

/// `switchyard train --dataset` fits a router on any routing-outcomes file,
/// here one with a single task label (no routing head can be fitted), and a
/// server loads what it wrote: the quality head's predictions are features
/// and each model's prior starts from its own prediction, so the expected
/// qualities differ per prompt before any feedback.
#[tokio::test]
async fn a_router_trained_on_a_one_task_file_serves_from_its_quality_head() {
    let Some(dir) = data_dir() else { return };
    let data = data::load(
        &dir.join("llmrouter.train.jsonl"),
        &dir.join("llmrouter.models.json"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<&Row> = data
        .rows
        .iter()
        .filter(|r| r.task == "gsm8k")
        .take(80)
        .collect();
    let file = tmp.path().join("gsm8k.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(dir.join("llmrouter.train.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| {
            rows.iter()
                .any(|r| l.contains(&format!("\"id\": \"{}\"", r.id)))
        })
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), rows.len(), "every chosen row found by its id");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = tmp.path().join("router");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .current_dir(root())
        .args(["train", "--dataset"])
        .arg(&file)
        .arg("--models")
        .arg(dir.join("llmrouter.models.json"))
        .arg("--out")
        .arg(&out)
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .args(["--quality", "fit"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("routing head: none (one task label)"),
        "{stdout}"
    );
    let toml = std::fs::read_to_string(out.join("switchyard.toml")).unwrap();
    assert!(toml.contains("intent_head = \"\"") && toml.contains("quality-head.json"));
    assert!(!out.join("task-head.json").exists());

    let mut c = Config::load(&root().join("config/llmrouter.toml")).unwrap();
    c.server.database = tmp.path().join("serve.db");
    c.classifier.auto_fetch = false;
    c.classifier.model_dir = root().join("models/all-MiniLM-L6-v2");
    c.classifier.intent_head = None;
    c.classifier.quality_head = Some(out.join("quality-head.json"));
    c.bandit.warm_start = Some(out.join("prior.json"));
    c.bandit.seed = Some(5);
    let server = common::Server::start(c).await;
    let mut client = server.client().await;
    let mut expected = Vec::new();
    for r in rows.iter().take(2) {
        let mut req = common::route_req(&r.prompt);
        req.cost_weight = Some(0.0);
        let resp = client.route(req).await.unwrap().into_inner();
        let q: Vec<f64> = resp.candidates.iter().map(|c| c.expected_quality).collect();
        assert_eq!(q.len(), data.models.len());
        expected.push(q);
    }
    server.stop().await;
    assert_ne!(expected[0], expected[1], "predictions depend on the prompt");
}
