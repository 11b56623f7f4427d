//! The gRPC contract end to end: the real server, a real SQLite file, the
//! real mock provider on loopback, and a client generated from the proto.

use crate::common;

use common::{Env, complete_req, route_req, user};
use switchyard::pb;
use tonic::Code;

#[tokio::test]
async fn route_explains_every_candidate_and_logs_the_decision() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let r = c
        .route(route_req("What is 2 + 2?"))
        .await
        .unwrap()
        .into_inner();

    assert!(uuid::Uuid::parse_str(&r.decision_id).is_ok());
    assert_eq!(r.candidates.len(), 9, "one candidate per catalog model");
    assert_eq!(r.propensity, 1.0);
    assert_eq!(r.policy_version, "prior-v1");
    assert_eq!(r.provider, "mock");
    assert_eq!(r.cost_weight, 10.0);
    assert!(r.prompt_tokens > 0);
    let chosen = r.candidates.iter().find(|c| c.model == r.model).unwrap();
    assert!(chosen.eligible && chosen.probability == 1.0);
    for cand in r.candidates.iter().filter(|c| c.eligible) {
        assert!(
            cand.score <= chosen.score,
            "{} beats the chosen model",
            cand.model
        );
        let expect = cand.expected_quality - 10.0 * cand.expected_cost_usd;
        assert!((cand.score - expect).abs() < 1e-12);
        assert!(cand.expected_cost_usd >= 0.0);
    }
    let locked = r.candidates.iter().find(|c| c.model == "locked").unwrap();
    assert!(!locked.eligible);
    assert!(
        locked
            .reason
            .contains("SWITCHYARD_TEST_KEY_THAT_IS_NEVER_SET"),
        "{}",
        locked.reason
    );

    let stored = env.server_store_decision(&r.decision_id).await;
    assert_eq!(stored, (r.model.clone(), "acme".to_owned(), 1.0));
}

#[tokio::test]
async fn cost_weight_moves_the_choice_and_constraints_are_hard() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let mut req = route_req("Prove that there are infinitely many primes.");
    req.cost_weight = Some(0.0);
    assert_eq!(
        c.route(req.clone()).await.unwrap().into_inner().model,
        "strong"
    );
    req.cost_weight = Some(1e6);
    let cheapest = c.route(req.clone()).await.unwrap().into_inner();
    // Free models are scripted failures but still eligible: the cheapest wins.
    let chosen = cheapest
        .candidates
        .iter()
        .find(|c| c.model == cheapest.model)
        .unwrap();
    assert_eq!(chosen.expected_cost_usd, 0.0);

    req.cost_weight = Some(0.0);
    req.candidates = vec!["cheap".into(), "mid".into()];
    let r = c.route(req.clone()).await.unwrap().into_inner();
    assert_eq!(r.model, "mid");
    let strong = r.candidates.iter().find(|c| c.model == "strong").unwrap();
    assert!(!strong.eligible && strong.reason.contains("candidates"));

    req.candidates = vec![];
    req.max_cost_usd = Some(0.0005);
    let r = c.route(req.clone()).await.unwrap().into_inner();
    let strong = r.candidates.iter().find(|c| c.model == "strong").unwrap();
    assert!(
        !strong.eligible && strong.reason.contains("max_cost_usd"),
        "{}",
        strong.reason
    );
    assert_ne!(r.model, "strong");

    // A prompt too long for every small context window.
    let mut long = route_req(&"word ".repeat(13_000));
    long.cost_weight = Some(1e6);
    let r = c.route(long).await.unwrap().into_inner();
    let cheap = r.candidates.iter().find(|c| c.model == "cheap").unwrap();
    assert!(
        !cheap.eligible && cheap.reason.contains("context window"),
        "{}",
        cheap.reason
    );
    assert!(["mid", "strong"].contains(&r.model.as_str()));
}

#[tokio::test]
async fn complete_calls_the_provider_and_logs_the_attempt() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let r = c
        .complete(complete_req("Say hello to Switchyard", Some("mid")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model, "mid");
    assert_eq!(r.content, "[mid-1] Say hello to Switchyard");
    assert_eq!(r.finish_reason, "stop");
    let u = r.usage.unwrap();
    assert!(u.prompt_tokens > 0 && u.completion_tokens > 0 && !u.estimated);
    let expect = (f64::from(u.prompt_tokens) * 1.0 + f64::from(u.completion_tokens) * 4.0) / 1e6;
    assert!((r.cost_usd - expect).abs() < 1e-15);
    assert_eq!(r.attempts.len(), 1);
    assert_eq!(r.attempts[0].outcome, "ok");
    assert_eq!(env.mock.requests("mid-1").await, 1);

    let d = env.logged_decision(&r.decision_id).await;
    assert_eq!(d.served_model.as_deref(), Some("mid"));
    assert_eq!(d.attempts, 1);
    assert_eq!(d.policy_version, "pinned");

    // Routed (not pinned) with a tiny cost weight picks the strong model.
    let mut req = complete_req("Hard question", None);
    req.route.as_mut().unwrap().cost_weight = Some(0.0);
    let r = c.complete(req).await.unwrap().into_inner();
    assert_eq!(r.model, "strong");
}

#[tokio::test]
async fn missing_usage_is_estimated_and_marked() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let r = c
        .complete(complete_req("count me", Some("nousage")))
        .await
        .unwrap()
        .into_inner();
    let u = r.usage.unwrap();
    assert!(u.estimated);
    assert!(r.cost_usd > 0.0);
}

#[tokio::test]
async fn provider_failures_map_to_clear_statuses_and_are_logged() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let e = c
        .complete(complete_req("hi", Some("broken")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("503"), "{}", e.message());

    let mut req = complete_req("hi", Some("hang"));
    req.deadline_ms = Some(300);
    let started = std::time::Instant::now();
    let e = c.complete(req).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));

    // Both failures are attempts in the log.
    let id = e
        .message()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':');
    let d = env.logged_decision(id).await;
    assert_eq!(d.attempts, 1);
    assert_eq!(d.served_model, None);
}

#[tokio::test]
async fn complete_stream_sends_start_deltas_and_end() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let mut s = c
        .complete_stream(complete_req("stream these words please", Some("cheap")))
        .await
        .unwrap()
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(ch) = s.message().await.unwrap() {
        chunks.push(ch);
    }
    assert!(chunks.len() >= 3);
    let first = &chunks[0];
    assert!(uuid::Uuid::parse_str(&first.decision_id).is_ok());
    assert_eq!(first.model, "cheap");
    let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(text, "[cheap-1] stream these words please");
    let last = chunks.last().unwrap();
    assert!(last.usage.is_some() && last.cost_usd > 0.0);
    assert_eq!(last.attempts.len(), 1);
    assert_eq!(last.attempts[0].outcome, "ok");
    assert_eq!(last.finish_reason, "stop");
    let d = env
        .store()
        .await
        .decision(&first.decision_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.served_model.as_deref(), Some("cheap"));
}

#[tokio::test]
async fn a_stream_cut_after_tokens_ends_with_an_error_not_silence() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let mut s = c
        .complete_stream(complete_req("one two three four five", Some("cut")))
        .await
        .unwrap()
        .into_inner();
    let mut deltas = 0;
    let err = loop {
        match s.message().await {
            Ok(Some(ch)) => deltas += usize::from(!ch.delta.is_empty()),
            Ok(None) => panic!("stream ended without an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(deltas, 2);
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("[DONE]"), "{}", err.message());

    // A failure before the first token is the RPC's own error.
    let e = c
        .complete_stream(complete_req("hi", Some("broken")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
}

#[tokio::test]
async fn feedback_is_idempotent_per_source() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let id = c
        .route(route_req("hi"))
        .await
        .unwrap()
        .into_inner()
        .decision_id;
    let fb = |reward: f64, source: &str| pb::FeedbackRequest {
        decision_id: id.clone(),
        reward,
        source: source.into(),
    };
    assert!(
        !c.feedback(fb(0.2, "thumbs"))
            .await
            .unwrap()
            .into_inner()
            .replaced
    );
    assert!(
        c.feedback(fb(0.9, "thumbs"))
            .await
            .unwrap()
            .into_inner()
            .replaced
    );
    assert!(
        !c.feedback(fb(1.0, "judge"))
            .await
            .unwrap()
            .into_inner()
            .replaced
    );
    assert!(!c.feedback(fb(0.5, "")).await.unwrap().into_inner().replaced);
    let rows = env.store().await.feedback(&id).await.unwrap();
    assert_eq!(
        rows,
        vec![
            ("default".into(), 0.5),
            ("judge".into(), 1.0),
            ("thumbs".into(), 0.9)
        ]
    );
}

#[tokio::test]
async fn bad_inputs_get_clear_codes_naming_the_field() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let code_of = |r: Result<tonic::Response<pb::RouteResponse>, tonic::Status>| {
        let e = r.unwrap_err();
        (e.code(), e.message().to_owned())
    };

    let (code, msg) = code_of(c.route(pb::RouteRequest::default()).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.starts_with("messages"), "{msg}");

    let mut r = route_req("hi");
    r.messages.push(pb::Message {
        role: "wizard".into(),
        content: "x".into(),
        ..Default::default()
    });
    let (code, msg) = code_of(c.route(r).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.starts_with("messages[1].role"), "{msg}");

    let mut r = route_req("hi");
    r.candidates = vec!["gpt-17".into()];
    let (code, msg) = code_of(c.route(r).await);
    assert_eq!(code, Code::NotFound);
    assert!(
        msg.contains("candidates") && msg.contains("gpt-17"),
        "{msg}"
    );

    for bad in [f64::NAN, -1.0, f64::INFINITY] {
        let mut r = route_req("hi");
        r.cost_weight = Some(bad);
        let (code, msg) = code_of(c.route(r).await);
        assert_eq!(code, Code::InvalidArgument);
        assert!(msg.starts_with("cost_weight"), "{msg}");
    }
    let mut r = route_req("hi");
    r.max_cost_usd = Some(f64::NAN);
    assert_eq!(code_of(c.route(r).await).0, Code::InvalidArgument);

    // Oversized: above max_prompt_bytes (64 KiB in the test config).
    let (code, msg) = code_of(c.route(route_req(&"x".repeat(70_000))).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("exceed"), "{msg}");

    // No model fits: every eligible one costs more than allowed.
    let mut r = route_req("hi");
    r.candidates = vec!["strong".into()];
    r.max_cost_usd = Some(1e-9);
    let (code, msg) = code_of(c.route(r).await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(msg.contains("max_cost_usd"), "{msg}");

    let e = c
        .complete(complete_req("hi", Some("nope")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().starts_with("model"), "{}", e.message());
    let e = c
        .complete(complete_req("hi", Some("locked")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let mut req = complete_req("hi", Some("cheap"));
    req.temperature = Some(f64::NAN);
    assert_eq!(
        c.complete(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut req = complete_req("hi", Some("cheap"));
    req.max_tokens = Some(0);
    let e = c.complete(req).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().starts_with("max_tokens"));
    let mut req = complete_req("hi", None);
    req.route = None;
    assert_eq!(
        c.complete(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let id = c
        .route(route_req("hi"))
        .await
        .unwrap()
        .into_inner()
        .decision_id;
    let fb = |decision_id: &str, reward: f64| pb::FeedbackRequest {
        decision_id: decision_id.into(),
        reward,
        source: "t".into(),
    };
    for bad in [f64::NAN, -0.01, 1.01, f64::INFINITY] {
        let e = c.feedback(fb(&id, bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("reward"), "{}", e.message());
    }
    let e = c.feedback(fb("not-a-uuid", 0.5)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("decision_id"));
    let e = c
        .feedback(fb(&uuid::Uuid::now_v7().to_string(), 0.5))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().starts_with("decision_id"));
    // After all that, the server still serves.
    c.route(route_req("still alive?")).await.unwrap();
}

#[tokio::test]
async fn list_models_shows_prices_limits_and_availability() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let models = c
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(models.len(), 9);
    let strong = models.iter().find(|m| m.name == "strong").unwrap();
    assert_eq!(
        (strong.input_usd_per_mtok, strong.output_usd_per_mtok),
        (10.0, 40.0)
    );
    assert_eq!(strong.context_window, 200_000);
    assert!(strong.available);
    assert!(
        !models
            .iter()
            .find(|m| m.name == "locked")
            .unwrap()
            .available
    );
}

#[tokio::test]
async fn decisions_and_feedback_survive_a_restart() {
    let mock = common::Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(Env::config_for(&mock, &dir)).await;
    let mut c = server.client().await;
    let id = c
        .route(route_req("remember me"))
        .await
        .unwrap()
        .into_inner()
        .decision_id;
    c.feedback(pb::FeedbackRequest {
        decision_id: id.clone(),
        reward: 0.7,
        source: "s".into(),
    })
    .await
    .unwrap();
    drop(c);
    server.stop().await;

    let server = common::Server::start(Env::config_for(&mock, &dir)).await;
    let mut c = server.client().await;
    // Feedback on the old decision still finds it, and replaces the old value.
    let r = c
        .feedback(pb::FeedbackRequest {
            decision_id: id.clone(),
            reward: 0.8,
            source: "s".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.replaced);
    let _ = user("x");
    server.stop().await;
}

#[tokio::test]
async fn expected_output_tokens_are_learned_per_model() {
    let env = Env::start().await;
    let mut c = env.server.client().await;
    let cost_of = |r: &pb::RouteResponse, m: &str| {
        r.candidates
            .iter()
            .find(|c| c.model == m)
            .unwrap()
            .expected_cost_usd
    };
    let before = c.route(route_req("hello")).await.unwrap().into_inner();
    // The mock answers briefly (an echo): far fewer tokens than the default 256.
    for _ in 0..5 {
        c.complete(complete_req("hello", Some("mid")))
            .await
            .unwrap();
    }
    let after = c.route(route_req("hello")).await.unwrap().into_inner();
    assert!(
        cost_of(&after, "mid") < cost_of(&before, "mid") / 5.0,
        "mid's estimate did not learn"
    );
    assert_eq!(
        cost_of(&after, "strong"),
        cost_of(&before, "strong"),
        "other models keep the default"
    );
}
