//! The rules layer on a real server over the mock provider, with the real
//! MiniLM reading prompts: a tier's price ceiling over 1,000 requests,
//! language and intent rules, profiles in `/v1/models`, a 20% A/B split
//! measured over 2,000 requests and reported by `switchyard report ab`,
//! shadows that are logged apart and never answer, and a tenant's settings
//! holding all its keys.

use crate::common;

use std::time::{Duration, Instant};

use common::{Env, Mock, Server, cli, mock_config_toml, route_req};
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::Row;
use switchyard::config::Config;

/// A server over the mock with the test catalog and `extra` TOML.
async fn env_with(extra: &str, tweak: impl FnOnce(&mut Config)) -> Env {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("switchyard.db");
    let mut config = Config::from_toml(&(mock_config_toml(&mock.base_url(), &db) + extra)).unwrap();
    tweak(&mut config);
    let server = Server::start(config).await;
    Env { mock, server, dir }
}

/// A key of `tenant` with this tier, made in the database before the server starts.
async fn key(db: &std::path::Path, tenant: &str, tier: &str) -> String {
    let cfg = Config::embedded().store;
    let (store, _w) = switchyard::store::Store::open(db, &cfg).await.unwrap();
    let settings = switchyard::auth::KeySettings {
        tenant: Some(tenant.into()),
        tier: Some(tier.into()),
        ..Default::default()
    };
    let (_, secret) = switchyard::auth::create(&store, settings).await.unwrap();
    store.close().await;
    secret
}

async fn chat(env: &Env, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(common::http::url(env, "/v1/chat/completions"))
        .json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16})
}

async fn arm_of(pool: &sqlx::SqlitePool, id: &str) -> String {
    sqlx::query_scalar("SELECT ab_arm FROM decisions WHERE id = ?")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The server's database, read directly.
async fn db(env: &Env) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", env.server.db.display()))
        .await
        .unwrap()
}

const TEAM: &str = r#"
[auth]
mode = "keys"

[[profiles]]
name = "frugal"
description = "the cheap models, cost first"
candidates = ["cheap", "mid"]
cost_weight = 50000.0

[[routes]]
name = "free-tier"
match = { tier = ["free"] }
then = { max_usd_per_mtok = 5.0 }
"#;

#[tokio::test]
async fn a_free_tier_never_reaches_a_model_above_its_ceiling() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("switchyard.db");
    let free = key(&db_path, "acme", "free").await;
    let pro = key(&db_path, "acme", "pro").await;
    let config = Config::from_toml(&(mock_config_toml(&mock.base_url(), &db_path) + TEAM)).unwrap();
    let env = Env {
        server: Server::start(config).await,
        mock,
        dir,
    };
    env.server.client().await;

    // Unruled, the router picks `strong` ($40/Mtok out) for this prompt.
    let (status, body) = chat(&env, Some(&pro), ask("switchyard/auto", "hello")).await;
    assert_eq!(
        (status, body["model"].as_str()),
        (200, Some("strong")),
        "{body}"
    );

    let answers: Vec<(u16, Value)> = futures::stream::iter(0..1000)
        .map(|i| {
            let (env, free) = (&env, &free);
            async move {
                chat(
                    env,
                    Some(free),
                    ask("switchyard/auto", &format!("question {i}")),
                )
                .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        let model = body["model"].as_str().unwrap();
        assert!(
            ["cheap", "mid"].contains(&model),
            "{model} is above the ceiling"
        );
        assert_eq!(body["switchyard"]["rules"], json!(["free-tier"]), "{body}");
    }
    let pool = db(&env).await;
    // Answers are acknowledged once journaled; the log commits just after.
    let until = Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM decisions")
        .fetch_one(&pool)
        .await
        .unwrap()
        < 1001
    {
        assert!(Instant::now() < until, "the log did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, SUM(model = 'strong') AS strong, SUM(rules = '[\"free-tier\"]') AS ruled
         FROM decisions WHERE key_id IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (n, strong, ruled): (i64, i64, i64) = (row.get("n"), row.get("strong"), row.get("ruled"));
    assert_eq!((n, strong, ruled), (1001, 1, 1000));

    // A free key naming the expensive model is told which rule keeps it out.
    let (status, body) = chat(&env, Some(&free), ask("strong", "hello")).await;
    assert_eq!(status, 422, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("rule free-tier's ceiling"), "{msg}");

    // Profiles are virtual models: listed, and routed among their candidates.
    let models: Value = reqwest::Client::new()
        .get(common::http::url(&env, "/v1/models"))
        .bearer_auth(&pro)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let frugal = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "switchyard/frugal")
        .unwrap_or_else(|| panic!("{models}"));
    assert_eq!(frugal["switchyard"]["candidates"], json!(["cheap", "mid"]));
    let (status, body) = chat(&env, Some(&pro), ask("switchyard/frugal", "hello")).await;
    assert_eq!(
        (status, body["model"].as_str()),
        (200, Some("cheap")),
        "{body}"
    );
    assert_eq!(body["switchyard"]["profile"], "frugal", "{body}");
    let (status, body) = chat(&env, Some(&pro), ask("switchyard/nope", "hello")).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn language_and_intent_rules_route_their_prompts() {
    let env = env_with(
        r#"
[[routes]]
name = "german"
match = { language = ["deu"] }
then = { model = "mid" }

[[routes]]
name = "code"
match = { intent = ["code"], min_confidence = 0.5 }
then = { model = "cheap" }
"#,
        |_| {},
    )
    .await;
    let mut client = env.server.client().await;
    let cases = [
        (
            "Kannst du mir erklären, wie die Einkommensteuer in Deutschland berechnet wird?",
            "mid",
            "rule:german",
        ),
        (
            "Ich möchte eine Reise nach Berlin planen. Welche Sehenswürdigkeiten empfiehlst du?",
            "mid",
            "rule:german",
        ),
        (
            "Write a Python function that reverses a singly linked list in place.",
            "cheap",
            "rule:code",
        ),
        (
            "Fix this Rust compile error: borrowed value does not live long enough in my iterator.",
            "cheap",
            "rule:code",
        ),
        (
            "What is the capital of Australia and when was it founded?",
            "strong",
            "prior",
        ),
    ];
    for (text, model, by) in cases {
        let r = client.route(route_req(text)).await.unwrap().into_inner();
        assert_eq!(r.model, model, "{text}");
        assert!(
            r.policy_version.starts_with(by),
            "{text}: {}",
            r.policy_version
        );
        let rule: Vec<String> = by
            .strip_prefix("rule:")
            .map(str::to_owned)
            .into_iter()
            .collect();
        assert_eq!(
            r.rules, rule,
            "{text}: the Route names the rule that matched"
        );
        env.logged_decision(&r.decision_id).await;
        let pool = db(&env).await;
        let pinned: bool = sqlx::query_scalar("SELECT pinned FROM decisions WHERE id = ?")
            .bind(&r.decision_id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(pinned, by != "prior", "{text}");
    }
}

#[tokio::test]
async fn an_ab_split_measures_its_share_and_sticks_to_the_session() {
    let env = env_with(
        r#"
[[routes]]
name = "canary"
then = { split = { share = 0.2, model = "mid", sticky = "session" } }
"#,
        |_| {},
    )
    .await;
    let client = env.server.client().await;
    let mut arms: Vec<(usize, String, String)> = futures::stream::iter(0..2000)
        .map(|i| {
            let mut client = client.clone();
            async move {
                let mut req = route_req(&format!("question number {i}"));
                req.session_id = Some(format!("session-{i}"));
                let r = client.route(req).await.unwrap().into_inner();
                let ab = r.ab.clone().expect("every decision has an arm");
                assert_eq!(ab.arm == "variant", r.policy_version == "ab:canary");
                let p = if ab.arm == "variant" { 0.2 } else { 0.8 };
                assert!((ab.probability - p).abs() < 1e-12, "{ab:?}");
                (i, r.decision_id, r.policy_version)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    arms.sort();
    let variant = arms.iter().filter(|(_, _, v)| v == "ab:canary").count();
    let share = variant as f64 / 2000.0;
    assert!((0.17..=0.23).contains(&share), "variant share {share}");

    // Sticky: a session's next turns fall in the same arm.
    let pool = db(&env).await;
    let mut client = client.clone();
    for (i, first, _) in arms.iter().take(40) {
        let mut req = route_req(&format!("a follow-up {i}"));
        req.session_id = Some(format!("session-{i}"));
        let again = client.route(req).await.unwrap().into_inner();
        assert_eq!(
            arm_of(&pool, &again.decision_id).await,
            arm_of(&pool, first).await,
            "session-{i}"
        );
    }

    // Logged with each arm's probability; feedback gives the report rewards.
    let pool = db(&env).await;
    let probs: Vec<(String, f64, i64)> = sqlx::query_as(
        "SELECT ab_arm, ab_probability, COUNT(*) FROM decisions GROUP BY ab_arm, ab_probability ORDER BY ab_arm",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(probs.len(), 2, "{probs:?}");
    assert_eq!((probs[0].0.as_str(), probs[0].1), ("control", 0.8));
    assert_eq!((probs[1].0.as_str(), probs[1].1), ("variant", 0.2));
    let mut client = env.server.client().await;
    for (_, id, version) in arms.iter().take(200) {
        let reward = if version == "ab:canary" { 0.9 } else { 0.6 };
        client
            .feedback(switchyard::pb::FeedbackRequest {
                decision_id: id.clone(),
                reward,
                source: "test".into(),
            })
            .await
            .unwrap();
    }
    let table = cli(&env.server.db, &["report", "ab"]);
    let line = |arm: &str| {
        table
            .lines()
            .find(|l| l.starts_with("canary") && l.split_whitespace().nth(1) == Some(arm))
            .unwrap_or_else(|| panic!("no {arm} line in\n{table}"))
            .to_owned()
    };
    assert!(line("variant").contains("0.900 ± 0.000"), "{table}");
    assert!(line("control").contains("0.600 ± 0.000"), "{table}");
    assert!(line("variant").contains("mid:"), "{table}");
}

#[tokio::test]
async fn shadows_are_logged_apart_and_never_answer() {
    let env = env_with(
        r#"
[[models]]
name = "shadow"
provider = "mock"
upstream = "shadow+slow1500"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_window = 16000
prior_quality = 0.0

[[routes]]
name = "mirror"
then = { shadow = { share = 0.5, model = "shadow" } }
"#,
        |c| c.server.store_prompts = true,
    )
    .await;
    env.server.client().await;
    for i in 0..40 {
        let started = Instant::now();
        let (status, body) = chat(
            &env,
            None,
            ask("switchyard/auto", &format!("mirror me {i}")),
        )
        .await;
        // The shadow takes 1.5 s; the real answer does not wait for it.
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(status, 200, "{body}");
        let content = body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!content.contains("[shadow]"), "{content}");
    }
    let pool = db(&env).await;
    let until = Instant::now() + Duration::from_secs(10);
    let rows: Vec<(String, String, Option<String>, f64)> = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rows = sqlx::query_as(
            "SELECT decision_id, outcome, content, cost_usd FROM shadows ORDER BY started_at_ms",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let pending = env.mock.requests("shadow+slow1500").await as usize > rows.len();
        if !pending || Instant::now() > until {
            break rows;
        }
    };
    assert!(
        (8..=32).contains(&rows.len()),
        "{} shadows of 40",
        rows.len()
    );
    for (_, outcome, content, cost) in &rows {
        assert_eq!(outcome, "ok");
        assert!(content.as_deref().unwrap().starts_with("[shadow]"));
        assert!(*cost > 0.0);
    }
    // No shadow is an attempt of its decision; its spend is listed apart.
    let attempts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE model = 'shadow'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(attempts, 0);
    let metrics = reqwest::get(common::http::url(&env, "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!(
        "switchyard_shadow_calls_total{{model=\"shadow\",outcome=\"ok\"}} {}",
        rows.len()
    );
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    assert!(
        metrics.contains("switchyard_rule_matches_total{rule=\"mirror\",arm=\"\"} 40"),
        "{metrics}"
    );
    let spend = env.store().await.spend(0).await.unwrap();
    assert!(
        spend.iter().any(|r| r.shadow && r.model == "shadow"),
        "{spend:?}"
    );
    assert!(
        spend.iter().all(|r| r.shadow == (r.model == "shadow")),
        "{spend:?}"
    );
}

#[tokio::test]
async fn a_tenants_settings_hold_all_its_keys() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("switchyard.db");
    let (a1, a2) = (
        key(&db_path, "acme", "").await,
        key(&db_path, "acme", "").await,
    );
    let other = key(&db_path, "globex", "").await;
    cli(
        &db_path,
        &[
            "tenants", "set", "--tenant", "acme", "--tier", "free", "--rpm", "3",
        ],
    );
    let listed = cli(&db_path, &["tenants", "list"]);
    assert!(
        listed.contains("tenant:acme") && listed.contains("free"),
        "{listed}"
    );
    let mut config =
        Config::from_toml(&(mock_config_toml(&mock.base_url(), &db_path) + TEAM)).unwrap();
    config.auth.reload_interval = Duration::from_millis(100);
    let env = Env {
        server: Server::start(config).await,
        mock,
        dir,
    };
    env.server.client().await;

    // The tenant's tier is its keys' (they have none): the free ceiling holds.
    // Its rpm counts both keys together.
    for k in [&a1, &a2, &a1] {
        let (status, body) = chat(&env, Some(k), ask("switchyard/auto", "hello")).await;
        assert_eq!(status, 200, "{body}");
        assert_ne!(body["model"], "strong", "{body}");
    }
    let (status, body) = chat(&env, Some(&a2), ask("switchyard/auto", "hello")).await;
    assert_eq!(status, 429, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("the tenant acme"), "{msg}");
    let (status, body) = chat(&env, Some(&other), ask("switchyard/auto", "hello")).await;
    assert_eq!(
        (status, body["model"].as_str()),
        (200, Some("strong")),
        "{body}"
    );

    // Changed by the CLI while serving: a day budget its keys' spend so far
    // (theirs together) has passed, and a model list.
    cli(
        &env.server.db,
        &[
            "tenants",
            "set",
            "--tenant",
            "acme",
            "--rpm",
            "100000",
            "--budget-day-usd",
            "0.00004",
            "--models",
            "cheap,mid",
        ],
    );
    let until = Instant::now() + Duration::from_secs(10);
    let mut served = 0;
    let refusal = loop {
        let k = if served % 2 == 0 { &a1 } else { &a2 };
        let (status, body) = chat(&env, Some(k), ask("switchyard/auto", "hello")).await;
        match status {
            200 => served += 1,
            429 if body["error"]["code"] == "insufficient_quota" => break body,
            _ => {} // the old rpm until the change is read
        }
        assert!(Instant::now() < until, "never refused: {body}");
    };
    let msg = refusal["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("the tenant acme") && msg.contains("budget_day_usd"),
        "{msg}"
    );
    let (status, body) = chat(&env, Some(&a1), ask("strong", "hello")).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = chat(&env, Some(&other), ask("switchyard/auto", "hello")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_split_can_try_another_policy() {
    let env = env_with(
        r#"
[[routes]]
name = "policy-canary"
then = { split = { share = 0.5, policy = "prior", sticky = "session" } }
"#,
        |c| c.routing.policy = switchyard::config::PolicyKind::Bandit,
    )
    .await;
    let mut client = env.server.client().await;
    let mut ids = Vec::new();
    for i in 0..60 {
        let mut req = route_req(&format!("compare the policies {i}"));
        req.session_id = Some(format!("s-{i}"));
        let r = client.route(req).await.unwrap().into_inner();
        ids.push((r.decision_id, r.policy_version));
    }
    env.logged_decision(&ids[59].0).await;
    let pool = db(&env).await;
    let mut arms = std::collections::HashSet::new();
    for (id, version) in &ids {
        let (arm, pinned): (String, bool) =
            sqlx::query_as("SELECT ab_arm, pinned FROM decisions WHERE id = ?")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        // The variant arm is the prior's choice, the control the bandit's;
        // both are draws with exact propensities (not pinned).
        assert_eq!(arm == "variant", version == "prior-v1", "{arm} {version}");
        assert!(!pinned);
        arms.insert(arm);
    }
    assert_eq!(arms.len(), 2, "both arms in 60 sessions");
}

/// A trained policy tried in a split keeps the running policy's bound on
/// models it has little evidence of: one that never saw `strong` (declared
/// 0.9, above the 0.5 it learned of `cheap`) would send it nearly every
/// request; bounded, it sends it at most the default share, 0.2.
#[tokio::test]
async fn a_split_policy_bounds_the_models_it_has_no_evidence_of() {
    use switchyard::policy::bandit::{BanditParams, BanditState};
    use switchyard::policy::file::{ArmPrior, Layout, Params, PolicyFile, Source};

    let head = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/intent-head.json");
    let labels = switchyard::classify::IntentHead::load(&head)
        .unwrap()
        .labels()
        .len();
    let dim = switchyard::policy::features::dim(labels, 0);
    let mut state = BanditState::new(dim);
    let mut x = vec![0.0f32; dim];
    x[0] = 1.0;
    for _ in 0..100 {
        state.observe("cheap", &x, 0.5).unwrap();
    }
    let params = Params::from(BanditParams::default());
    let arms = vec![
        ArmPrior {
            name: "cheap".into(),
            prior_quality: 0.6,
        },
        ArmPrior {
            name: "strong".into(),
            prior_quality: 0.9,
        },
    ];
    let policy = PolicyFile::new(
        1,
        Source {
            database: "log.db".into(),
            since_ms: 0,
            trained_through_ms: 1,
            rows: 100,
            observations: 100,
        },
        Layout {
            dim,
            intent_labels: Vec::new(),
            quality_models: Vec::new(),
        },
        params,
        arms,
        state,
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variant");
    policy.save(&path).unwrap();
    let env = env_with(
        &format!(
            "[[routes]]\nname = \"trial\"\nthen = {{ split = {{ share = 1.0, policy = {:?} }} }}\n",
            path.to_str().unwrap()
        ),
        |c| c.routing.policy = switchyard::config::PolicyKind::Bandit,
    )
    .await;
    let mut client = env.server.client().await;
    for i in 0..10 {
        let mut req = route_req(&format!("which model answers this {i}"));
        req.candidates = vec!["cheap".into(), "strong".into()];
        req.cost_weight = Some(0.0);
        let r = client.route(req).await.unwrap().into_inner();
        let p = |m: &str| {
            r.candidates
                .iter()
                .find(|c| c.model == m)
                .unwrap()
                .probability
        };
        assert!(p("strong") > 0.0 && p("strong") <= 0.2 + 1e-9, "{r:?}");
        assert!(
            r.policy_version.contains("-new0.2x30"),
            "{}",
            r.policy_version
        );
    }
}
