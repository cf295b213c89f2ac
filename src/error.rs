//! The crate's request-path error and its two renderings: Anthropic's error
//! envelope on `/v1/*` and `{"error":{...}}` on `/api/*` and the probes.
//!
//! `into_response` has no side effects; the internal cause of a 500 travels
//! in a response extension and `server` logs it. Every error response says
//! who produced it in `x-abridge-error-source` (`gateway` or `upstream`), as
//! linkerd's `l5d-proxy-error` does. Start-up and the CLI use `anyhow`.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error on the request path, in Anthropic's vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Authentication(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    /// The change contradicts the stored state (a duplicate, the last admin).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    RequestTooLarge(String),
    /// The client did not send its whole request body in time.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    RateLimited(String),
    /// The gateway itself cannot take the request now.
    #[error("{0}")]
    Overloaded(String),
    /// No upstream connection came free in time: our own 529, with a
    /// `retry-after` for the client.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The upstream's error (or its failure to answer usably), in
    /// Anthropic's shape: the type follows the status ([`type_for_status`]);
    /// `headers` are the upstream's to relay (`retry-after`, rate limits).
    #[error("{message}")]
    Upstream {
        status: StatusCode,
        message: String,
        headers: HeaderMap,
    },
    /// Bug or infrastructure failure; the client sees a generic message.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

/// The internal cause of a 500, for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Error::Authentication(_) => StatusCode::UNAUTHORIZED,
            Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::RequestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Overloaded(_) | Error::Busy { .. } => {
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            Error::Upstream { status, .. } => *status,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Anthropic's `error.type` for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request_error",
            Error::Authentication(_) => "authentication_error",
            Error::PermissionDenied(_) => "permission_error",
            Error::NotFound(_) => "not_found_error",
            Error::Conflict(_) => "conflict_error",
            Error::RequestTooLarge(_) => "request_too_large",
            Error::RequestTimeout(_) => "timeout_error",
            Error::RateLimited(_) => "rate_limit_error",
            Error::Overloaded(_) | Error::Busy { .. } => "overloaded_error",
            Error::Upstream { status, .. } => type_for_status(status.as_u16()),
            Error::Internal(_) => "api_error",
        }
    }

    fn source_label(&self) -> &'static str {
        match self {
            Error::Upstream { .. } => "upstream",
            _ => "gateway",
        }
    }

    fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "internal server error".to_string(),
            other => other.to_string(),
        }
    }

    /// The JSON body Anthropic would send, also used for SSE `error` events.
    pub fn anthropic_body(&self) -> serde_json::Value {
        json!({"type": "error", "error": {"type": self.kind(), "message": self.public_message()}})
    }

    fn finish(self, body: serde_json::Value) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-abridge-error-source",
            HeaderValue::from_static(self.source_label()),
        );
        match &self {
            Error::Authentication(_) => {
                headers.insert("www-authenticate", HeaderValue::from_static("Bearer"));
            }
            Error::Busy { retry_after, .. } => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                headers.insert("retry-after", HeaderValue::from(secs));
            }
            Error::Upstream {
                headers: upstream, ..
            } => {
                for (name, value) in upstream {
                    headers.append(name.clone(), value.clone());
                }
            }
            _ => {}
        }
        if matches!(self, Error::RequestTimeout(_)) {
            // The rest of the body may still be on its way: this connection
            // cannot carry another request.
            headers.insert("connection", HeaderValue::from_static("close"));
        }
        let mut response = (self.status(), headers, axum::Json(body)).into_response();
        if let Error::Internal(cause) = &self {
            response
                .extensions_mut()
                .insert(InternalCause(format!("{cause:#}")));
        }
        response
    }

    /// Renders as `{"error":{"type","message"}}` for `/api/*` and probes.
    pub fn into_api_response(self) -> Response {
        let body = json!({"error": {"type": self.kind(), "message": self.public_message()}});
        self.finish(body)
    }
}

/// Anthropic's `error.type` for an HTTP status (Anthropic's errors page:
/// other 4xx are `invalid_request_error`, other 5xx `api_error`).
pub fn type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

impl IntoResponse for Error {
    /// The `/v1` rendering: Anthropic's envelope.
    fn into_response(self) -> Response {
        let body = self.anthropic_body();
        self.finish(body)
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::Conflict(message) => Error::Conflict(message),
            StoreError::NotFound(message) => Error::NotFound(message),
            other => Error::Internal(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_statuses_follow_anthropic() {
        let cases = [
            (
                Error::InvalidRequest("x".into()),
                400,
                "invalid_request_error",
            ),
            (
                Error::Authentication("x".into()),
                401,
                "authentication_error",
            ),
            (Error::NotFound("x".into()), 404, "not_found_error"),
            (Error::Conflict("x".into()), 409, "conflict_error"),
            (Error::RequestTooLarge("x".into()), 413, "request_too_large"),
            (Error::RequestTimeout("x".into()), 408, "timeout_error"),
            (Error::RateLimited("x".into()), 429, "rate_limit_error"),
            (Error::Overloaded("x".into()), 529, "overloaded_error"),
            (
                Error::Internal(anyhow::anyhow!("secret detail")),
                500,
                "api_error",
            ),
        ];
        for (err, status, kind) in cases {
            assert_eq!(err.status().as_u16(), status);
            assert_eq!(err.kind(), kind);
        }
    }

    #[test]
    fn upstream_errors_take_anthropics_type_for_their_status() {
        let table = [
            (400, "invalid_request_error"),
            (402, "billing_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (409, "invalid_request_error"),
            (413, "request_too_large"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ];
        for (status, kind) in table {
            let mut headers = HeaderMap::new();
            headers.insert("retry-after", HeaderValue::from_static("7"));
            let err = Error::Upstream {
                status: StatusCode::from_u16(status).unwrap(),
                message: "upstream said no".into(),
                headers,
            };
            assert_eq!((err.status().as_u16(), err.kind()), (status, kind));
            let response = err.into_response();
            assert_eq!(response.headers()["retry-after"], "7");
            assert_eq!(response.headers()["x-abridge-error-source"], "upstream");
        }
    }

    #[test]
    fn busy_is_our_own_529_with_retry_after() {
        let err = Error::Busy {
            message: "busy".into(),
            retry_after: std::time::Duration::from_millis(2500),
        };
        assert_eq!(
            (err.status().as_u16(), err.kind()),
            (529, "overloaded_error")
        );
        let response = err.into_response();
        assert_eq!(response.headers()["retry-after"], "3");
        assert_eq!(response.headers()["x-abridge-error-source"], "gateway");
    }

    #[test]
    fn internal_details_stay_internal() {
        let err = Error::Internal(anyhow::anyhow!("secret detail"));
        let body = err.anthropic_body();
        assert_eq!(body["type"], "error");
        assert!(!body.to_string().contains("secret detail"));
        let response = err.into_response();
        let cause = response.extensions().get::<InternalCause>().unwrap();
        assert!(cause.0.contains("secret detail"));
    }
}
