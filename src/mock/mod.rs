//! `switchyard mock-provider`: a real HTTP server speaking all three wire
//! protocols we dispatch over, for tests and demos with no API key:
//! OpenAI chat completions (`/v1/chat/completions`), Anthropic Messages
//! (`/v1/messages`) and Gemini (`/v1beta/models/{m}:generateContent` and
//! `:streamGenerateContent?alt=sse`), plain and streamed.
//!
//! Answers are deterministic: `[<model>] <echo of the last user message>`;
//! after tool results, `[<model>] tool said: <results>`; with `[<n>
//! image(s)]` after the echo when the request carries images; JSON matching the
//! schema when the request asks for JSON natively ([`json`]); a tool call
//! when the tool choice forces one (or a directive asks for calls).
//! Behaviour is set per server (flags: base latency, random failure rate),
//! per model by a script (`--script FILE.toml`: `[models] "<model>" =
//! "<directives>"`) and per request by directives appended to the model id
//! after `+` (see [`behaviour`]), so one server can play healthy, slow,
//! flaky, rate-limited and broken models at once.
//!
//! `GET /mock/stats` returns the requests seen per model id, the last
//! credentials header and the last request body, for tests.

pub mod behaviour;
mod json;
mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use behaviour::{Behaviour, Outcome};
use wire::Proto;

/// Server-wide behaviour.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// Added to every answer.
    pub latency: Duration,
    /// Probability that a request fails with `fail_status`.
    pub fail_rate: f64,
    pub fail_status: u16,
    /// Pause between streamed deltas.
    pub stream_delay: Duration,
    pub seed: u64,
    /// Directives per model id (before any `+`), applied before the id's own.
    pub script: BTreeMap<String, String>,
}

impl MockOptions {
    /// Reads a script file: a `[models]` table of model id → directives.
    pub fn load_script(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Script {
            models: BTreeMap<String, String>,
        }
        let text = std::fs::read_to_string(path)?;
        Ok(toml::from_str::<Script>(&text)?.models)
    }
}

#[derive(Default)]
struct Stats {
    requests: BTreeMap<String, u64>,
    last_credential: Option<String>,
    last_body: Option<Value>,
}

struct Shared {
    opts: MockOptions,
    rng: Mutex<rand::rngs::StdRng>,
    stats: Mutex<Stats>,
}

/// A request in protocol-neutral terms.
pub(crate) struct MockRequest {
    pub model: String,
    /// (role, text), system prompt included.
    pub messages: Vec<(String, String)>,
    pub stream: bool,
    pub max_tokens: Option<u32>,
    /// The functions offered: name and arguments' schema.
    pub tools: Vec<(String, Option<Value>)>,
    /// What `tool_choice` allows: `None` forbids calls, `Some(name)` forces one.
    pub tool_choice: ToolsAllowed,
    /// The last turn's tool results (their text), if it is one.
    pub tool_results: Vec<String>,
    /// A JSON answer is asked for natively: `Some(schema)` (`{"type":
    /// "object"}` for any object).
    pub json: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum ToolsAllowed {
    #[default]
    Any,
    None,
    /// Some call must be made.
    Required,
    Only(String),
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    opts: MockOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(opts.seed)),
        opts,
        stats: Mutex::default(),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(openai))
        .route("/chat/completions", post(openai))
        .route("/v1/messages", post(anthropic))
        .route("/v1beta/models/{call}", post(gemini))
        .route("/mock/stats", get(stats))
        .with_state(shared);
    // As real providers' servers do: small stream chunks go out at once.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn stats(State(s): State<Arc<Shared>>) -> Json<Value> {
    let st = s.stats.lock().unwrap_or_else(|p| p.into_inner());
    Json(json!({
        "requests": st.requests,
        "last_authorization": st.last_credential,
        "last_body": st.last_body,
    }))
}

async fn openai(s: State<Arc<Shared>>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    handle(s, h, Proto::OpenAi, None, body).await
}

async fn anthropic(s: State<Arc<Shared>>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    handle(s, h, Proto::Anthropic, None, body).await
}

async fn gemini(
    s: State<Arc<Shared>>,
    h: HeaderMap,
    UrlPath(call): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let (model, stream) = match call.rsplit_once(':') {
        Some((m, "generateContent")) => (m.to_owned(), false),
        Some((m, "streamGenerateContent")) => (m.to_owned(), true),
        _ => return wire::error(Proto::Gemini, 404, &format!("unknown method {call:?}")),
    };
    handle(s, h, Proto::Gemini, Some((model, stream)), body).await
}

async fn handle(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    proto: Proto,
    gemini_call: Option<(String, bool)>,
    body: axum::body::Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| wire::parse(proto, &v, gemini_call).map(|r| (v, r)));
    let (raw, req) = match parsed {
        Ok(r) => r,
        Err(e) => return wire::error(proto, 400, &format!("invalid request body: {e}")),
    };
    let seen = {
        let mut st = s.stats.lock().unwrap_or_else(|p| p.into_inner());
        let n = st.requests.entry(req.model.clone()).or_default();
        *n += 1;
        let seen = *n;
        st.last_credential = ["authorization", "x-api-key", "x-goog-api-key"]
            .iter()
            .find_map(|k| headers.get(*k)?.to_str().ok().map(str::to_owned));
        st.last_body = Some(raw.clone());
        seen
    };
    if req.messages.iter().all(|(role, _)| role == "system") {
        return wire::error(proto, 400, "messages must not be empty");
    }
    if let Err(e) = wire::check_tool_traffic(proto, &raw) {
        return wire::error(proto, 400, &e);
    }
    let images = match wire::images(proto, &raw) {
        Ok(n) => n,
        Err(e) => return wire::error(proto, 400, &e),
    };
    let mut parts = req.model.split('+');
    let base = parts.next().unwrap_or_default().to_owned();
    let scripted = s.opts.script.get(&base).map(String::as_str).unwrap_or("");
    let b = Behaviour::parse(scripted.split('+').chain(parts));

    if let Some(context) = b.context {
        let prompt =
            crate::tokens::estimate_prompt_tokens(req.messages.iter().map(|(_, t)| t.as_str()));
        if prompt > context {
            return wire::context_exceeded(proto, prompt, context);
        }
    }
    if let Some(refused) = wire::rejected(proto, &raw, &b.rejects) {
        return refused;
    }
    let (outcome, jitter) = {
        let mut rng = s.rng.lock().unwrap_or_else(|p| p.into_inner());
        let server_fail = (s.opts.fail_rate > 0.0 && rng.random_bool(s.opts.fail_rate.min(1.0)))
            .then_some(s.opts.fail_status);
        let jitter = b.jitter.mul_f64(rng.random::<f64>());
        (behaviour::outcome(&b, seen, server_fail, &mut *rng), jitter)
    };
    let delay = s.opts.latency + b.delay + jitter;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let answer = || {
        let echo: String = if req.tool_results.is_empty() {
            req.messages
                .iter()
                .rev()
                .find(|(role, _)| role == "user")
                .map(|(_, t)| t.chars().take(200).collect())
                .unwrap_or_default()
        } else {
            format!("tool said: {}", req.tool_results.join(" | "))
        };
        // What a model that saw images would say, so tests can tell.
        let echo = if images > 0 {
            format!("{echo} [{images} image(s)]")
        } else {
            echo
        };
        let mut a = wire::Answer::new(&base, &echo, &req, !b.no_usage, b.cached);
        a.reasoning = b.reasoning;
        a.cache_write = b.cache_write;
        if let Some(schema) = &req.json {
            a.json(schema, &echo);
        }
        // A forced choice is a call whatever the directives say.
        let forced = matches!(
            req.tool_choice,
            ToolsAllowed::Required | ToolsAllowed::Only(_)
        );
        if let Some(n) = b.tool_calls.or(forced.then_some(1)) {
            a.call_tools(&req, n, &echo);
        }
        a
    };
    match outcome {
        Outcome::Hang => std::future::pending().await,
        Outcome::Fail(code) => wire::error(proto, code, &format!("scripted failure {code}")),
        Outcome::RateLimited(ra) => wire::rate_limited(proto, ra),
        Outcome::Reset => wire::reset(),
        Outcome::BadJson => wire::bad_json(),
        Outcome::Truncate => wire::truncated(proto, &req.model, &answer()),
        Outcome::Answer if req.stream => {
            let delay = b.stream_delay.unwrap_or(s.opts.stream_delay);
            wire::stream(proto, &req.model, answer(), b.cut_stream, delay)
        }
        Outcome::Answer => wire::plain(proto, &req.model, &answer()),
    }
}
