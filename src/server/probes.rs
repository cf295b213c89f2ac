//! Liveness and readiness probes for systemd and Kubernetes.
//!
//! `/ready` answers anyone with the status only. Its detail (each provider's
//! breaker and key counts, the request-log writer's counters) is shown when
//! `server.ready_detail` is on and the caller presents a valid client API
//! key; the admin API (issue 10) replaces that with an operator credential.
//! It never shows URLs or keys.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;
use super::auth::ClientKey;
use crate::error::Error;

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

/// Liveness: answers without touching anything.
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store answers a query.
async fn ready(state: AppState, caller: Result<ClientKey, Error>) -> Response {
    let detailed = state.settings.server.ready_detail && caller.is_ok();
    if let Err(e) = state.store.ping().await {
        let message = match detailed {
            true => format!("store unavailable: {e}"),
            false => "store unavailable".to_string(),
        };
        let mut response = Error::Overloaded(message).into_api_response();
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return response;
    }
    if !detailed {
        return Json(json!({"status": "ready"})).into_response();
    }
    let providers: Vec<serde_json::Value> = state
        .router
        .snapshot()
        .iter()
        .map(|u| {
            json!({
                "name": u.spec.name,
                "enabled": u.spec.enabled,
                "breaker": u.breaker.state(),
                "keys": u.keys.counts(),
            })
        })
        .collect();
    Json(json!({
        "status": "ready",
        "providers": providers,
        "request_logs": state.logs.counts(),
    }))
    .into_response()
}
