//! Cost from real usage with the catalog's cache prices: an Anthropic model
//! that reads and writes its prompt cache (the mock reports both) is
//! charged each part at its own price, through gRPC and both HTTP fronts,
//! and the Anthropic front reports the parts as Anthropic does.

use crate::common;

use serde_json::{Value, json};

async fn start() -> (
    common::Mock,
    common::Server,
    tempfile::TempDir,
    common::Client,
) {
    common::protocols_server(
        "",
        &[("claude", "an", "claude+cached40+cachewrite20", 0.9)],
        "",
        |config| {
            let m = &mut config.models[0];
            (m.input_usd_per_mtok, m.output_usd_per_mtok) = (3.0, 15.0);
            (m.cache_read_usd_per_mtok, m.cache_write_usd_per_mtok) = (0.3, 3.75);
        },
    )
    .await
}

/// The list-price cost of a call with this usage.
fn priced(prompt: u64, completion: u64) -> f64 {
    ((prompt - 60) as f64 * 3.0 + 40.0 * 0.3 + 20.0 * 3.75 + completion as f64 * 15.0) / 1e6
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test]
async fn cache_reads_and_writes_are_priced_apart_on_every_front() {
    let (_mock, server, _dir, mut c) = start().await;
    let prompt = "Summarise the rail yard's shunting rules. ".repeat(10);

    let r = c
        .complete(common::complete_req(&prompt, Some("claude")))
        .await
        .unwrap()
        .into_inner();
    let u = r.usage.unwrap();
    assert_eq!((u.cached_tokens, u.cache_write_tokens), (40, 20));
    let want = priced(u.prompt_tokens.into(), u.completion_tokens.into());
    assert!(close(r.cost_usd, want), "{} vs {want}", r.cost_usd);

    let body = json!({"model": "claude", "max_tokens": 64,
                      "messages": [{"role": "user", "content": prompt}]});
    let post = |path: &'static str| {
        let request = reqwest::Client::new()
            .post(format!("http://{}{path}", server.http_addr))
            .json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let messages = post("/v1/messages").await;
    let u = &messages["usage"];
    assert_eq!(
        u["input_tokens"].as_u64(),
        Some(u64::from(r.usage.unwrap().prompt_tokens) - 60),
        "{messages}"
    );
    assert_eq!(
        (
            u["cache_read_input_tokens"].as_u64(),
            u["cache_creation_input_tokens"].as_u64()
        ),
        (Some(40), Some(20))
    );
    let prompt_tokens = u["input_tokens"].as_u64().unwrap() + 60;
    let want = priced(prompt_tokens, u["output_tokens"].as_u64().unwrap());
    assert!(
        close(messages["switchyard"]["cost_usd"].as_f64().unwrap(), want),
        "{messages}"
    );

    let chat = post("/v1/chat/completions").await;
    assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 40);
    let want = priced(
        chat["usage"]["prompt_tokens"].as_u64().unwrap(),
        chat["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert!(
        close(chat["switchyard"]["cost_usd"].as_f64().unwrap(), want),
        "{chat}"
    );
}
