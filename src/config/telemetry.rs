//! The `[telemetry]` section: optional OTLP trace export. Kept apart
//! from the other sections so the exporter's knobs stay in one place.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    pub(super) otlp_endpoint: Option<String>,
    pub(super) otlp_protocol: Option<String>,
    pub(super) service_name: Option<String>,
    pub(super) sample_ratio: Option<f64>,
    pub(super) batch_delay_ms: Option<u64>,
    pub(super) export_timeout_ms: Option<u64>,
}

/// How spans travel to the collector (the names of `OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `"http/protobuf"`: `POST <endpoint>/v1/traces`, port 4318 by convention.
    HttpProtobuf,
    /// `"grpc"`: the `TraceService/Export` RPC, port 4317 by convention.
    Grpc,
}

/// Where and how request spans are exported; `otlp_endpoint: None` is off.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The collector's traces URL. Over HTTP, e.g.
    /// `http://127.0.0.1:4318/v1/traces`: a base URL without a path gets
    /// `/v1/traces` appended, as OTLP clients conventionally do. Over gRPC
    /// the base URL, e.g. `http://127.0.0.1:4317`.
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    /// `service.name` resource attribute of every exported span.
    pub service_name: String,
    /// Share of root spans exported, in [0, 1] (children follow their root).
    pub sample_ratio: f64,
    /// How often queued spans are sent.
    pub batch_delay: Duration,
    /// Per-export HTTP timeout: bounds what an unreachable collector can cost
    /// the (background) exporter, and the flush at shutdown.
    pub export_timeout: Duration,
}

pub(super) fn validate(t: RawTelemetry, d: RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
    let protocol = t.otlp_protocol.or(d.otlp_protocol);
    let otlp_protocol = match protocol.as_deref().unwrap_or("http/protobuf") {
        "http/protobuf" => OtlpProtocol::HttpProtobuf,
        "grpc" => OtlpProtocol::Grpc,
        other => {
            return Err(invalid(
                "telemetry.otlp_protocol",
                format!("{other:?} is not \"http/protobuf\" or \"grpc\""),
            ));
        }
    };
    let endpoint = t.otlp_endpoint.or(d.otlp_endpoint).unwrap_or_default();
    let otlp_endpoint = match endpoint.trim() {
        "" => None,
        url => Some(traces_url(url, otlp_protocol)?),
    };
    let service_name = t
        .service_name
        .or(d.service_name)
        .unwrap_or_else(|| "switchyard".into());
    if service_name.trim().is_empty() {
        return Err(invalid("telemetry.service_name", "must not be empty"));
    }
    let sample_ratio = t.sample_ratio.or(d.sample_ratio).unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(invalid(
            "telemetry.sample_ratio",
            format!("{sample_ratio} is not in [0, 1]"),
        ));
    }
    let ms = |field: &str, v: Option<u64>, default: u64| match v.unwrap_or(default) {
        0 => Err(invalid(format!("telemetry.{field}"), "must be positive")),
        n => Ok(Duration::from_millis(n)),
    };
    Ok(TelemetryConfig {
        otlp_endpoint,
        otlp_protocol,
        service_name,
        sample_ratio,
        batch_delay: ms(
            "batch_delay_ms",
            t.batch_delay_ms.or(d.batch_delay_ms),
            5_000,
        )?,
        export_timeout: ms(
            "export_timeout_ms",
            t.export_timeout_ms.or(d.export_timeout_ms),
            10_000,
        )?,
    })
}

/// Checks an `http(s)://host[:port][/path]` URL and returns the traces URL.
/// Parsed with the `http` crate's URI grammar (already in the graph) rather
/// than left to fail at the first export, hours into a run.
fn traces_url(url: &str, protocol: OtlpProtocol) -> Result<String, ConfigError> {
    let bad = |why: String| invalid("telemetry.otlp_endpoint", format!("{url:?}: {why}"));
    let uri: axum::http::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("must start with http:// or https://".into())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("has no host".into()));
    }
    if uri.query().is_some() {
        return Err(bad("must not have a query string".into()));
    }
    Ok(match (protocol, uri.path()) {
        (OtlpProtocol::HttpProtobuf, "" | "/") => {
            format!("{}/v1/traces", url.trim_end_matches('/'))
        }
        (OtlpProtocol::HttpProtobuf, _) => url.to_string(),
        // The RPC names its own path: a path here would be silently dropped.
        (OtlpProtocol::Grpc, "" | "/") => url.trim_end_matches('/').to_string(),
        (OtlpProtocol::Grpc, path) => {
            return Err(bad(format!(
                "a gRPC endpoint is scheme, host and port; drop the path {path:?}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(endpoint: &str) -> RawTelemetry {
        RawTelemetry {
            otlp_endpoint: Some(endpoint.into()),
            ..RawTelemetry::default()
        }
    }

    #[test]
    fn endpoint_is_checked_and_completed() {
        let ok = |e: &str| validate(raw(e), RawTelemetry::default()).unwrap();
        assert!(ok("").otlp_endpoint.is_none());
        assert_eq!(
            ok("http://127.0.0.1:4318").otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(
            ok("https://otel.example:4318/custom/traces")
                .otlp_endpoint
                .as_deref(),
            Some("https://otel.example:4318/custom/traces")
        );
        for bad in [
            "localhost:4318",
            "ftp://x/v1/traces",
            "http://",
            "http://h/?a=1",
        ] {
            let e = validate(raw(bad), RawTelemetry::default()).unwrap_err();
            assert!(
                e.to_string().contains("telemetry.otlp_endpoint"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_protocol_is_checked_and_shapes_the_endpoint() {
        let grpc = |e: &str| RawTelemetry {
            otlp_protocol: Some("grpc".into()),
            ..raw(e)
        };
        let t = validate(grpc("http://127.0.0.1:4317/"), RawTelemetry::default()).unwrap();
        assert_eq!(t.otlp_protocol, OtlpProtocol::Grpc);
        assert_eq!(t.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        let e = validate(grpc("http://h:4317/v1/traces"), RawTelemetry::default()).unwrap_err();
        assert!(e.to_string().contains("drop the path"), "{e}");
        let t = validate(raw("http://h:4318"), RawTelemetry::default()).unwrap();
        assert_eq!(t.otlp_protocol, OtlpProtocol::HttpProtobuf);
        let r = RawTelemetry {
            otlp_protocol: Some("http/json".into()),
            ..raw("http://h:4318")
        };
        let e = validate(r, RawTelemetry::default()).unwrap_err();
        assert!(e.to_string().contains("telemetry.otlp_protocol"), "{e}");
    }

    #[test]
    fn ratio_and_durations_are_checked() {
        let r = RawTelemetry {
            sample_ratio: Some(1.5),
            ..RawTelemetry::default()
        };
        let e = validate(r, RawTelemetry::default()).unwrap_err();
        assert!(e.to_string().contains("telemetry.sample_ratio"), "{e}");
        let r = RawTelemetry {
            batch_delay_ms: Some(0),
            ..RawTelemetry::default()
        };
        let e = validate(r, RawTelemetry::default()).unwrap_err();
        assert!(e.to_string().contains("telemetry.batch_delay_ms"), "{e}");
    }
}
