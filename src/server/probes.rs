//! Liveness and readiness probes for systemd and Kubernetes.

use axum::Json;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;
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

/// Readiness: the store answers a query. Also shows each provider's live
/// breaker and key state (names only: no URLs, no keys).
async fn ready(state: AppState) -> Response {
    match state.store.ping().await {
        Ok(()) => {
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
            Json(json!({"status": "ready", "providers": providers})).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            Error::Unavailable("store unavailable".into()).into_api_response()
        }
    }
}
