//! The `[telemetry]` section: optional OTLP trace export. Kept apart
//! from the other sections so the exporter's knobs stay in one place.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    pub(super) otlp_endpoint: String,
    pub(super) otlp_protocol: OtlpProtocol,
    pub(super) service_name: String,
    pub(super) sample_ratio: f64,
    #[serde(rename = "batch_delay_ms", deserialize_with = "super::raw::millis")]
    pub(super) batch_delay: Duration,
    #[serde(rename = "export_timeout_ms", deserialize_with = "super::raw::millis")]
    pub(super) export_timeout: Duration,
    pub(super) metric_tenants: Vec<String>,
}

/// How spans travel to the collector (the names of `OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// `"http/protobuf"`: `POST <endpoint>/v1/traces`, port 4318 by convention.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// `"grpc"`: the `TraceService/Export` RPC, port 4317 by convention.
    #[serde(rename = "grpc")]
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
    /// Tenants that get their own `tenant` label in `/metrics` (the rest: `other`).
    pub metric_tenants: Vec<String>,
}

pub(super) fn validate(t: RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
    let otlp_endpoint = match t.otlp_endpoint.trim() {
        "" => None,
        url => Some(traces_url(url, t.otlp_protocol)?),
    };
    if t.service_name.trim().is_empty() {
        return Err(invalid("telemetry.service_name", "must not be empty"));
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        return Err(invalid(
            "telemetry.sample_ratio",
            format!("{} is not in [0, 1]", t.sample_ratio),
        ));
    }
    let positive = |field: &str, d: Duration| {
        if d.is_zero() {
            Err(invalid(format!("telemetry.{field}"), "must be positive"))
        } else {
            Ok(d)
        }
    };
    Ok(TelemetryConfig {
        otlp_endpoint,
        otlp_protocol: t.otlp_protocol,
        service_name: t.service_name,
        sample_ratio: t.sample_ratio,
        batch_delay: positive("batch_delay_ms", t.batch_delay)?,
        export_timeout: positive("export_timeout_ms", t.export_timeout)?,
        metric_tenants: t.metric_tenants,
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
    use crate::config::{Config, ConfigError};

    /// `[telemetry]` with `keys` over the defaults.
    fn telemetry(keys: &str) -> Result<TelemetryConfig, ConfigError> {
        Config::from_toml(&format!("[telemetry]\n{keys}\n")).map(|c| c.telemetry)
    }

    fn endpoint(e: &str) -> Result<TelemetryConfig, ConfigError> {
        telemetry(&format!("otlp_endpoint = {e:?}"))
    }

    #[test]
    fn endpoint_is_checked_and_completed() {
        let ok = |e: &str| endpoint(e).unwrap();
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
            let e = endpoint(bad).unwrap_err();
            assert!(
                e.to_string().contains("telemetry.otlp_endpoint"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_protocol_is_checked_and_shapes_the_endpoint() {
        let grpc = |e: &str| telemetry(&format!("otlp_protocol = \"grpc\"\notlp_endpoint = {e:?}"));
        let t = grpc("http://127.0.0.1:4317/").unwrap();
        assert_eq!(t.otlp_protocol, OtlpProtocol::Grpc);
        assert_eq!(t.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        let e = grpc("http://h:4317/v1/traces").unwrap_err();
        assert!(e.to_string().contains("drop the path"), "{e}");
        let t = endpoint("http://h:4318").unwrap();
        assert_eq!(t.otlp_protocol, OtlpProtocol::HttpProtobuf);
        let e = telemetry("otlp_protocol = \"http/json\"").unwrap_err();
        assert!(e.to_string().contains("telemetry.otlp_protocol"), "{e}");
    }

    #[test]
    fn ratio_and_durations_are_checked() {
        let e = telemetry("sample_ratio = 1.5").unwrap_err();
        assert!(e.to_string().contains("telemetry.sample_ratio"), "{e}");
        let e = telemetry("batch_delay_ms = 0").unwrap_err();
        assert!(e.to_string().contains("telemetry.batch_delay_ms"), "{e}");
    }
}
