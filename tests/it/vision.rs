//! Images in user turns through all three protocols: each adapter against
//! the real mock on loopback (the image reaches it in the protocol's shape),
//! and routing that sends images only to models the catalog declares
//! `vision` for, and images by URL only to protocols that take URLs.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Mock, Server};
use serde_json::json;
use switchyard::config::ProviderKind;
use switchyard::dispatch::{ChatMessage, ChatRequest, Dispatcher, Part};
use switchyard::pb;
use tonic::Code;

/// A 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn data_url() -> String {
    format!("data:image/png;base64,{PNG}")
}

fn looking(url: &str) -> ChatRequest {
    let parts = vec![
        Part::Text("what is this?".into()),
        Part::Image {
            url: url.into(),
            detail: Some("low".into()),
        },
    ];
    let (content, parts) = switchyard::dispatch::from_parts(parts);
    ChatRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content,
            parts,
            ..ChatMessage::default()
        }],
        max_tokens: Some(64),
        ..ChatRequest::default()
    }
}

#[tokio::test]
async fn an_image_reaches_each_protocol_in_its_shape() {
    let mock = Mock::start().await;
    let d = Dispatcher::new(reqwest::Client::new());
    let timeout = Duration::from_secs(5);
    for kind in common::KINDS {
        let p = mock.provider(kind);
        let r = d.complete(&p, "m", &looking(&data_url()), timeout).await;
        assert_eq!(
            r.unwrap().content,
            "[m] what is this? [1 image(s)]",
            "{kind:?}"
        );
        let b = mock.last_body().await;
        match kind {
            ProviderKind::OpenAi => assert_eq!(
                b["messages"][0]["content"],
                json!([{"type": "text", "text": "what is this?"},
                       {"type": "image_url", "image_url": {"url": data_url(), "detail": "low"}}])
            ),
            ProviderKind::Anthropic => assert_eq!(
                b["messages"][0]["content"],
                json!([{"type": "text", "text": "what is this?"},
                       {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                     "data": PNG}}])
            ),
            ProviderKind::Gemini => assert_eq!(
                b["contents"][0]["parts"],
                json!([{"text": "what is this?"},
                       {"inlineData": {"mimeType": "image/png", "data": PNG}}])
            ),
        }
    }
    // By URL: OpenAI forwards it, Anthropic takes it as a url source.
    let url = "https://example.com/cat.png";
    for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
        let p = mock.provider(kind);
        d.complete(&p, "m", &looking(url), timeout).await.unwrap();
        let b = mock.last_body().await;
        let part = &b["messages"][0]["content"][1];
        match kind {
            ProviderKind::OpenAi => assert_eq!(part["image_url"]["url"], url),
            _ => assert_eq!(part["source"], json!({"type": "url", "url": url})),
        }
    }
}

async fn vision_server() -> (Mock, Server, tempfile::TempDir, common::Client) {
    common::protocols_server(
        "[routing]\ncost_weight = 0.0\npolicy = \"bandit\"\n[bandit]\nexplore_floor = 0.9\n",
        &[
            ("blind", "oa", "blind", 0.9),
            ("claude", "an", "claude", 0.6),
            // `tail` lands on the last model: Gemini sees too.
            ("gem", "ge", "gem", 0.5),
        ],
        "capabilities = [\"vision\"]\n",
        // Claude sees as well.
        |config| {
            let claude = config.models.iter_mut().find(|m| m.name == "claude");
            claude.unwrap().capabilities = vec![switchyard::config::Capability::Vision];
        },
    )
    .await
}

fn image_route(url: &str) -> pb::RouteRequest {
    let mut r = common::route_req("");
    r.messages[0].parts = vec![
        pb::ContentPart {
            part: Some(pb::content_part::Part::Text("what is this?".into())),
        },
        pb::ContentPart {
            part: Some(pb::content_part::Part::ImageUrl(pb::ImageUrl {
                url: url.into(),
                detail: None,
            })),
        },
    ];
    r
}

#[tokio::test]
async fn images_go_only_to_models_that_see_and_urls_only_where_they_are_taken() {
    let (_mock, server, _dir, mut c) = vision_server().await;
    // Exploring widely, plain text reaches every model, the blind one too.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..60 {
        let r = c
            .route(common::route_req("hello"))
            .await
            .unwrap()
            .into_inner();
        *seen.entry(r.model).or_default() += 1;
    }
    assert!(seen.contains_key("blind"), "{seen:?}");
    // 200 requests with an image: never the blind model, both seeing ones.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..200 {
        let r = c
            .route(image_route(&data_url()))
            .await
            .unwrap()
            .into_inner();
        *seen.entry(r.model).or_default() += 1;
    }
    assert_eq!(seen.get("blind"), None, "{seen:?}");
    assert!(
        seen.contains_key("claude") && seen.contains_key("gem"),
        "{seen:?}"
    );
    // An image by URL: not for Gemini, which takes images inline only.
    let r = c
        .route(image_route("https://example.com/cat.png"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model, "claude");
    let gem = r.candidates.iter().find(|x| x.model == "gem").unwrap();
    assert!(gem.reason.contains("inline only"), "{}", gem.reason);
    let blind = r.candidates.iter().find(|x| x.model == "blind").unwrap();
    assert!(blind.reason.contains("`vision`"), "{}", blind.reason);
    // Pinned to the blind model: refused, naming the messages and the model.
    let req = pb::CompleteRequest {
        route: Some(image_route(&data_url())),
        model: Some("blind".into()),
        ..Default::default()
    };
    let e = c.complete(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("messages:") && e.message().contains("blind"),
        "{}",
        e.message()
    );
    // A served image answer says the model saw it.
    let req = pb::CompleteRequest {
        route: Some(image_route(&data_url())),
        model: Some("gem".into()),
        ..Default::default()
    };
    let r = c.complete(req).await.unwrap().into_inner();
    assert_eq!(r.content, "[gem] what is this? [1 image(s)]");
    // A bad image URL is the request's fault.
    let e = c.route(image_route("ftp://x/y.png")).await.unwrap_err();
    assert!(
        e.message()
            .starts_with("messages[0].content[1].image_url.url"),
        "{}",
        e.message()
    );
    server.stop().await;
}
