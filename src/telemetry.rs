//! Process-wide tracing: log lines on stderr, plus (when
//! `telemetry.otlp_endpoint` is set) every request span exported over OTLP,
//! HTTP or gRPC, with its `decision_id` attribute.
//!
//! Export runs on the SDK's own batch thread, so a slow or dead collector
//! never touches the request path: spans queue (bounded; the overflow is
//! dropped) and are sent every `batch_delay`. Over HTTP the batch thread
//! uses a blocking client; over gRPC the channel lives on a one-thread
//! runtime of its own, not on the runtime that serves requests.
//!
//! A caller's W3C trace context (`traceparent`, `tracestate` in HTTP headers
//! or gRPC metadata) becomes the parent of the request's span, so a trace
//! that starts in the caller's service continues through the router.

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{OtlpProtocol, TelemetryConfig};

/// The default log filter when `RUST_LOG` is unset.
const DEFAULT_FILTER: &str = "info,sqlx=warn,h2=warn,tower=warn";

/// Keeps the exporter alive; dropping it flushes queued spans (bounded by
/// `export_timeout`) so a graceful shutdown loses none.
#[must_use = "dropping the guard stops the export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Drives the gRPC exporter's channel; outlives the flush at shutdown.
    grpc_runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            // The subscriber may be gone by now; stderr is not.
            eprintln!("telemetry: flushing spans at shutdown failed: {e}");
        }
        if let Some(rt) = self.grpc_runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Installs the global subscriber: stderr logs, and OTLP export when `otlp`
/// names an endpoint. Call once, outside any async runtime (the exporter's
/// blocking client must not be built or dropped on a runtime thread).
pub fn init(otlp: Option<&TelemetryConfig>) -> anyhow::Result<Telemetry> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| DEFAULT_FILTER.into());
    // `RUST_LOG` filters the log lines only: export keeps every request span
    // even when the logs are turned down to warnings.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let (provider, grpc_runtime) = match otlp {
        Some(cfg) if cfg.otlp_endpoint.is_some() => {
            let (p, rt) = provider(cfg)?;
            (Some(p), rt)
        }
        _ => (None, None),
    };
    let otel = provider.as_ref().map(|p| {
        // Only our own spans: the exporter's HTTP client is instrumented too,
        // and exporting its spans would feed the export back into itself.
        let ours = tracing_subscriber::filter::Targets::new()
            .with_target("switchyard", tracing::Level::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("switchyard"))
            .with_filter(ours)
    });
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .context("installing the tracing subscriber")?;
    if let Some(cfg) = otlp.filter(|_| provider.is_some()) {
        tracing::info!(
            endpoint = cfg.otlp_endpoint.as_deref().unwrap_or_default(),
            service = %cfg.service_name,
            sample_ratio = cfg.sample_ratio,
            protocol = ?cfg.otlp_protocol,
            "exporting traces over OTLP"
        );
    }
    Ok(Telemetry {
        provider,
        grpc_runtime,
    })
}

/// The tracer provider: an OTLP exporter behind a batch processor, and the
/// runtime a gRPC exporter needs.
fn provider(
    cfg: &TelemetryConfig,
) -> anyhow::Result<(SdkTracerProvider, Option<tokio::runtime::Runtime>)> {
    let endpoint = cfg.otlp_endpoint.clone().unwrap_or_default();
    let built = |e: opentelemetry_otlp::ExporterBuildError| {
        anyhow::Error::new(e).context(format!("building the OTLP exporter for {endpoint}"))
    };
    let (exporter, runtime) = match cfg.otlp_protocol {
        OtlpProtocol::HttpProtobuf => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(endpoint.clone())
                .with_timeout(cfg.export_timeout)
                .build()
                .map_err(built)?;
            (exporter, None)
        }
        OtlpProtocol::Grpc => {
            // tonic's channel spawns its connection tasks on the runtime it
            // is built in, and the batch thread only awaits them.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-export")
                .enable_all()
                .build()
                .context("starting the OTLP gRPC exporter's runtime")?;
            let exporter = {
                let _in = runtime.enter();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint.clone())
                    .with_timeout(cfg.export_timeout)
                    .build()
                    .map_err(built)?
            };
            (exporter, Some(runtime))
        }
    };
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(cfg.batch_delay)
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio)));
    let provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build(),
        )
        .with_sampler(sampler)
        .with_resource(
            Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        )
        .build();
    Ok((provider, runtime))
}

/// HTTP headers as a trace-context carrier.
pub struct Headers<'a>(pub &'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// gRPC metadata as a trace-context carrier.
pub struct Metadata<'a>(pub &'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// The caller's trace context, when it sent a valid `traceparent`.
pub fn remote_parent(carrier: &dyn Extractor) -> Option<opentelemetry::Context> {
    carrier.get("traceparent")?;
    let cx = TraceContextPropagator::new().extract(carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `parent` (see [`remote_parent`]) the parent of `span`; call before
/// the span is first entered. Without export there is nothing to continue.
pub fn continue_trace(span: &tracing::Span, parent: Option<opentelemetry::Context>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if let Some(cx) = parent {
        let _ = span.set_parent(cx);
    }
}
