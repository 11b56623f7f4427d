//! Generation settings past temperature (`top_p`, `seed`, penalties,
//! `reasoning_effort`) through the real server over the mock's three
//! protocols: a model whose protocol has no field for a setting is skipped by
//! routing, refused by name when pinned, and never sent the setting.

use crate::common;

use common::{Client, Mock, Server, complete_req};
use switchyard::pb;
use tonic::Code;

async fn start() -> (Mock, Server, tempfile::TempDir, Client) {
    common::protocols_server(
        "[routing]\ncost_weight = 0.0\npolicy = \"prior\"\n",
        &[
            // The Anthropic model ranks first, so only a setting moves a choice off it.
            ("claude", "an", "claude", 0.9),
            ("gpt", "oa", "gpt", 0.8),
            ("gem", "ge", "gem", 0.7),
        ],
        "",
        |_| {},
    )
    .await
}

fn seeded(model: Option<&str>) -> pb::CompleteRequest {
    pb::CompleteRequest {
        seed: Some(42),
        ..complete_req("Pick a number.", model)
    }
}

#[tokio::test]
async fn routing_skips_models_whose_protocol_lacks_a_setting() {
    let (mock, _server, _dir, mut c) = start().await;
    let plain = c
        .complete(complete_req("Pick a number.", None))
        .await
        .unwrap();
    assert_eq!(plain.into_inner().model, "claude");

    let r = c.complete(seeded(None)).await.unwrap().into_inner();
    assert_eq!(r.model, "gpt");
    assert_eq!(mock.last_body().await["seed"], 42);

    // Gemini takes seed and penalties in generationConfig.
    let mut req = seeded(None);
    req.presence_penalty = Some(0.5);
    req.route.as_mut().unwrap().candidates = vec!["claude".into(), "gem".into()];
    let r = c.complete(req).await.unwrap().into_inner();
    assert_eq!(r.model, "gem");
    let b = mock.last_body().await;
    assert_eq!(b["generationConfig"]["seed"], 42);
    assert_eq!(b["generationConfig"]["presencePenalty"], 0.5);
}

/// Reasoning through each protocol: OpenAI's effort as is, Anthropic's
/// thinking budget and Gemini's thinkingBudget from the effort's table (and
/// a budget back to the nearest effort); only models the catalog declares
/// `reasoning` for are sent it.
#[tokio::test]
async fn reasoning_translates_to_each_protocol_and_needs_the_capability() {
    let (mock, _server, _dir, mut c) = common::protocols_server(
        "[routing]\ncost_weight = 0.0\npolicy = \"prior\"\n",
        &[
            ("plain", "oa", "plain", 0.95),
            ("claude", "an", "claude", 0.9),
            ("gpt", "oa", "gpt", 0.8),
            ("gem", "ge", "gem", 0.7),
        ],
        "",
        |config| {
            for m in config.models.iter_mut().filter(|m| m.name != "plain") {
                m.capabilities
                    .push(switchyard::config::Capability::Reasoning);
            }
        },
    )
    .await;
    let think =
        |model: Option<&str>, effort: Option<&str>, budget: Option<u32>| pb::CompleteRequest {
            reasoning_effort: effort.map(str::to_owned),
            reasoning_budget_tokens: budget,
            ..complete_req("Think first.", model)
        };
    // The prior's favourite does not declare reasoning: routing skips it.
    // Without a limit of the caller's, the answer keeps its default room.
    let unlimited = pb::CompleteRequest {
        max_tokens: None,
        ..think(None, Some("high"), None)
    };
    let r = c.complete(unlimited).await.unwrap();
    assert_eq!(r.into_inner().model, "claude");
    let b = mock.last_body().await;
    assert_eq!(
        b["thinking"],
        serde_json::json!({"type": "enabled", "budget_tokens": 24576})
    );
    assert_eq!(b["max_tokens"], 4096 + 24576);
    // Under the caller's limit, an effort's budget is cut to leave room.
    let limited = pb::CompleteRequest {
        max_tokens: Some(3000),
        ..think(Some("claude"), Some("high"), None)
    };
    c.complete(limited).await.unwrap();
    let b = mock.last_body().await;
    assert_eq!(
        (
            b["thinking"]["budget_tokens"].as_u64(),
            b["max_tokens"].as_u64()
        ),
        (Some(2999), Some(3000))
    );

    c.complete(think(Some("gem"), Some("low"), None))
        .await
        .unwrap();
    let b = mock.last_body().await;
    assert_eq!(
        b["generationConfig"]["thinkingConfig"]["thinkingBudget"],
        2048
    );

    c.complete(think(Some("gpt"), None, Some(9000)))
        .await
        .unwrap();
    assert_eq!(mock.last_body().await["reasoning_effort"], "medium");

    let e = c
        .complete(think(Some("plain"), Some("low"), None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("reasoning"), "{}", e.message());

    // top_k: Anthropic and Gemini take it, Chat Completions has no such field.
    let req = pb::CompleteRequest {
        top_k: Some(5),
        ..complete_req("x", Some("gpt"))
    };
    let e = c.complete(req).await.unwrap_err();
    assert!(e.message().contains("top_k"), "{}", e.message());
    let req = pb::CompleteRequest {
        top_k: Some(5),
        ..complete_req("x", None)
    };
    assert_eq!(c.complete(req).await.unwrap().into_inner().model, "claude");
    assert_eq!(mock.last_body().await["top_k"], 5);
}

#[tokio::test]
async fn no_model_that_can_take_the_setting_says_which_setting() {
    let (_mock, _server, _dir, mut c) = start().await;
    let mut req = seeded(None);
    req.route.as_mut().unwrap().candidates = vec!["claude".into()];
    let e = c.complete(req).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("`seed`"), "{}", e.message());
}

#[tokio::test]
async fn a_pinned_model_that_cannot_take_a_setting_is_a_400_naming_both() {
    let (mock, _server, _dir, mut c) = start().await;
    let before = mock.last_body().await;
    let e = c.complete(seeded(Some("claude"))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("seed") && e.message().contains("claude"),
        "{}",
        e.message()
    );
    // Nothing was sent.
    assert_eq!(mock.last_body().await, before);

    for (field, req) in [
        (
            "top_p",
            pb::CompleteRequest {
                top_p: Some(1.5),
                ..complete_req("x", Some("gpt"))
            },
        ),
        (
            "frequency_penalty",
            pb::CompleteRequest {
                frequency_penalty: Some(f64::NAN),
                ..complete_req("x", Some("gpt"))
            },
        ),
        (
            "reasoning_effort",
            pb::CompleteRequest {
                reasoning_effort: Some("max".into()),
                ..complete_req("x", Some("gpt"))
            },
        ),
    ] {
        let e = c.complete(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
}
