//! One conformance suite for every wire protocol: each adapter against the
//! real mock provider on loopback speaking that protocol. Success (with the
//! request translation checked on the wire), streaming, 4xx (not
//! retryable), 429 with Retry-After, 5xx, connection reset, hang, truncated
//! and malformed bodies, mid-stream failure, usage and cached tokens.

use crate::common;

use std::time::{Duration, Instant};

use common::{KINDS, Mock};
use futures::StreamExt;
use switchyard::catalog::Provider;
use switchyard::config::ProviderKind;
use switchyard::dispatch::{
    ChatMessage, ChatRequest, DispatchError, Dispatcher, Sampling, StreamEvent, Usage,
};

/// Short: the hang case waits this long.
const TIMEOUT: Duration = Duration::from_millis(400);

fn request() -> ChatRequest {
    let msg = ChatMessage::text;
    ChatRequest {
        messages: vec![
            msg("system", "be brief"),
            msg("user", "first"),
            msg("assistant", "ok"),
            msg("user", "hello there world"),
        ],
        max_tokens: Some(64),
        temperature: Some(0.5),
        stop: vec!["END".into()],
        ..ChatRequest::default()
    }
}

async fn complete(
    d: &Dispatcher,
    p: &Provider,
    model: &str,
) -> Result<switchyard::dispatch::ChatResponse, DispatchError> {
    d.complete(p, model, &request(), TIMEOUT).await
}

fn status(e: &DispatchError) -> Option<u16> {
    e.http_status()
}

#[tokio::test]
async fn success_translates_the_request_and_normalises_the_answer() {
    let mock = Mock::start().await;
    let d = Dispatcher::new(reqwest::Client::new());
    for kind in KINDS {
        let p = mock.provider(kind);
        let r = complete(&d, &p, "m1+cached3").await.unwrap();
        assert_eq!(r.content, "[m1] hello there world", "{kind:?}");
        assert_eq!(r.finish_reason, "stop", "{kind:?}");
        let u = r.usage.unwrap();
        assert!(
            u.prompt_tokens > 3 && u.completion_tokens > 0,
            "{kind:?} {u:?}"
        );
        assert_eq!(u.cached_tokens, 3, "{kind:?}");

        // The wire body carries system, roles, limits and stops the protocol's way.
        let s = mock.stats().await;
        let b = &s["last_body"];
        match kind {
            ProviderKind::OpenAi => {
                assert_eq!(s["last_authorization"], "Bearer sk-test-123");
                assert_eq!(b["messages"][0]["role"], "system");
                assert_eq!(b["max_tokens"], 64);
                assert_eq!(b["stop"][0], "END");
            }
            ProviderKind::Anthropic => {
                assert_eq!(s["last_authorization"], "sk-test-123");
                assert_eq!(b["system"], "be brief");
                assert_eq!(b["messages"].as_array().unwrap().len(), 3);
                assert_eq!(b["messages"][1]["role"], "assistant");
                assert_eq!(b["max_tokens"], 64);
                assert_eq!(b["stop_sequences"][0], "END");
            }
            ProviderKind::Gemini => {
                assert_eq!(s["last_authorization"], "sk-test-123");
                assert_eq!(b["systemInstruction"]["parts"][0]["text"], "be brief");
                assert_eq!(b["contents"][1]["role"], "model");
                assert_eq!(b["generationConfig"]["maxOutputTokens"], 64);
                assert_eq!(b["generationConfig"]["temperature"], 0.5);
                assert_eq!(b["generationConfig"]["stopSequences"][0], "END");
            }
        }
        // Thinking tokens: OpenAI details them, Gemini counts them apart (both
        // come back within completion_tokens), Anthropic only bills them.
        let r = complete(&d, &p, "m1+reasoning5").await.unwrap();
        let (plain, thinking) = (u.completion_tokens, r.usage.unwrap());
        assert_eq!(thinking.completion_tokens, plain + 5, "{kind:?}");
        let reported = if kind == ProviderKind::Anthropic {
            0
        } else {
            5
        };
        assert_eq!(thinking.reasoning_tokens, reported, "{kind:?}");
        // No usage reported: None, for the caller to estimate and mark.
        let r = complete(&d, &p, "m1+nousage").await.unwrap();
        assert_eq!(r.usage, None, "{kind:?}");
    }
}

#[tokio::test]
async fn settings_and_developer_messages_reach_each_protocol_its_way() {
    let mock = Mock::start().await;
    let d = Dispatcher::new(reqwest::Client::new());
    let mut req = request();
    req.messages
        .insert(1, ChatMessage::text("developer", "answer in French"));
    req.max_completion_tokens = true;
    req.temperature = Some(1.6);
    req.user = Some("end-user-7".into());
    for kind in KINDS {
        let p = mock.provider(kind);
        req.sampling = Sampling {
            top_p: Some(0.25),
            seed: (!kind.lacks("seed")).then_some(42),
            frequency_penalty: (!kind.lacks("frequency_penalty")).then_some(0.5),
            presence_penalty: (!kind.lacks("presence_penalty")).then_some(-0.5),
            reasoning_effort: Some("low".into()),
            top_k: (!kind.lacks("top_k")).then_some(7),
            reasoning_budget: None,
        };
        d.complete(&p, "m1", &req, TIMEOUT).await.unwrap();
        let b = mock.stats().await["last_body"].clone();
        match kind {
            ProviderKind::OpenAi => {
                assert_eq!(b["messages"][1]["role"], "developer");
                assert_eq!(b["max_completion_tokens"], 64);
                assert_eq!(b.get("max_tokens"), None);
                assert_eq!(b["temperature"], 1.6);
                assert_eq!(b["top_p"], 0.25);
                assert_eq!(b["seed"], 42);
                assert_eq!(b["frequency_penalty"], 0.5);
                assert_eq!(b["presence_penalty"], -0.5);
                assert_eq!(b["reasoning_effort"], "low");
                assert_eq!(b["user"], "end-user-7");
            }
            ProviderKind::Anthropic => {
                assert_eq!(b["system"], "be brief\n\nanswer in French");
                assert_eq!(b["messages"].as_array().unwrap().len(), 3);
                assert_eq!(b["max_tokens"], 64);
                // Clamped into the Messages API's [0, 1].
                assert_eq!(b["temperature"], 1.0);
                assert_eq!(b["top_p"], 0.25);
                assert_eq!(b["metadata"]["user_id"], "end-user-7");
                assert_eq!(b["top_k"], 7);
                assert_eq!(
                    b["thinking"],
                    // An effort's budget, cut under the limit of 64 to the smallest.
                    serde_json::json!({"type": "enabled", "budget_tokens": 1024})
                );
                for absent in ["seed", "frequency_penalty", "presence_penalty", "user"] {
                    assert_eq!(b.get(absent), None, "{absent}");
                }
            }
            ProviderKind::Gemini => {
                assert_eq!(
                    b["systemInstruction"]["parts"][0]["text"],
                    "be brief\n\nanswer in French"
                );
                assert_eq!(b["contents"].as_array().unwrap().len(), 3);
                let g = &b["generationConfig"];
                assert_eq!(g["maxOutputTokens"], 64);
                assert_eq!(g["temperature"], 1.6);
                assert_eq!(g["topP"], 0.25);
                assert_eq!(g["seed"], 42);
                assert_eq!(g["frequencyPenalty"], 0.5);
                assert_eq!(g["presencePenalty"], -0.5);
                assert_eq!(g["topK"], 7);
                assert_eq!(g["thinkingConfig"]["thinkingBudget"], 2048);
            }
        }
    }
}

#[tokio::test]
async fn streaming_yields_the_text_then_done_with_usage() {
    let mock = Mock::start().await;
    let d = Dispatcher::new(reqwest::Client::new());
    for kind in KINDS {
        let p = mock.provider(kind);
        let mut s = d.stream(&p, "m2", &request(), TIMEOUT).await.unwrap();
        let mut text = String::new();
        let mut done = None;
        while let Some(ev) = s.next().await {
            match ev.unwrap() {
                StreamEvent::Delta(t) => text.push_str(&t),
                StreamEvent::ToolCall(c) => panic!("no tools were offered: {c:?}"),
                StreamEvent::Done {
                    finish_reason,
                    usage,
                } => done = Some((finish_reason, usage)),
            }
        }
        assert_eq!(text, "[m2] hello there world", "{kind:?}");
        let (finish, usage) = done.expect("a final event");
        assert_eq!(finish, "stop");
        let u: Usage = usage.expect("usage in the stream");
        assert!(u.completion_tokens > 0, "{kind:?}");
    }
}

#[tokio::test]
async fn client_errors_are_not_retryable_and_server_errors_are() {
    let mock = Mock::start().await;
    let d = Dispatcher::new(reqwest::Client::new());
    for kind in KINDS {
        let p = mock.provider(kind);
        for code in [400, 401, 404] {
            let e = complete(&d, &p, &format!("m+fail{code}"))
                .await
                .unwrap_err();
            assert_eq!(status(&e), Some(code), "{kind:?}");
            assert!(!e.is_retryable(), "{kind:?} {code}");
            assert!(e.to_string().contains("scripted failure"), "{kind:?}: {e}");
        }
        for code in [500, 502, 503] {
            let e = complete(&d, &p, &format!("m+fail{code}"))
                .await
                .unwrap_err();
            assert_eq!(status(&e), Some(code), "{kind:?}");
            assert!(e.is_retryable(), "{kind:?} {code}");
        }
        // A stream refused up front is the same error.
        let e = d
            .stream(&p, "m+fail503", &request(), TIMEOUT)
            .await
            .err()
            .unwrap();
        assert_eq!(status(&e), Some(503));
    }
}

#[tokio::test]
async fn rate_limits_carry_retry_after() {
    let mock = Mock::start().await;
    let d = Dispatcher::new(reqwest::Client::new());
    for kind in KINDS {
        let p = mock.provider(kind);
        let model = format!("rl-{kind:?}+429x1+ra250");
        let e = complete(&d, &p, &model).await.unwrap_err();
        assert_eq!(status(&e), Some(429), "{kind:?}");
        assert!(e.is_retryable());
        assert_eq!(
            e.retry_after(),
            Some(Duration::from_millis(250)),
            "{kind:?}"
        );
        // The burst is over: the next call is answered.
        assert!(complete(&d, &p, &model).await.is_ok(), "{kind:?}");
    }
}

#[tokio::test]
async fn resets_hangs_and_broken_bodies_are_retryable_errors() {
    let mock = Mock::start().await;
    let d = Dispatcher::new(reqwest::Client::new());
    for kind in KINDS {
        let p = mock.provider(kind);
        let e = complete(&d, &p, "m+reset").await.unwrap_err();
        assert!(matches!(e, DispatchError::Stream(_)), "{kind:?}: {e:?}");
        assert!(e.is_retryable());

        let started = Instant::now();
        let e = complete(&d, &p, "m+hang").await.unwrap_err();
        assert!(matches!(e, DispatchError::Timeout(_)), "{kind:?}: {e:?}");
        assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());

        for broken in ["m+badjson", "m+truncate"] {
            let e = complete(&d, &p, broken).await.unwrap_err();
            assert!(
                matches!(e, DispatchError::Malformed(_)),
                "{kind:?} {broken}: {e:?}"
            );
            assert!(e.is_retryable());
        }
    }
}

#[tokio::test]
async fn a_stream_that_breaks_off_ends_with_an_error_after_its_text() {
    let mock = Mock::start().await;
    let d = Dispatcher::new(reqwest::Client::new());
    for kind in KINDS {
        let p = mock.provider(kind);
        let mut s = d
            .stream(&p, "m+cutstream", &request(), TIMEOUT)
            .await
            .unwrap();
        let mut deltas = 0;
        let err = loop {
            match s.next().await {
                Some(Ok(StreamEvent::Delta(_))) => deltas += 1,
                Some(Ok(StreamEvent::Done { .. })) => panic!("{kind:?}: a cut stream completed"),
                Some(Ok(StreamEvent::ToolCall(c))) => {
                    panic!("{kind:?}: no tools were offered: {c:?}")
                }
                Some(Err(e)) => break e,
                None => panic!("{kind:?}: ended silently"),
            }
        };
        assert_eq!(deltas, 2, "{kind:?}");
        assert!(err.to_string().contains("ended before"), "{kind:?}: {err}");

        // A stream whose connection resets fails on opening or on its first
        // read, never with an empty success.
        match d.stream(&p, "m+reset", &request(), TIMEOUT).await {
            Err(e) => assert!(e.is_retryable(), "{kind:?}: {e:?}"),
            Ok(mut s) => assert!(matches!(s.next().await, Some(Err(_))), "{kind:?}"),
        }
    }
}
