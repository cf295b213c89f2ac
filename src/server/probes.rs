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

/// Readiness: the store answers a query.
async fn ready(state: AppState) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({
            "status": "ready",
            "providers": state.router.len(),
        }))
        .into_response(),
        Err(e) => {
            let mut response =
                Error::Overloaded(format!("store unavailable: {e}")).into_api_response();
            *response.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
            response
        }
    }
}
