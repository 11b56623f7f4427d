//! OpenAI-style error bodies: `{"error": {"message", "type", "param", "code"}}`
//! with the HTTP status an OpenAI SDK maps to the right exception class
//! (400 BadRequestError, 404 NotFoundError, 413, 422 UnprocessableEntityError,
//! 429 RateLimitError, 5xx InternalServerError / APIStatusError).

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
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, code: &'static str, msg: String) -> Self {
        ApiError {
            status,
            kind,
            code,
            param: None,
            message: msg,
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidArgument { field, .. } => ApiError {
                param: Some(field),
                ..ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_value",
                    message,
                )
            },
            Error::NotFound { field, .. } => {
                let code = match field.as_str() {
                    "model" | "candidates" => "model_not_found",
                    "decision_id" => "decision_not_found",
                    _ => "not_found",
                };
                ApiError {
                    param: Some(field),
                    ..ApiError::new(
                        StatusCode::NOT_FOUND,
                        "invalid_request_error",
                        code,
                        message,
                    )
                }
            }
            Error::ResourceExhausted(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limited",
                message,
            ),
            // No eligible model, a pinned model that cannot serve, a provider
            // that refuses our credentials: the request is well formed but
            // cannot be served as configured.
            Error::FailedPrecondition(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                "no_eligible_model",
                message,
            ),
            Error::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "upstream_unavailable",
                message,
            ),
            Error::DeadlineExceeded(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "api_error",
                "deadline_exceeded",
                message,
            ),
            Error::Internal(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "internal_error",
                message,
            ),
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
