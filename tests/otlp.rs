//! OTLP trace export, end to end: the real `switchyard serve` process
//! (the binary, so its tracing setup and shutdown flush are what is tested)
//! exports to a real OTLP/HTTP receiver on loopback, which decodes the
//! protobuf body with the OpenTelemetry proto types.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use common::{Mock, complete_req, mock_config_toml};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
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
        axum::routing::post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
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
                        });
                    }
                }
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
        let body = json!({"model": "cheap", "messages": [{"role": "user", "content": "hi"}]});
        let resp = reqwest::Client::new()
            .post(format!("http://{}/v1/chat/completions", self.http))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.headers()["x-switchyard-decision-id"]
            .to_str()
            .unwrap()
            .to_string()
    }

    async fn complete(&self) -> String {
        let mut client =
            switchyard::pb::router_client::RouterClient::connect(format!("http://{}", self.grpc))
                .await
                .unwrap();
        let r = client
            .complete(complete_req("hello there", Some("mid")))
            .await
            .unwrap();
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
}

/// Serves 40 requests and shuts down with spans bound for `endpoint`, a
/// collector that fails every export: neither waits on the exporter.
async fn serve_beside_a_failing_collector(mock: &Mock, endpoint: &str, shutdown_limit: Duration) {
    let serve = Serve::start(
        mock,
        &format!("otlp_endpoint = \"{endpoint}\"\nbatch_delay_ms = 50\nexport_timeout_ms = 1000\n"),
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
    eprintln!("40 requests: {took:?}");
    assert!(took < Duration::from_secs(10), "40 requests took {took:?}");
    // Shutdown still completes: the flush gives up after export_timeout.
    let took = serve.terminate().await;
    eprintln!("shutdown: {took:?}");
    assert!(took < shutdown_limit, "shutdown took {took:?}");
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
