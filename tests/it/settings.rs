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

    // reasoning_effort: only the OpenAI protocol carries it so far.
    let mut req = complete_req("Think first.", None);
    req.reasoning_effort = Some("high".into());
    req.route.as_mut().unwrap().candidates = vec!["claude".into(), "gem".into(), "gpt".into()];
    let r = c.complete(req).await.unwrap().into_inner();
    assert_eq!(r.model, "gpt");
    assert_eq!(mock.last_body().await["reasoning_effort"], "high");

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
