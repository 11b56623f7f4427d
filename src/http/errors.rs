//! OpenAI-style error bodies: `{"error": {"message", "type", "param", "code"}}`,
//! for the core's errors (mapped in [`crate::error`]) and for what only the
//! HTTP front can reject (an unreadable body, an unsupported parameter).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub param: Option<String>,
    pub message: String,
    /// When to retry, and why: answered as `Retry-After` (and
    /// `x-ratelimit-*` for a rate limit).
    pub rate: Option<Box<Throttle>>,
}

/// Why a caller should come back later.
#[derive(Debug, Clone, Copy)]
pub enum Throttle {
    /// A rate limit's name ("requests", "tokens"), its maximum per minute,
    /// and when it has room again.
    Limit(&'static str, u32, std::time::Duration),
    /// The service is over its capacity now; try again after this.
    Overload(std::time::Duration),
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, code: &'static str, msg: String) -> Self {
        ApiError {
            status,
            kind,
            code,
            param: None,
            message: msg,
            rate: None,
        }
    }

    /// A 400 naming the offending request field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let param = param.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: "invalid_value",
            message: format!("{param}: {}", message.into()),
            param: Some(param),
            rate: None,
        }
    }

    /// A 400 for an OpenAI parameter we cannot honour and will not ignore,
    /// because ignoring it would change what the caller gets back.
    pub fn unsupported(param: &str, why: &str) -> Self {
        ApiError {
            code: "unsupported_parameter",
            ..ApiError::invalid(param, why)
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl ApiError {
    /// `Retry-After` and OpenAI's `x-ratelimit-*` headers for a rate limit.
    pub fn rate_headers(&self, h: &mut axum::http::HeaderMap) {
        let headers = match self.rate.as_deref() {
            None => return,
            Some(&Throttle::Overload(wait)) => vec![("retry-after".to_owned(), seconds(wait))],
            Some(&Throttle::Limit(what, max, wait)) => vec![
                ("retry-after".to_owned(), seconds(wait)),
                (format!("x-ratelimit-limit-{what}"), max.to_string()),
                (format!("x-ratelimit-remaining-{what}"), "0".to_owned()),
                (
                    format!("x-ratelimit-reset-{what}"),
                    format!("{:.3}s", wait.as_secs_f64()),
                ),
            ],
        };
        for (name, value) in headers {
            if let (Ok(n), Ok(v)) = (
                axum::http::HeaderName::try_from(name),
                axum::http::HeaderValue::try_from(value),
            ) {
                h.insert(n, v);
            }
        }
    }
}

fn seconds(wait: std::time::Duration) -> String {
    crate::error::retry_after_secs(wait).to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        self.rate_headers(resp.headers_mut());
        resp
    }
}

/// The mapping itself is [`Error::openai`], beside the gRPC one.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, kind, code) = e.openai();
        ApiError {
            status,
            kind,
            code,
            param: e.field().map(str::to_owned),
            message: e.to_string(),
            rate: match &e {
                Error::RateLimited {
                    what,
                    max,
                    retry_after,
                    ..
                } => Some(Box::new(Throttle::Limit(what, *max, *retry_after))),
                _ => e.retry_after().map(|w| Box::new(Throttle::Overload(w))),
            },
        }
    }
}

/// A body that could not be read or parsed: 413 when over the limit, 400 for
/// bad JSON or a wrong shape (serde's message names the field and column).
pub fn bad_body(e: axum::extract::rejection::BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            "the request body exceeds server.max_request_bytes".into(),
        );
    }
    ApiError::new(
        e.status(),
        "invalid_request_error",
        "invalid_body",
        e.body_text(),
    )
}

pub fn bad_json(e: serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_json",
        format!("the body is not a valid request: {e}"),
    )
}
