//! Tool calling and JSON answers through all three protocols: each adapter
//! against the real mock on loopback (a full tool round trip and a JSON
//! Schema answer, plain and streamed, with the translation checked on the
//! wire), and routing that sends a request with tools, or a conversation
//! holding tool traffic, only to models the catalog declares `tools` for.

use crate::common;

use std::time::Duration;

use common::{KINDS, Mock, Server, complete_req};
use futures::StreamExt;
use serde_json::{Value, json};
use switchyard::catalog::Provider;
use switchyard::config::ProviderKind;
use switchyard::dispatch::{
    ChatMessage, ChatRequest, Dispatcher, ResponseFormat, StreamEvent, Tool, ToolCall, ToolChoice,
    Tools,
};
use switchyard::pb;
use tonic::Code;

const TIMEOUT: Duration = Duration::from_secs(5);

fn schema() -> Value {
    json!({"type": "object", "properties": {"query": {"type": "string"}, "n": {"type": "integer"}},
           "required": ["query"]})
}

fn asking() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::text("system", "use tools"),
            ChatMessage::text("user", "weather in Paris"),
        ],
        max_tokens: Some(64),
        tools: Tools {
            defs: vec![
                Tool {
                    name: "get_weather".into(),
                    description: Some("the weather in a city".into()),
                    parameters: Some(schema()),
                    strict: Some(true),
                },
                Tool {
                    name: "get_time".into(),
                    description: None,
                    parameters: None,
                    strict: None,
                },
            ],
            choice: Some(ToolChoice::Auto),
            parallel: None,
        },
        ..ChatRequest::default()
    }
}

fn parsed(args: &str) -> Value {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Streamed calls put together by index, as an OpenAI client does.
async fn streamed_calls(
    d: &Dispatcher,
    p: &Provider,
    model: &str,
    req: &ChatRequest,
) -> (Vec<ToolCall>, String) {
    let mut s = d.stream(p, model, req, TIMEOUT).await.unwrap();
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut finish = String::new();
    while let Some(ev) = s.next().await {
        match ev.unwrap() {
            StreamEvent::Delta(t) => assert!(t.is_empty(), "text beside calls: {t:?}"),
            StreamEvent::ToolCall(c) => {
                let i = c.index as usize;
                if i == calls.len() {
                    // A call's first piece names it.
                    calls.push(ToolCall {
                        id: c.id.expect("the first piece has the id"),
                        name: c.name.expect("the first piece has the name"),
                        arguments: String::new(),
                    });
                } else {
                    assert_eq!((c.id, c.name), (None, None), "only the first piece names");
                }
                calls[i].arguments.push_str(&c.arguments);
            }
            StreamEvent::Done { finish_reason, .. } => finish = finish_reason,
        }
    }
    (calls, finish)
}

#[tokio::test]
async fn a_tool_round_trip_crosses_each_protocol_plain_and_streamed() {
    let mock = Mock::start().await;
    let d = Dispatcher::new(reqwest::Client::new());
    for kind in KINDS {
        let p = mock.provider(kind);
        let req = asking();
        let r = d.complete(&p, "m+toolcall", &req, TIMEOUT).await.unwrap();
        assert_eq!(r.finish_reason, "tool_calls", "{kind:?}");
        assert_eq!(r.content, "", "{kind:?}");
        assert_eq!(r.tool_calls.len(), 1, "{kind:?}");
        let call = &r.tool_calls[0];
        assert_eq!(call.name, "get_weather", "{kind:?}");
        assert!(!call.id.is_empty(), "{kind:?}");
        assert_eq!(
            parsed(&call.arguments),
            json!({"query": "weather in Paris", "n": 0})
        );

        // The definitions and the choice, each protocol's way.
        let b = mock.last_body().await;
        match kind {
            ProviderKind::OpenAi => {
                assert_eq!(b["tools"][0]["type"], "function");
                assert_eq!(b["tools"][0]["function"]["parameters"], schema());
                assert_eq!(b["tools"][0]["function"]["strict"], true);
                assert_eq!(b["tools"][1]["function"].get("parameters"), None);
                assert_eq!(b["tool_choice"], "auto");
            }
            ProviderKind::Anthropic => {
                assert_eq!(b["tools"][0]["name"], "get_weather");
                assert_eq!(b["tools"][0]["input_schema"], schema());
                assert_eq!(
                    b["tools"][1]["input_schema"],
                    json!({"type": "object", "properties": {}})
                );
                assert_eq!(b["tool_choice"], json!({"type": "auto"}));
            }
            ProviderKind::Gemini => {
                let decls = &b["tools"][0]["functionDeclarations"];
                assert_eq!(decls[0]["name"], "get_weather");
                assert_eq!(decls[0]["parametersJsonSchema"], schema());
                assert_eq!(
                    b["toolConfig"],
                    json!({"functionCallingConfig": {"mode": "AUTO"}})
                );
            }
        }

        // Streamed, two parallel calls arrive as OpenAI-style pieces.
        let (calls, finish) = streamed_calls(&d, &p, "m+toolcalls2", &req).await;
        assert_eq!(finish, "tool_calls", "{kind:?}");
        assert_eq!(calls.len(), 2, "{kind:?}");
        assert_eq!(
            (calls[0].name.as_str(), calls[1].name.as_str()),
            ("get_weather", "get_time")
        );
        assert_eq!(parsed(&calls[1].arguments)["n"], 1, "{kind:?}");
        assert_ne!(calls[0].id, calls[1].id, "{kind:?}");

        // The client runs the tool and answers; the model reads the result.
        let mut answer = req.clone();
        answer.messages.push(ChatMessage {
            role: "assistant".into(),
            tool_calls: r.tool_calls.clone(),
            ..ChatMessage::default()
        });
        answer.messages.push(ChatMessage {
            role: "tool".into(),
            content: r#"{"temp_c": 21}"#.into(),
            tool_call_id: Some(call.id.clone()),
            ..ChatMessage::default()
        });
        let r2 = d
            .complete(&p, "m+toolcall", &answer, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(r2.finish_reason, "stop", "{kind:?}");
        assert!(r2.tool_calls.is_empty(), "{kind:?}");
        assert!(
            r2.content.contains("tool said:") && r2.content.contains("21"),
            "{kind:?}: {}",
            r2.content
        );
        let b = mock.last_body().await;
        match kind {
            ProviderKind::OpenAi => {
                let m = &b["messages"];
                assert_eq!(m[2]["content"], Value::Null);
                assert_eq!(m[2]["tool_calls"][0]["id"], call.id.as_str());
                assert_eq!(
                    m[2]["tool_calls"][0]["function"]["arguments"],
                    call.arguments.as_str()
                );
                assert_eq!(m[3]["role"], "tool");
                assert_eq!(m[3]["tool_call_id"], call.id.as_str());
            }
            ProviderKind::Anthropic => {
                let m = &b["messages"];
                assert_eq!(m[1]["role"], "assistant");
                assert_eq!(m[1]["content"][0]["type"], "tool_use");
                assert_eq!(m[1]["content"][0]["input"], parsed(&call.arguments));
                assert_eq!(m[2]["role"], "user");
                assert_eq!(m[2]["content"][0]["type"], "tool_result");
                assert_eq!(m[2]["content"][0]["tool_use_id"], call.id.as_str());
            }
            ProviderKind::Gemini => {
                let c = &b["contents"];
                assert_eq!(c[1]["role"], "model");
                assert_eq!(c[1]["parts"][0]["functionCall"]["name"], "get_weather");
                let resp = &c[2]["parts"][0]["functionResponse"];
                assert_eq!(resp["name"], "get_weather");
                assert_eq!(resp["response"], json!({"temp_c": 21}));
            }
        }
    }
}

#[tokio::test]
async fn a_named_choice_and_no_parallel_calls_translate_and_a_refused_call_is_not_made() {
    let mock = Mock::start().await;
    let d = Dispatcher::new(reqwest::Client::new());
    for kind in KINDS {
        let p = mock.provider(kind);
        let mut req = asking();
        req.tools.choice = Some(ToolChoice::Function("get_time".into()));
        req.tools.parallel = (kind != ProviderKind::Gemini).then_some(false);
        let r = d.complete(&p, "m+toolcall", &req, TIMEOUT).await.unwrap();
        assert_eq!(r.tool_calls[0].name, "get_time", "{kind:?}");
        let b = mock.last_body().await;
        match kind {
            ProviderKind::OpenAi => {
                assert_eq!(
                    b["tool_choice"],
                    json!({"type": "function", "function": {"name": "get_time"}})
                );
                assert_eq!(b["parallel_tool_calls"], false);
            }
            ProviderKind::Anthropic => assert_eq!(
                b["tool_choice"],
                json!({"type": "tool", "name": "get_time", "disable_parallel_tool_use": true})
            ),
            ProviderKind::Gemini => assert_eq!(
                b["toolConfig"]["functionCallingConfig"],
                json!({"mode": "ANY", "allowedFunctionNames": ["get_time"]})
            ),
        }
        req.tools.choice = Some(ToolChoice::None);
        let r = d.complete(&p, "m+toolcall", &req, TIMEOUT).await.unwrap();
        assert!(r.tool_calls.is_empty(), "{kind:?}");
        assert_eq!(r.content, "[m] weather in Paris", "{kind:?}");
    }
}

async fn tool_server() -> (Mock, Server, tempfile::TempDir, common::Client) {
    common::protocols_server(
        "[routing]\ncost_weight = 0.0\npolicy = \"prior\"\n",
        &[
            // The best model by prior has no tools: only the need moves a choice off it.
            ("plain", "oa", "plain", 0.95),
            ("tooly", "an", "tooly+toolcall", 0.5),
        ],
        "capabilities = [\"tools\"]\n",
        |_| {},
    )
    .await
}

fn with_tools(model: Option<&str>) -> pb::CompleteRequest {
    pb::CompleteRequest {
        tools: vec![pb::Tool {
            name: "get_weather".into(),
            parameters_json: Some(schema().to_string()),
            ..Default::default()
        }],
        ..complete_req("weather in Paris", model)
    }
}

#[tokio::test]
async fn requests_with_tools_reach_only_models_that_declare_them() {
    let (_mock, server, _dir, mut c) = tool_server().await;
    // The catalog says what each model can do.
    let models = c
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    let caps = |name: &str| {
        models
            .iter()
            .find(|m| m.name == name)
            .unwrap()
            .capabilities
            .clone()
    };
    assert_eq!(
        (caps("plain"), caps("tooly")),
        (vec![], vec!["tools".to_owned()])
    );
    // Without tools the prior's favourite answers.
    let r = c
        .complete(complete_req("hi", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model, "plain");
    for _ in 0..5 {
        let r = c.complete(with_tools(None)).await.unwrap().into_inner();
        assert_eq!(r.model, "tooly");
        assert_eq!(r.finish_reason, "tool_calls");
        assert_eq!(r.tool_calls[0].name, "get_weather");
        assert_eq!(
            parsed(&r.tool_calls[0].arguments)["query"],
            "weather in Paris"
        );
    }
    // Pinned to a model without them: refused, naming both.
    let e = c.complete(with_tools(Some("plain"))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("tools:") && e.message().contains("plain"),
        "{}",
        e.message()
    );
    // A conversation holding tool traffic needs them too, and Route says why.
    let mut route = common::route_req("and now?");
    route.messages.insert(
        0,
        pb::Message {
            role: "assistant".into(),
            tool_calls: vec![pb::ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{}".into(),
            }],
            ..Default::default()
        },
    );
    route.messages.insert(
        1,
        pb::Message {
            role: "tool".into(),
            content: "sunny".into(),
            tool_call_id: Some("call_1".into()),
            ..Default::default()
        },
    );
    let r = c.route(route).await.unwrap().into_inner();
    assert_eq!(r.model, "tooly");
    let plain = r.candidates.iter().find(|x| x.model == "plain").unwrap();
    assert!(!plain.eligible);
    assert!(
        plain.reason.contains("`tools` capability"),
        "{}",
        plain.reason
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_tool_traffic_is_refused_by_field() {
    let (_mock, server, _dir, mut c) = tool_server().await;
    let cases: Vec<(pb::CompleteRequest, &str)> = vec![
        (
            pb::CompleteRequest {
                tool_choice: Some(pb::ToolChoice {
                    choice: Some(pb::tool_choice::Choice::Function("nope".into())),
                }),
                ..with_tools(None)
            },
            "tool_choice",
        ),
        (
            pb::CompleteRequest {
                tools: vec![pb::Tool {
                    name: "bad name!".into(),
                    ..Default::default()
                }],
                ..complete_req("x", None)
            },
            "tools[0].function.name",
        ),
        (
            pb::CompleteRequest {
                tools: vec![pb::Tool {
                    name: "f".into(),
                    parameters_json: Some("{not json".into()),
                    ..Default::default()
                }],
                ..complete_req("x", None)
            },
            "tools[0].parameters_json",
        ),
    ];
    for (req, field) in cases {
        let e = c.complete(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    // A result that answers no call, and arguments that are not JSON.
    let mut orphan = complete_req("x", None);
    orphan.route.as_mut().unwrap().messages.push(pb::Message {
        role: "tool".into(),
        content: "42".into(),
        tool_call_id: Some("call_9".into()),
        ..Default::default()
    });
    let e = c.complete(orphan).await.unwrap_err();
    assert!(
        e.message().starts_with("messages[1].tool_call_id"),
        "{}",
        e.message()
    );
    let mut garbled = complete_req("x", None);
    garbled.route.as_mut().unwrap().messages.push(pb::Message {
        role: "assistant".into(),
        tool_calls: vec![pb::ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: "{oops".into(),
        }],
        ..Default::default()
    });
    let e = c.complete(garbled).await.unwrap_err();
    assert!(
        e.message()
            .starts_with("messages[1].tool_calls[0].function.arguments"),
        "{}",
        e.message()
    );
    server.stop().await;
}

fn json_asked() -> ChatRequest {
    let mut req = asking();
    req.tools = Tools::default();
    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "weather".into(),
        description: None,
        schema: Some(json!({"type": "object",
            "properties": {"city": {"type": "string"}, "temp_c": {"type": "integer"}},
            "required": ["city", "temp_c"], "additionalProperties": false})),
        strict: Some(true),
    });
    req
}

#[tokio::test]
async fn json_answers_take_each_protocols_own_route_and_come_back_as_text() {
    let mock = Mock::start().await;
    let d = Dispatcher::new(reqwest::Client::new());
    let want = json!({"city": "weather in Paris", "temp_c": 0});
    for kind in KINDS {
        let p = mock.provider(kind);
        let req = json_asked();
        let r = d.complete(&p, "m", &req, TIMEOUT).await.unwrap();
        assert_eq!(parsed(&r.content), want, "{kind:?}");
        assert_eq!(r.finish_reason, "stop", "{kind:?}");
        assert!(r.tool_calls.is_empty(), "{kind:?}");
        let b = mock.last_body().await;
        let schema = req.response_format.as_ref().unwrap().schema();
        match kind {
            ProviderKind::OpenAi => {
                assert_eq!(b["response_format"]["type"], "json_schema");
                assert_eq!(b["response_format"]["json_schema"]["name"], "weather");
                assert_eq!(b["response_format"]["json_schema"]["strict"], true);
                assert_eq!(b["response_format"]["json_schema"]["schema"], schema);
            }
            ProviderKind::Anthropic => {
                assert_eq!(b["tools"][0]["name"], "switchyard_response");
                assert_eq!(b["tools"][0]["input_schema"], schema);
                assert_eq!(
                    b["tool_choice"],
                    json!({"type": "tool", "name": "switchyard_response"})
                );
            }
            ProviderKind::Gemini => {
                let g = &b["generationConfig"];
                assert_eq!(g["responseMimeType"], "application/json");
                assert_eq!(g["responseJsonSchema"], schema);
            }
        }
        // Streamed, the same JSON arrives as text.
        let mut s = d.stream(&p, "m", &req, TIMEOUT).await.unwrap();
        let mut text = String::new();
        while let Some(ev) = s.next().await {
            match ev.unwrap() {
                StreamEvent::Delta(t) => text.push_str(&t),
                StreamEvent::ToolCall(c) => panic!("{kind:?}: the answer came as a call: {c:?}"),
                StreamEvent::Done { finish_reason, .. } => assert_eq!(finish_reason, "stop"),
            }
        }
        assert_eq!(parsed(&text), want, "{kind:?}");
    }
    // Beside tools the model may call, Anthropic must call one of them or
    // the response tool: a call to a real tool is still a call.
    let p = mock.provider(ProviderKind::Anthropic);
    let mut req = json_asked();
    req.tools = asking().tools;
    req.response_format = Some(ResponseFormat::JsonObject);
    let r = d.complete(&p, "m", &req, TIMEOUT).await.unwrap();
    assert_eq!(r.tool_calls[0].name, "get_weather");
    assert_eq!(r.finish_reason, "tool_calls");
    let b = mock.last_body().await;
    assert_eq!(b["tool_choice"], json!({"type": "any"}));
    let answer = b["tools"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        answer,
        json!({"name": "switchyard_response", "input_schema": {"type": "object"},
               "description": "Give your answer: the input is the whole response."})
    );
}
