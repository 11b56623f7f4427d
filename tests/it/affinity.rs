//! Conversation affinity and ordered candidates over the HTTP front: the
//! turns of a conversation with a session id stay on one model (logged as
//! affinity decisions, propensity 1), turns without one are routed afresh
//! (unless affinity is derived from the first messages), and OpenRouter's
//! `models` list is the candidates and the fallback order.

use crate::common;

use common::Env;
use common::http::url;
use serde_json::{Value, json};
use switchyard::config::{Affinity, Config, PolicyKind};

/// The bandit over three equally good models at no cost weight, so every
/// fresh decision is a real draw among them.
fn exploring(c: &mut Config) {
    c.routing.policy = PolicyKind::Bandit;
    c.routing.cost_weight = 0.0;
    for m in c.models.iter_mut() {
        m.prior_quality = 0.75;
    }
}

async fn turn(env: &Env, session: Option<&str>, messages: &[Value]) -> (String, String) {
    let mut req = reqwest::Client::new()
        .post(url(env, "/v1/chat/completions"))
        .json(&json!({
            "model": "switchyard/auto", "messages": messages, "max_tokens": 16,
            "switchyard": {"candidates": ["cheap", "mid", "strong"]}
        }));
    if let Some(s) = session {
        req = req.header("x-session-id", s);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    (
        v["model"].as_str().unwrap().to_owned(),
        v["switchyard"]["decision_id"].as_str().unwrap().to_owned(),
    )
}

/// The models a conversation of five turns was answered by, with its
/// decision ids.
async fn conversation(env: &Env, session: Option<&str>, topic: &str) -> Vec<(String, String)> {
    let mut messages = vec![json!({"role": "user", "content": format!("Tell me about {topic}.")})];
    let mut out = Vec::new();
    for i in 0..5 {
        let (model, id) = turn(env, session, &messages).await;
        messages.push(json!({"role": "assistant", "content": format!("answer {i}")}));
        messages.push(json!({"role": "user", "content": format!("And then ({i})?")}));
        out.push((model, id));
    }
    out
}

fn models(turns: &[(String, String)]) -> Vec<&str> {
    turns.iter().map(|(m, _)| m.as_str()).collect()
}

#[tokio::test]
async fn a_session_stays_on_one_model_and_without_one_turns_move() {
    let env = Env::start_with(exploring).await;
    for s in 0..4 {
        let turns = conversation(&env, Some(&format!("session-{s}")), "rail yards").await;
        let m = models(&turns);
        assert!(m.iter().all(|x| *x == m[0]), "session {s}: {m:?}");
        // The first turn was the policy's draw; the rest kept its model, and
        // are logged as such (propensity 1, left out of off-policy evaluation).
        let first = env.logged_decision(&turns[0].1).await;
        assert_ne!(first.policy_version, "affinity");
        for (_, id) in &turns[1..] {
            let d = env.logged_decision(id).await;
            assert_eq!((d.policy_version.as_str(), d.propensity), ("affinity", 1.0));
        }
    }
    // Without a session id every turn is drawn afresh: over four
    // conversations of five turns among three equal models, some move.
    let mut moved = 0;
    for s in 0..4 {
        let turns = conversation(&env, None, "rail yards").await;
        let m = models(&turns);
        moved += usize::from(m.iter().any(|x| *x != m[0]));
        for (_, id) in &turns {
            assert_ne!(
                env.logged_decision(id).await.policy_version,
                "affinity",
                "{s}"
            );
        }
    }
    assert!(moved > 0, "no conversation without a session id moved");
}

#[tokio::test]
async fn derived_affinity_keys_a_conversation_by_its_first_messages() {
    let env = Env::start_with(|c| {
        exploring(c);
        c.routing.affinity = Affinity::Derived;
    })
    .await;
    for topic in ["signals", "switches", "sidings"] {
        let turns = conversation(&env, None, topic).await;
        let m = models(&turns);
        assert!(m.iter().all(|x| *x == m[0]), "{topic}: {m:?}");
    }
}

#[tokio::test]
async fn openrouter_models_are_the_candidates_and_the_fallback_order() {
    let env = Env::start().await;
    // A pinned model that fails falls back along the list, in its order.
    let resp = common::http::post(
        &env,
        "/v1/chat/completions",
        json!({"model": "broken", "models": ["broken", "mid", "cheap"],
               "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "mid", "{v}");
    let tried: Vec<&str> = v["switchyard"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["model"].as_str().unwrap())
        .collect();
    assert_eq!(tried.last(), Some(&"mid"));
    assert!(
        tried[..tried.len() - 1].iter().all(|m| *m == "broken"),
        "{tried:?}"
    );
    let error = v["switchyard"]["attempts"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("server_fault: "), "{error}");

    // With the router choosing, only listed models are candidates.
    for _ in 0..5 {
        let resp = common::http::post(
            &env,
            "/v1/chat/completions",
            json!({"model": "switchyard/auto", "models": ["cheap", "mid"],
                   "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}),
        )
        .await;
        let v: Value = resp.json().await.unwrap();
        assert!(
            ["cheap", "mid"].contains(&v["model"].as_str().unwrap()),
            "{v}"
        );
    }
    let resp = common::http::post(
        &env,
        "/v1/chat/completions",
        json!({"model": "switchyard/auto", "models": [], "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(
        common::http::error(resp, 400, "invalid_value").await["error"]["param"],
        "models"
    );
}
