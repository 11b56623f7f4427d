//! Property tests: a request or an answer translated into another protocol
//! and read back keeps what the protocols share. Requests go out through the
//! adapters' own bodies (OpenAI, Anthropic, Gemini) and come back through the
//! fronts' own readers (Gemini's body, for which there is no front, is read
//! back here by its documented shape). Answers go out through the fronts'
//! writers and come back through the adapters' readers; a Gemini answer is
//! read by its adapter, written by the OpenAI front and read back again.
//! Streams go out through the fronts' SSE writers, cut into network chunks
//! anywhere, and come back through the adapters' stream readers.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard::config::ProviderKind;
use switchyard::dispatch::read;
use switchyard::dispatch::{
    ChatMessage, ChatRequest, ChatResponse, StreamEvent, Tool, ToolCall, ToolCallDelta, ToolChoice,
    Tools, Usage,
};
use switchyard::engine::{CompleteInput, Completed, StreamItem};
use switchyard::http::codec;

fn text() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9 .,?!'é中-]{0,30}"
}

fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,12}"
}

/// Tool arguments as compact JSON with sorted keys: the one spelling every
/// protocol's reading gives back.
fn arguments() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        any::<i32>().prop_map(Value::from),
        text().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
    ];
    proptest::collection::btree_map(ident(), value, 0..3)
        .prop_map(|m: BTreeMap<String, Value>| serde_json::to_string(&m).expect("JSON"))
}

fn user(content: String) -> ChatMessage {
    message("user", content)
}

fn message(role: &str, content: String) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content,
        tool_calls: Vec::new(),
        tool_call_id: None,
        parts: Vec::new(),
    }
}

/// An assistant turn: text, or calls of the request's tools each answered
/// by a tool message.
fn reply(tools: Vec<String>, turn: usize) -> impl Strategy<Value = Vec<ChatMessage>> {
    let calls = if tools.is_empty() {
        Just(Vec::new()).boxed()
    } else {
        proptest::collection::vec((proptest::sample::select(tools), arguments(), text()), 1..3)
            .boxed()
    };
    (text(), calls).prop_map(move |(said, calls)| {
        if calls.is_empty() {
            return vec![message("assistant", said)];
        }
        let mut assistant = message("assistant", String::new());
        let mut results = Vec::new();
        for (k, (name, arguments, result)) in calls.into_iter().enumerate() {
            let id = format!("call_{turn}_{k}");
            assistant.tool_calls.push(ToolCall {
                id: id.clone(),
                name,
                arguments,
            });
            let mut r = message("tool", result);
            r.tool_call_id = Some(id);
            results.push(r);
        }
        std::iter::once(assistant).chain(results).collect()
    })
}

fn tool_defs() -> impl Strategy<Value = Vec<Tool>> {
    proptest::collection::btree_set(ident(), 0..3).prop_flat_map(|names| {
        let n = names.len();
        (
            Just(names),
            proptest::collection::vec((proptest::option::of(text()), ident()), n),
        )
            .prop_map(|(names, details)| {
                names
                    .into_iter()
                    .zip(details)
                    .map(|(name, (description, field))| Tool {
                        name,
                        description,
                        parameters: Some(json!({"type": "object",
                            "properties": {field: {"type": "string"}}})),
                        strict: None,
                    })
                    .collect()
            })
    })
}

fn choice(tools: &[Tool]) -> BoxedStrategy<Option<ToolChoice>> {
    let Some(first) = tools.first() else {
        return Just(None).boxed();
    };
    prop_oneof![
        Just(None),
        Just(Some(ToolChoice::Auto)),
        Just(Some(ToolChoice::Required)),
        Just(Some(ToolChoice::Function(first.name.clone()))),
    ]
    .boxed()
}

/// A request of what every protocol can say: instructions, a conversation
/// of text turns and tool calls with their results, tools, and the shared
/// sampling settings.
fn request() -> impl Strategy<Value = ChatRequest> {
    tool_defs().prop_flat_map(|defs| {
        let names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
        let exchanges = proptest::collection::vec((text(), reply(names, 0)), 0..3);
        (
            proptest::option::of(text()),
            exchanges,
            text(),
            choice(&defs),
            Just(defs),
            1u32..8192,
            proptest::option::of((0u32..=100).prop_map(|t| f64::from(t) / 100.0)),
            proptest::collection::vec(text(), 0..3),
            proptest::option::of((1u32..=100).prop_map(|t| f64::from(t) / 100.0)),
        )
            .prop_map(
                |(system, exchanges, last, choice, defs, max, temperature, stop, top_p)| {
                    let mut messages: Vec<ChatMessage> =
                        system.into_iter().map(|s| message("system", s)).collect();
                    for (turn, (asked, answered)) in exchanges.into_iter().enumerate() {
                        messages.push(user(asked));
                        messages.extend(answered.into_iter().map(|mut m| {
                            // Ids unique across the conversation.
                            for c in &mut m.tool_calls {
                                c.id = c.id.replacen("call_0", &format!("call_{turn}"), 1);
                            }
                            if let Some(id) = &mut m.tool_call_id {
                                *id = id.replacen("call_0", &format!("call_{turn}"), 1);
                            }
                            m
                        }));
                    }
                    messages.push(user(last));
                    ChatRequest {
                        messages,
                        max_tokens: Some(max),
                        max_completion_tokens: false,
                        temperature,
                        stop,
                        sampling: switchyard::dispatch::Sampling {
                            top_p,
                            ..Default::default()
                        },
                        user: None,
                        tools: Tools {
                            defs,
                            choice,
                            parallel: None,
                        },
                        response_format: None,
                    }
                },
            )
    })
}

/// What the protocols share of a request, for comparison.
fn shared(
    messages: &[ChatMessage],
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    stop: &[String],
    top_p: Option<f64>,
    tools: &Tools,
) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({"role": m.role, "content": m.content, "tool_call_id": m.tool_call_id,
                "tool_calls": m.tool_calls.iter()
                    .map(|c| json!([c.id, c.name, c.arguments])).collect::<Vec<_>>()})
        })
        .collect();
    json!({
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stop": stop,
        "top_p": top_p,
        "tools": tools.defs,
        "tool_choice": tools.choice,
    })
}

fn of_request(r: &ChatRequest) -> Value {
    shared(
        &r.messages,
        r.max_tokens,
        r.temperature,
        &r.stop,
        r.sampling.top_p,
        &r.tools,
    )
}

fn of_input(i: &CompleteInput) -> Value {
    shared(
        &i.route.messages,
        i.max_tokens,
        i.temperature,
        &i.stop,
        i.sampling.top_p,
        &i.tools,
    )
}

/// A Gemini request body read back by its documented shape.
fn gemini_back(body: &Value) -> Value {
    let texts = |parts: &Value| -> String {
        parts
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["text"].as_str())
            .collect()
    };
    let mut messages = Vec::new();
    if let Some(parts) = body.pointer("/systemInstruction/parts") {
        messages.push(message("system", texts(parts)));
    }
    for c in body["contents"].as_array().expect("contents") {
        let parts = c["parts"].as_array().expect("parts");
        let results: Vec<&Value> = parts
            .iter()
            .filter_map(|p| p.get("functionResponse"))
            .collect();
        if !results.is_empty() {
            for r in results {
                let mut m = message(
                    "tool",
                    r["response"]["output"].as_str().expect("output").into(),
                );
                m.tool_call_id = r["id"].as_str().map(str::to_owned);
                messages.push(m);
            }
            continue;
        }
        let role = if c["role"] == "model" {
            "assistant"
        } else {
            "user"
        };
        let mut m = message(role, texts(&c["parts"]));
        m.tool_calls = parts
            .iter()
            .filter_map(|p| p.get("functionCall"))
            .map(|f| ToolCall {
                id: f["id"].as_str().expect("call id").into(),
                name: f["name"].as_str().expect("name").into(),
                arguments: f["args"].to_string(),
            })
            .collect();
        messages.push(m);
    }
    let config = &body["generationConfig"];
    let defs: Vec<Tool> = body
        .pointer("/tools/0/functionDeclarations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|d| Tool {
            name: d["name"].as_str().expect("name").into(),
            description: d["description"].as_str().map(str::to_owned),
            parameters: d.get("parametersJsonSchema").cloned(),
            strict: None,
        })
        .collect();
    let choice = body.pointer("/toolConfig/functionCallingConfig").map(|c| {
        match (c["mode"].as_str(), c.get("allowedFunctionNames")) {
            (Some("AUTO"), _) => ToolChoice::Auto,
            (Some("NONE"), _) => ToolChoice::None,
            (Some("ANY"), Some(names)) => {
                ToolChoice::Function(names[0].as_str().expect("name").into())
            }
            _ => ToolChoice::Required,
        }
    });
    let stop: Vec<String> = config
        .get("stopSequences")
        .map(|s| serde_json::from_value(s.clone()).expect("strings"))
        .unwrap_or_default();
    shared(
        &messages,
        config["maxOutputTokens"].as_u64().map(|n| n as u32),
        config["temperature"].as_f64(),
        &stop,
        config["topP"].as_f64(),
        &Tools {
            defs,
            choice,
            parallel: None,
        },
    )
}

fn answer() -> impl Strategy<Value = ChatResponse> {
    (
        text(),
        proptest::collection::vec((ident(), arguments()), 0..3),
        prop_oneof![Just("stop"), Just("length")],
        0u32..100_000,
        0u32..10_000,
    )
        .prop_map(|(content, calls, finish, prompt, completion)| {
            let tool_calls: Vec<ToolCall> = calls
                .into_iter()
                .enumerate()
                .map(|(k, (name, arguments))| ToolCall {
                    id: format!("call_{k}"),
                    name,
                    arguments,
                })
                .collect();
            let finish = if tool_calls.is_empty() {
                finish
            } else {
                "tool_calls"
            };
            ChatResponse {
                content,
                tool_calls,
                finish_reason: finish.into(),
                usage: Some(Usage {
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                    ..Usage::default()
                }),
            }
        })
}

fn completed(r: &ChatResponse) -> Completed {
    Completed {
        decision_id: "0".into(),
        model: "m".into(),
        provider: "p".into(),
        content: r.content.clone(),
        tool_calls: r.tool_calls.clone(),
        finish_reason: r.finish_reason.clone(),
        usage: r.usage.unwrap_or_default(),
        usage_estimated: false,
        cost_usd: 0.0,
        attempts: Vec::new(),
        explained: Default::default(),
        cache: Default::default(),
    }
}

fn of_answer(r: &ChatResponse) -> Value {
    let u = r.usage.unwrap_or_default();
    json!({
        "content": r.content,
        "tool_calls": r.tool_calls.iter().map(|c| json!([c.id, c.name, c.arguments])).collect::<Vec<_>>(),
        "finish_reason": r.finish_reason,
        "usage": [u.prompt_tokens, u.completion_tokens],
    })
}

/// An answer as Gemini would send it.
fn gemini_answer(r: &ChatResponse) -> Vec<u8> {
    let mut parts = vec![json!({"text": r.content})];
    parts.extend(r.tool_calls.iter().map(|c| {
        json!({"functionCall": {"id": c.id, "name": c.name,
            "args": serde_json::from_str::<Value>(&c.arguments).expect("JSON")}})
    }));
    let reason = if r.finish_reason == "length" {
        "MAX_TOKENS"
    } else {
        "STOP"
    };
    let u = r.usage.unwrap_or_default();
    serde_json::to_vec(&json!({
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": reason}],
        "usageMetadata": {"promptTokenCount": u.prompt_tokens,
            "candidatesTokenCount": u.completion_tokens},
    }))
    .expect("JSON")
}

/// The engine's items for streaming `r`: its text in pieces of `piece`
/// characters, then each call in two pieces (id and name with the first).
fn items(r: &ChatResponse, piece: usize) -> Vec<StreamItem> {
    let mut out = vec![StreamItem::Start {
        decision_id: "0".into(),
        model: "m".into(),
        provider: "p".into(),
        cache: Default::default(),
    }];
    let chars: Vec<char> = r.content.chars().collect();
    out.extend(
        chars
            .chunks(piece)
            .map(|c| StreamItem::Delta(c.iter().collect())),
    );
    for (k, c) in r.tool_calls.iter().enumerate() {
        let split = c.arguments.len() / 2;
        let split = (split..=c.arguments.len())
            .find(|i| c.arguments.is_char_boundary(*i))
            .unwrap_or(c.arguments.len());
        out.push(StreamItem::ToolCall(ToolCallDelta {
            index: k as u32,
            id: Some(c.id.clone()),
            name: Some(c.name.clone()),
            arguments: c.arguments[..split].to_owned(),
        }));
        out.push(StreamItem::ToolCall(ToolCallDelta {
            index: k as u32,
            id: None,
            name: None,
            arguments: c.arguments[split..].to_owned(),
        }));
    }
    out.push(StreamItem::End {
        finish_reason: r.finish_reason.clone(),
        usage: r.usage.unwrap_or_default(),
        usage_estimated: false,
        cost_usd: 0.0,
        attempts: Vec::new(),
    });
    out
}

/// A stream read back into the answer it carried (calls in the order they
/// began; a reader's indices are its protocol's).
fn assembled(
    events: Vec<Result<StreamEvent, switchyard::dispatch::DispatchError>>,
) -> Result<ChatResponse, String> {
    let mut r = ChatResponse {
        content: String::new(),
        tool_calls: Vec::new(),
        finish_reason: String::new(),
        usage: None,
    };
    let mut indices: Vec<u32> = Vec::new();
    let mut done = false;
    for e in events {
        match e.map_err(|e| e.to_string())? {
            StreamEvent::Delta(d) => r.content.push_str(&d),
            StreamEvent::ToolCall(c) => {
                let k = match indices.iter().position(|i| *i == c.index) {
                    Some(k) => k,
                    None => {
                        indices.push(c.index);
                        r.tool_calls.push(ToolCall {
                            id: String::new(),
                            name: String::new(),
                            arguments: String::new(),
                        });
                        indices.len() - 1
                    }
                };
                let call = &mut r.tool_calls[k];
                if let Some(id) = c.id {
                    call.id = id;
                }
                if let Some(name) = c.name {
                    call.name = name;
                }
                call.arguments.push_str(&c.arguments);
            }
            StreamEvent::Done {
                finish_reason,
                usage,
            } => {
                r.finish_reason = finish_reason;
                r.usage = usage;
                done = true;
            }
        }
    }
    if !done {
        return Err("the stream did not end".into());
    }
    // Arguments as every protocol's reading spells them.
    for c in &mut r.tool_calls {
        if let Ok(v) = serde_json::from_str::<Value>(&c.arguments) {
            c.arguments = v.to_string();
        }
    }
    Ok(r)
}

/// `body` cut into network chunks of `cut` bytes.
fn cut(body: &[u8], cut: usize) -> Vec<bytes::Bytes> {
    body.chunks(cut)
        .map(bytes::Bytes::copy_from_slice)
        .collect()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_request_sent_as_openai_reads_back_the_same(r in request()) {
        let body = read::request_body(ProviderKind::OpenAi, "m", &r, false);
        let back = codec::read_chat(body.to_string().as_bytes(), &HeaderMap::new())
            .map_err(|e| TestCaseError::fail(format!("{e:?}\n{body}")))?;
        prop_assert_eq!(of_input(&back), of_request(&r));
    }

    #[test]
    fn a_request_sent_as_anthropic_reads_back_the_same(r in request()) {
        let body = read::request_body(ProviderKind::Anthropic, "m", &r, false);
        let back = codec::read_messages(body.to_string().as_bytes(), &HeaderMap::new())
            .map_err(|e| TestCaseError::fail(format!("{e:?}\n{body}")))?;
        prop_assert_eq!(of_input(&back), of_request(&r));
    }

    #[test]
    fn a_request_sent_as_gemini_reads_back_the_same(r in request()) {
        let body = read::request_body(ProviderKind::Gemini, "m", &r, false);
        prop_assert_eq!(gemini_back(&body), of_request(&r));
    }

    #[test]
    fn an_answer_written_as_openai_reads_back_the_same(r in answer()) {
        let body = block_on(codec::chat_answer(completed(&r)));
        let back = read::answer(ProviderKind::OpenAi, &body)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(of_answer(&back), of_answer(&r));
    }

    #[test]
    fn an_answer_written_as_anthropic_reads_back_the_same(r in answer()) {
        let body = block_on(codec::messages_answer(completed(&r)));
        let back = read::answer(ProviderKind::Anthropic, &body)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(of_answer(&back), of_answer(&r));
    }

    #[test]
    fn a_stream_written_as_openai_reads_back_the_same(r in answer(), piece in 1usize..8, at in 1usize..200) {
        let body = block_on(codec::chat_stream(items(&r, piece)));
        let back = assembled(block_on(read::stream(ProviderKind::OpenAi, cut(&body, at))))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&body))))?;
        prop_assert_eq!(of_answer(&back), of_answer(&r));
    }

    #[test]
    fn a_stream_written_as_anthropic_reads_back_the_same(r in answer(), piece in 1usize..8, at in 1usize..200) {
        let body = block_on(codec::messages_stream(items(&r, piece)));
        let back = assembled(block_on(read::stream(ProviderKind::Anthropic, cut(&body, at))))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&body))))?;
        prop_assert_eq!(of_answer(&back), of_answer(&r));
    }

    #[test]
    fn a_gemini_answer_relayed_as_openai_reads_back_the_same(r in answer()) {
        let read_in = read::answer(ProviderKind::Gemini, &gemini_answer(&r))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(of_answer(&read_in), of_answer(&r));
        let relayed = block_on(codec::chat_answer(completed(&read_in)));
        let back = read::answer(ProviderKind::OpenAi, &relayed)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(of_answer(&back), of_answer(&r));
    }
}
