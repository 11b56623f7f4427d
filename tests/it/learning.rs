//! The bandit in the service: feedback changes later decisions, propensities
//! are a distribution with an exploration floor, learning survives a restart,
//! and on real routing outcomes it beats uniform random.

use crate::common;

use common::{Env, route_req};
use switchyard::config::{Config, PolicyKind};
use switchyard::pb;

fn bandit(c: &mut Config) {
    c.routing.policy = PolicyKind::Bandit;
}

async fn feedback(c: &mut common::Client, id: &str, reward: f64) {
    c.feedback(pb::FeedbackRequest {
        decision_id: id.into(),
        reward,
        source: "test".into(),
    })
    .await
    .unwrap();
}

fn two_models(text: &str) -> pb::RouteRequest {
    let mut r = route_req(text);
    r.candidates = vec!["cheap".into(), "strong".into()];
    r.cost_weight = Some(0.0);
    r
}

#[tokio::test]
async fn propensities_form_a_distribution_with_a_floor() {
    let env = Env::start_with(bandit).await;
    let mut c = env.server.client().await;
    let r = c
        .route(two_models("What is the capital of France?"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.policy_version.starts_with("ts-v1-"),
        "{}",
        r.policy_version
    );
    let eligible: Vec<_> = r.candidates.iter().filter(|c| c.eligible).collect();
    assert_eq!(eligible.len(), 2);
    let total: f64 = eligible.iter().map(|c| c.probability).sum();
    assert!((total - 1.0).abs() < 1e-9);
    for e in &eligible {
        assert!(
            e.probability >= 0.05 / 2.0 - 1e-12,
            "floor: {}",
            e.probability
        );
        assert!(e.quality_std > 0.0);
    }
    let chosen = r.candidates.iter().find(|c| c.model == r.model).unwrap();
    assert_eq!(r.propensity, chosen.probability);
    assert!(
        r.candidates
            .iter()
            .filter(|c| !c.eligible)
            .all(|c| c.probability == 0.0)
    );
}

#[tokio::test]
async fn feedback_changes_later_decisions_and_survives_restart() {
    let mock = common::Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Env::config_for(&mock, &dir);
    bandit(&mut config);
    let server = common::Server::start(config.clone()).await;
    let mut c = server.client().await;

    let prompt = "Translate 'good morning' into Spanish.";
    let first = c.route(two_models(prompt)).await.unwrap().into_inner();
    // Before any feedback the prior (strong 0.9 vs cheap 0.6) favours strong.
    let p_strong = |r: &pb::RouteResponse| {
        r.candidates
            .iter()
            .find(|c| c.model == "strong")
            .unwrap()
            .probability
    };
    assert!(p_strong(&first) > 0.5, "{}", p_strong(&first));

    // Here the cheap model is the one that answers well.
    for _ in 0..80 {
        let r = c.route(two_models(prompt)).await.unwrap().into_inner();
        let reward = if r.model == "cheap" { 1.0 } else { 0.0 };
        feedback(&mut c, &r.decision_id, reward).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await; // learner applies off-path
    let after = c.route(two_models(prompt)).await.unwrap().into_inner();
    assert!(
        p_strong(&after) < 0.2,
        "strong still at {}",
        p_strong(&after)
    );
    let q = |r: &pb::RouteResponse, m: &str| {
        r.candidates
            .iter()
            .find(|c| c.model == m)
            .unwrap()
            .expected_quality
    };
    assert!(q(&after, "cheap") > 0.8 && q(&after, "strong") < 0.3);

    // The serving version and its parameters are in the log.
    let store = switchyard::store::Store::open(&dir.path().join("switchyard.db"), &config.store)
        .await
        .unwrap()
        .0;
    let (version, params) = store
        .active_policy()
        .await
        .unwrap()
        .expect("a serving version");
    assert!(
        version.starts_with("ts-v1-") && version.contains("obs-"),
        "{version}"
    );
    let params: serde_json::Value = serde_json::from_str(&params).unwrap();
    assert_eq!(params["explore_floor"], 0.05);
    assert!(params["state"]["arms"]["cheap"].is_object());

    drop(c);
    server.stop().await;
    let server = common::Server::start(config).await;
    let mut c = server.client().await;
    let restarted = c.route(two_models(prompt)).await.unwrap().into_inner();
    for m in ["cheap", "strong"] {
        assert!(
            (q(&after, m) - q(&restarted, m)).abs() < 1e-6,
            "{m} changed across restart"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_replaced_reward_is_not_counted_twice() {
    let env = Env::start_with(bandit).await;
    let mut c = env.server.client().await;
    let mut pinned = two_models("Name three prime numbers.");
    pinned.candidates = vec!["cheap".into()];
    let r = c.route(pinned.clone()).await.unwrap().into_inner();
    // Many replacements of one (decision, source) pair move cheap's estimate
    // exactly as one observation of the final value would.
    for reward in [0.0, 1.0, 0.0, 1.0, 0.0] {
        feedback(&mut c, &r.decision_id, reward).await;
    }
    let r2 = c.route(pinned.clone()).await.unwrap().into_inner();
    feedback(&mut c, &r2.decision_id, 0.0).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let live = c.route(pinned).await.unwrap().into_inner().candidates[0].expected_quality;

    // A fresh server over the same log rebuilds from the log's final values.
    let store = env.store().await;
    let obs = store.observations().await.unwrap();
    assert_eq!(obs.len(), 2, "one observation per (decision, source)");
    assert!(obs.iter().all(|o| o.reward == 0.0));
    assert!(
        live < 0.6,
        "two zero rewards must pull cheap below its prior: {live}"
    );
}

/// The request's shape is part of the context: the same question asked in
/// a conversation that holds tool traffic and as plain chat, with the cheap
/// model good at the first and the strong one at the second, is learnt
/// apart (with the context of length and intents alone, the two would be
/// one and the same prompt to the bandit).
#[tokio::test]
async fn the_bandit_learns_apart_for_tool_traffic_and_plain_chat() {
    let env = Env::start_with(|c| {
        bandit(c);
        for m in c.models.iter_mut() {
            m.capabilities.push(switchyard::config::Capability::Tools);
        }
    })
    .await;
    let mut c = env.server.client().await;
    let prompt = "What's the weather in Lisbon right now?";
    let with_tools = || {
        let mut r = two_models(prompt);
        r.messages.push(pb::Message {
            role: "assistant".into(),
            tool_calls: vec![pb::ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: r#"{"city": "Lisbon"}"#.into(),
            }],
            ..Default::default()
        });
        r.messages.push(pb::Message {
            role: "tool".into(),
            content: r#"{"temp_c": 19}"#.into(),
            tool_call_id: Some("call_1".into()),
            ..Default::default()
        });
        r
    };
    for i in 0..160 {
        let tools = i % 2 == 0;
        let req = if tools {
            with_tools()
        } else {
            two_models(prompt)
        };
        let r = c.route(req).await.unwrap().into_inner();
        let good = if tools { "cheap" } else { "strong" };
        feedback(&mut c, &r.decision_id, f64::from(u8::from(r.model == good))).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // learner applies off-path
    let p = |r: &pb::RouteResponse, m: &str| {
        r.candidates
            .iter()
            .find(|c| c.model == m)
            .unwrap()
            .probability
    };
    let tools = c.route(with_tools()).await.unwrap().into_inner();
    let plain = c.route(two_models(prompt)).await.unwrap().into_inner();
    assert!(
        p(&tools, "cheap") > 0.7,
        "tools: cheap at {}",
        p(&tools, "cheap")
    );
    assert!(
        p(&plain, "strong") > 0.7,
        "plain: strong at {}",
        p(&plain, "strong")
    );
}
