//! OTLP trace export, end to end: the real `switchyard serve` process
//! (the binary, so its tracing setup and shutdown flush are what is tested)
//! exports to a real OTLP receiver on loopback, over HTTP (decoding the
//! protobuf body with the OpenTelemetry proto types) or gRPC (a tonic
//! `TraceService`).

use crate::common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use common::{Mock, complete_req, free_port, mock_config_toml};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::json;
use tokio::sync::mpsc;

/// One exported span, flattened: service name, span name, string attributes.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    kind: i32,
    attrs: Vec<(String, String)>,
    /// Hex, as in `traceparent`.
    trace_id: String,
    parent_span_id: String,
    duration: Duration,
    /// The export request's `x-api-key` header, if any.
    api_key: Option<String>,
}

impl Exported {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn string_value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// A collector: `POST /v1/traces` with a protobuf body, each span sent on.
async fn collector() -> (SocketAddr, mpsc::UnboundedReceiver<Exported>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let tx = tx.clone();
            let api_key = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
                forward(&tx, req, api_key);
                // An empty ExportTraceServiceResponse: full success.
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

/// A collector's OTLP/gRPC receiver: the `TraceService/Export` RPC.
struct GrpcCollector(mpsc::UnboundedSender<Exported>);

#[tonic::async_trait]
impl TraceService for GrpcCollector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let api_key = request
            .metadata()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        forward(&self.0, request.into_inner(), api_key);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn grpc_collector() -> (SocketAddr, mpsc::UnboundedReceiver<Exported>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(GrpcCollector(tx)))
            .serve_with_incoming(incoming),
    );
    (addr, rx)
}

/// Sends each span of an export request on, flattened.
fn forward(
    tx: &mpsc::UnboundedSender<Exported>,
    req: ExportTraceServiceRequest,
    api_key: Option<String>,
) {
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| string_value(&a.value))
            .unwrap_or_default();
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            let attrs = span
                .attributes
                .iter()
                .map(|a| (a.key.clone(), string_value(&a.value)))
                .collect();
            let _ = tx.send(Exported {
                service: service.clone(),
                name: span.name,
                kind: span.kind,
                attrs,
                trace_id: hex(&span.trace_id),
                parent_span_id: hex(&span.parent_span_id),
                api_key: api_key.clone(),
                duration: Duration::from_nanos(
                    span.end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano),
                ),
            });
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The real binary, serving the mock catalog with this `[telemetry]` section.
struct Serve {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Serve {
    async fn start(mock: &Mock, telemetry: &str) -> Serve {
        Self::start_with_env(mock, telemetry, &[]).await
    }

    /// [`Serve::start`] with these environment variables set for the server.
    async fn start_with_env(mock: &Mock, telemetry: &str, env: &[(&str, &str)]) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let toml = mock_config_toml(&mock.base_url(), &dir.path().join("s.db"))
            .replacen(
                "grpc_listen = \"127.0.0.1:0\"",
                &format!("grpc_listen = \"{grpc}\""),
                1,
            )
            .replacen(
                "http_listen = \"127.0.0.1:0\"",
                &format!("http_listen = \"{http}\""),
                1,
            )
            + "\n[telemetry]\n"
            + telemetry;
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, toml).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let s = Serve {
            child,
            grpc,
            http,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = reqwest::get(format!("http://{http}/readyz")).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return s;
            }
            assert!(Instant::now() < deadline, "switchyard did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn chat(&self) -> String {
        self.chat_traced(None).await
    }

    /// A chat completion, sent with this W3C `traceparent` if any.
    async fn chat_traced(&self, traceparent: Option<&str>) -> String {
        let body = json!({"model": "cheap", "messages": [{"role": "user", "content": "hi"}]});
        let mut req = reqwest::Client::new()
            .post(format!("http://{}/v1/chat/completions", self.http))
            .json(&body);
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.headers()["x-switchyard-decision-id"]
            .to_str()
            .unwrap()
            .to_string()
    }

    async fn complete(&self) -> String {
        self.complete_traced(None).await
    }

    /// A gRPC Complete, sent with this W3C `traceparent` metadata if any.
    async fn complete_traced(&self, traceparent: Option<&str>) -> String {
        let mut client =
            switchyard::pb::router_client::RouterClient::connect(format!("http://{}", self.grpc))
                .await
                .unwrap();
        let mut req = tonic::Request::new(complete_req("hello there", Some("mid")));
        if let Some(tp) = traceparent {
            req.metadata_mut()
                .insert("traceparent", tp.parse().unwrap());
        }
        let r = client.complete(req).await.unwrap();
        r.into_inner().decision_id
    }

    /// SIGTERM (a graceful shutdown), then waits for the process to exit.
    async fn terminate(mut self) -> Duration {
        let started = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = tokio::task::spawn_blocking(move || self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "switchyard exited with {status}");
        started.elapsed()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Waits until a span carrying `decision_id` arrives; returns it.
async fn span_with(rx: &mut mpsc::UnboundedReceiver<Exported>, decision_id: &str) -> Exported {
    let wait = async {
        while let Some(s) = rx.recv().await {
            if s.attr("decision_id") == Some(decision_id) {
                return s;
            }
        }
        panic!("the collector stopped");
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("no exported span carries decision id {decision_id}"))
}

#[tokio::test]
async fn request_spans_are_exported_with_their_decision_id() {
    let mock = Mock::start().await;
    let (addr, mut rx) = collector().await;
    let serve = Serve::start(
        &mock,
        &format!(
            "otlp_endpoint = \"http://{addr}\"\nservice_name = \"switchyard-otlp-test\"\nbatch_delay_ms = 100\n"
        ),
    )
    .await;

    // Exported while serving, on the batch schedule.
    let id = serve.chat().await;
    let span = span_with(&mut rx, &id).await;
    assert_eq!(span.name, "http");
    assert_eq!(span.kind, SpanKind::Server as i32, "{span:?}");
    assert_eq!(span.service, "switchyard-otlp-test");
    assert_eq!(span.attr("route"), Some("chat_completions"), "{span:?}");
    assert_eq!(span.attr("status"), Some("200"), "{span:?}");

    let id = serve.complete().await;
    let span = span_with(&mut rx, &id).await;
    assert_eq!(span.name, "grpc");
    assert_eq!(span.kind, SpanKind::Server as i32, "{span:?}");
    assert_eq!(span.attr("rpc"), Some("Complete"), "{span:?}");

    // A caller's trace continues through us, over either transport.
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace}-{parent}-01");
    let id = serve.chat_traced(Some(&traceparent)).await;
    let span = span_with(&mut rx, &id).await;
    assert_eq!(
        (span.trace_id.as_str(), span.parent_span_id.as_str()),
        (trace, parent)
    );
    let id = serve.complete_traced(Some(&traceparent)).await;
    let span = span_with(&mut rx, &id).await;
    assert_eq!(
        (span.trace_id.as_str(), span.parent_span_id.as_str()),
        (trace, parent)
    );
    // Without one, a request starts its own trace.
    let id = serve.chat().await;
    let span = span_with(&mut rx, &id).await;
    assert_ne!(span.trace_id, trace);
    assert_eq!(span.parent_span_id, "", "{span:?}");
    serve.terminate().await;
}

#[tokio::test]
async fn graceful_shutdown_flushes_queued_spans() {
    let mock = Mock::start().await;
    let (addr, mut rx) = collector().await;
    // A batch delay far longer than the test: only the shutdown flush can
    // deliver the span.
    let serve = Serve::start(
        &mock,
        &format!("otlp_endpoint = \"http://{addr}/v1/traces\"\nbatch_delay_ms = 600000\n"),
    )
    .await;
    let id = serve.complete().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "exported before the batch delay");
    serve.terminate().await;
    let span = span_with(&mut rx, &id).await;
    assert_eq!(span.service, "switchyard");
    assert_eq!(span.api_key, None);
}

/// Exporter headers (a hosted collector's key) come from the standard
/// environment variable, never from the config file.
#[tokio::test]
async fn exporter_headers_come_from_the_environment() {
    let mock = Mock::start().await;
    let (addr, mut rx) = collector().await;
    let serve = Serve::start_with_env(
        &mock,
        &format!("otlp_endpoint = \"http://{addr}\"\nbatch_delay_ms = 100\n"),
        &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-api-key=secret-123")],
    )
    .await;
    let id = serve.chat().await;
    let span = span_with(&mut rx, &id).await;
    assert_eq!(span.api_key.as_deref(), Some("secret-123"));
    serve.terminate().await;
}

/// Over OTLP/gRPC the same spans arrive, with the environment's headers as
/// request metadata, up to the last request before SIGTERM.
#[tokio::test]
async fn spans_are_exported_over_grpc() {
    let mock = Mock::start().await;
    let (addr, mut rx) = grpc_collector().await;
    let serve = Serve::start_with_env(
        &mock,
        &format!(
            "otlp_endpoint = \"http://{addr}\"\notlp_protocol = \"grpc\"\nbatch_delay_ms = 100\n"
        ),
        &[("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=grpc-456")],
    )
    .await;
    let id = serve.chat().await;
    let span = span_with(&mut rx, &id).await;
    assert_eq!(span.name, "http");
    assert_eq!(span.attr("route"), Some("chat_completions"), "{span:?}");
    assert_eq!(span.api_key.as_deref(), Some("grpc-456"));
    let id = serve.complete().await;
    serve.terminate().await;
    let span = span_with(&mut rx, &id).await;
    assert_eq!(span.attr("rpc"), Some("Complete"), "{span:?}");
}

/// A model whose answer trickles in: 100 ms between streamed words.
const TRICKLE: &str = "\n[[models]]\nname = \"trickle\"\nprovider = \"mock\"\n\
    upstream = \"trickle+slowstream100\"\ninput_usd_per_mtok = 0.1\noutput_usd_per_mtok = 0.1\n\
    context_window = 16000\nprior_quality = 0.5\n";

/// A streamed answer's span lasts as long as the stream, on both transports,
/// not just until the handler hands the stream over.
#[tokio::test]
async fn a_streams_span_lasts_until_the_stream_ends() {
    let mock = Mock::start().await;
    let (addr, mut rx) = collector().await;
    let serve = Serve::start(
        &mock,
        &format!("otlp_endpoint = \"http://{addr}\"\nbatch_delay_ms = 100\n{TRICKLE}"),
    )
    .await;

    let started = Instant::now();
    let mut client =
        switchyard::pb::router_client::RouterClient::connect(format!("http://{}", serve.grpc))
            .await
            .unwrap();
    let mut stream = client
        .complete_stream(complete_req("tell me a story", Some("trickle")))
        .await
        .unwrap()
        .into_inner();
    let mut id = String::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        if !chunk.decision_id.is_empty() {
            id = chunk.decision_id;
        }
    }
    let streamed = started.elapsed();
    assert!(streamed > Duration::from_millis(300), "{streamed:?}");
    let span = span_with(&mut rx, &id).await;
    assert_eq!(span.attr("rpc"), Some("CompleteStream"), "{span:?}");
    assert!(
        span.duration > streamed - Duration::from_millis(150),
        "{span:?} vs {streamed:?}"
    );

    let started = Instant::now();
    let body = json!({"model": "trickle", "stream": true,
                      "messages": [{"role": "user", "content": "tell me a story"}]});
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", serve.http))
        .json(&body)
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-switchyard-decision-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = resp.text().await.unwrap();
    let streamed = started.elapsed();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(streamed > Duration::from_millis(300), "{streamed:?}");
    let span = span_with(&mut rx, &id).await;
    assert_eq!(span.attr("route"), Some("chat_completions"), "{span:?}");
    assert!(
        span.duration > streamed - Duration::from_millis(150),
        "{span:?} vs {streamed:?}"
    );
    serve.terminate().await;
}

/// Serves 40 requests and shuts down with spans bound for `endpoint`, a
/// collector that fails every export: neither waits on the exporter.
async fn serve_beside_a_failing_collector(mock: &Mock, endpoint: &str, shutdown_limit: Duration) {
    for protocol in ["http/protobuf", "grpc"] {
        serve_beside(mock, endpoint, protocol, shutdown_limit).await;
    }
}

async fn serve_beside(mock: &Mock, endpoint: &str, protocol: &str, shutdown_limit: Duration) {
    let serve = Serve::start(
        mock,
        &format!(
            "otlp_endpoint = \"{endpoint}\"\notlp_protocol = \"{protocol}\"\n\
             batch_delay_ms = 50\nexport_timeout_ms = 1000\n"
        ),
    )
    .await;
    let started = Instant::now();
    for _ in 0..20 {
        serve.chat().await;
        serve.complete().await;
    }
    // A sanity bound, not a speed target: 40 loopback calls to a pinned mock
    // model take well under a second; a request waiting on the exporter would
    // take export_timeout (1 s) each.
    let took = started.elapsed();
    eprintln!("{protocol}, 40 requests: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "{protocol}: 40 requests took {took:?}"
    );
    // Shutdown still completes: the flush gives up after export_timeout.
    let took = serve.terminate().await;
    eprintln!("{protocol}, shutdown: {took:?}");
    assert!(took < shutdown_limit, "{protocol}: shutdown took {took:?}");
}

#[tokio::test]
async fn a_dead_collector_does_not_disturb_serving() {
    let mock = Mock::start().await;
    // A loopback port nobody listens on: every export is refused.
    let dead = free_port();
    let endpoint = format!("http://127.0.0.1:{dead}");
    serve_beside_a_failing_collector(&mock, &endpoint, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_silent_collector_does_not_disturb_serving() {
    let mock = Mock::start().await;
    // Accepts connections and never answers: each export runs into its timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let endpoint = format!("http://{addr}");
    serve_beside_a_failing_collector(&mock, &endpoint, Duration::from_secs(15)).await;
}
