//! The core's error, in the terms a caller can act on, with the underlying
//! cause kept as its [`source`](std::error::Error::source); every conversion
//! into it; and its two outward mappings side by side: to a gRPC status and
//! to an OpenAI-style HTTP error. Messages name the offending field so a
//! client can fix its request.

use axum::http::StatusCode;
use tonic::{Code, Status};

use crate::classify::ClassifyError;
use crate::dispatch::{Blame, DispatchError};
use crate::store::StoreError;

/// What caused an error, when something below the core did.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {message}")]
    InvalidArgument {
        field: String,
        message: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("{field}: {message}")]
    NotFound { field: String, message: String },
    #[error("{message}")]
    ResourceExhausted {
        message: String,
        /// When trying again may succeed, when known.
        retry_after: Option<std::time::Duration>,
        #[source]
        source: Option<Cause>,
    },
    #[error("{message}")]
    FailedPrecondition {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("{message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("{message}")]
    DeadlineExceeded {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// Over an API key's rate limit (`what`: "requests" or "tokens", `max`
    /// per minute); the call may succeed after `retry_after`.
    #[error("{message}")]
    RateLimited {
        message: String,
        what: &'static str,
        max: u32,
        retry_after: std::time::Duration,
    },
    /// A budget would be passed (OpenAI's `insufficient_quota`).
    #[error("{message}")]
    QuotaExceeded { message: String },
    /// No valid API key (missing, unknown or revoked).
    #[error("{message}")]
    Unauthenticated { message: String },
    /// The key may not do this (use that model, reach the admin API).
    #[error("{message}")]
    PermissionDenied { message: String },
    #[error("internal error: {message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Cause>,
    },
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
            source: None,
        }
    }

    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::NotFound {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn exhausted(message: impl Into<String>) -> Self {
        Error::ResourceExhausted {
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    pub fn precondition(message: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            message: message.into(),
            source: None,
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    pub fn deadline(message: impl Into<String>) -> Self {
        Error::DeadlineExceeded {
            message: message.into(),
            source: None,
        }
    }

    pub fn rate_limited(
        message: impl Into<String>,
        what: &'static str,
        max: u32,
        retry_after: std::time::Duration,
    ) -> Self {
        Error::RateLimited {
            message: message.into(),
            what,
            max,
            retry_after,
        }
    }

    pub fn quota(message: impl Into<String>) -> Self {
        Error::QuotaExceeded {
            message: message.into(),
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Error::Unauthenticated {
            message: message.into(),
        }
    }

    pub fn permission(message: impl Into<String>) -> Self {
        Error::PermissionDenied {
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            source: None,
        }
    }

    /// The same error, caused by `cause` (kept as its `source()`).
    pub fn because(mut self, cause: impl Into<Cause>) -> Self {
        match &mut self {
            Error::InvalidArgument { source, .. }
            | Error::ResourceExhausted { source, .. }
            | Error::FailedPrecondition { source, .. }
            | Error::Unavailable { source, .. }
            | Error::DeadlineExceeded { source, .. }
            | Error::Internal { source, .. } => *source = Some(cause.into()),
            Error::NotFound { .. }
            | Error::RateLimited { .. }
            | Error::QuotaExceeded { .. }
            | Error::Unauthenticated { .. }
            | Error::PermissionDenied { .. } => {}
        }
        self
    }

    /// The same error, telling the caller when to try again.
    pub fn retry_after_this(mut self, wait: std::time::Duration) -> Self {
        if let Error::ResourceExhausted { retry_after, .. } = &mut self {
            *retry_after = Some(wait);
        }
        self
    }

    /// How long a rate-limited or shed caller should wait.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => Some(*retry_after),
            Error::ResourceExhausted { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The field a client got wrong, where one did.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::InvalidArgument { field, .. } | Error::NotFound { field, .. } => Some(field),
            _ => None,
        }
    }

    /// A provider call's last failure, as the RPC's error. `context` names the
    /// decision, model, provider and attempts; `deadline_passed` tells a
    /// timeout that ran out the request's deadline from one that did not.
    pub fn from_dispatch(context: String, e: DispatchError, deadline_passed: bool) -> Self {
        let error = match (&e, e.http_status()) {
            (_, Some(_)) if matches!(e.blame(), Blame::Request | Blame::Fit) => Error::invalid(
                "messages",
                format!("the provider rejected the request ({context})"),
            ),
            (_, Some(401 | 403 | 404)) => Error::precondition(context),
            // The provider's own Retry-After when it gave one.
            (_, Some(429)) => Error::exhausted(context)
                .retry_after_this(e.retry_after().unwrap_or(std::time::Duration::from_secs(1))),
            (DispatchError::Timeout(_), None) if deadline_passed => Error::deadline(context),
            _ => Error::unavailable(context),
        };
        error.because(e)
    }

    /// The gRPC status code.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound { .. } => Code::NotFound,
            Error::ResourceExhausted { .. }
            | Error::RateLimited { .. }
            | Error::QuotaExceeded { .. } => Code::ResourceExhausted,
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::Unavailable { .. } => Code::Unavailable,
            Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Error::Unauthenticated { .. } => Code::Unauthenticated,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::Internal { .. } => Code::Internal,
        }
    }

    /// The OpenAI-style HTTP mapping: status, error `type` and `code`, chosen
    /// so an OpenAI SDK raises its usual exception class (400
    /// BadRequestError, 404 NotFoundError, 422 UnprocessableEntityError, 429
    /// RateLimitError, 5xx InternalServerError / APIStatusError).
    pub fn openai(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Error::InvalidArgument { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_value",
            ),
            Error::NotFound { field, .. } => {
                let code = match field.as_str() {
                    "model" | "candidates" => "model_not_found",
                    "decision_id" => "decision_not_found",
                    _ => "not_found",
                };
                (StatusCode::NOT_FOUND, "invalid_request_error", code)
            }
            Error::ResourceExhausted { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limited",
            ),
            // No eligible model, a pinned model that cannot serve, a provider
            // that refuses our credentials: the request is well formed but
            // cannot be served as configured.
            Error::FailedPrecondition { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                "no_eligible_model",
            ),
            Error::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "upstream_unavailable",
            ),
            Error::DeadlineExceeded { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "api_error",
                "deadline_exceeded",
            ),
            Error::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limit_exceeded",
            ),
            Error::QuotaExceeded { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "insufficient_quota",
            ),
            Error::Unauthenticated { .. } => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_api_key",
            ),
            Error::PermissionDenied { .. } => (
                StatusCode::FORBIDDEN,
                "permission_error",
                "permission_denied",
            ),
            Error::Internal { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "internal_error",
            ),
        }
    }
}

/// A wait as `Retry-After` says it: whole seconds, rounded up so a client
/// never comes back early, and at least 1.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    let up = u64::from(wait.subsec_nanos() > 0);
    wait.as_secs().saturating_add(up).max(1)
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let mut status = Status::new(e.code(), e.to_string());
        // When to retry, in whole seconds as HTTP's Retry-After says it.
        if let Some(wait) = e.retry_after()
            && let Ok(v) = retry_after_secs(wait).to_string().parse()
        {
            status.metadata_mut().insert("retry-after", v);
        }
        status
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DecisionNotFound(id) => {
                Error::not_found("decision_id", format!("no decision with id {id}"))
            }
            StoreError::Closed => Error::unavailable("the server is shutting down").because(e),
            StoreError::JournalFull(_) => Error::unavailable(
                "the database is unreachable and this replica's journal is full; retry on another replica",
            )
            .because(e),
            other => {
                tracing::error!(error = %other, "store failure");
                Error::internal("the decision log could not be written").because(other)
            }
        }
    }
}

impl From<ClassifyError> for Error {
    fn from(e: ClassifyError) -> Self {
        match e {
            // The queue clears within its time bound: one second is ample.
            ClassifyError::Overloaded => Error::exhausted(
                "the classifier is over capacity (its queue is full or too slow to clear in time); retry shortly",
            )
            .retry_after_this(std::time::Duration::from_secs(1))
            .because(e),
            ClassifyError::EmptyText => Error::invalid("messages", "no message has text to read"),
            ClassifyError::WorkersGone => {
                Error::unavailable("the classifier is shutting down").because(e)
            }
            other => {
                tracing::error!(error = %other, "classifier failure");
                Error::internal(format!("classifier: {other}")).because(other)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::time::Duration;

    use super::*;

    #[test]
    fn provider_failures_keep_their_cause_and_map_by_blame() {
        let status = |s: u16| DispatchError::Status {
            status: s,
            message: "no".into(),
            retry_after: None,
        };
        let cases = [
            (status(400), Code::InvalidArgument),
            (status(422), Code::InvalidArgument),
            (status(401), Code::FailedPrecondition),
            (status(429), Code::ResourceExhausted),
            (status(503), Code::Unavailable),
            (DispatchError::Connect("reset".into()), Code::Unavailable),
        ];
        for (e, code) in cases {
            let err = Error::from_dispatch("ctx".into(), e, false);
            assert_eq!(err.code(), code, "{err}");
            assert!(err.source().is_some(), "{err} lost its cause");
        }
        let late = Error::from_dispatch("ctx".into(), DispatchError::Timeout(Duration::ZERO), true);
        assert_eq!(late.code(), Code::DeadlineExceeded);
    }

    #[test]
    fn store_failures_are_internal_with_their_cause() {
        let e = Error::from(StoreError::Closed);
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.source().is_some());
    }
}
