//! A one-token live check of a provider (`abridge providers test`): a real
//! request through the shared client and the failover code, limited to one
//! provider and one attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::client::HttpClient;
use super::dispatch::{self, Body, Mode};
use super::provider::ApiFormat;
use super::router::{Candidate, Upstream};

#[derive(Debug, serde::Serialize)]
pub struct ProbeResult {
    pub provider: String,
    pub model: String,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub ok: bool,
    pub detail: String,
}

/// Sends "ping" with `max_tokens: 1` to the provider's first configured model.
pub async fn probe(http: &HttpClient, upstream: Arc<Upstream>) -> ProbeResult {
    let spec = &upstream.spec;
    let model = spec
        .models
        .all()
        .next()
        .cloned()
        .unwrap_or_else(|| "claude-3-5-haiku-latest".to_string());
    let candidate = Candidate {
        upstream: upstream.clone(),
        model: model.clone(),
    };
    let build = |c: &Candidate, key: Option<&crate::config::Secret>| {
        let spec = &c.upstream.spec;
        let body = json!({"model": c.model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]});
        let mut b = match spec.api_format {
            ApiFormat::Openai => http.inner().post(spec.endpoint("/chat/completions")),
            ApiFormat::Anthropic => http
                .inner()
                .post(spec.endpoint("/messages"))
                .header("anthropic-version", "2023-06-01"),
        };
        if let Some(key) = key {
            b = match spec.api_format {
                ApiFormat::Openai => b.bearer_auth(key.expose()),
                ApiFormat::Anthropic => b.header("x-api-key", key.expose()),
            };
        }
        for (name, value) in &spec.custom_headers {
            let value = key.map_or_else(
                || value.clone(),
                |k| value.replace("${API_KEY}", k.expose()),
            );
            b = b.header(name.as_str(), value);
        }
        Ok(b.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string()))
    };
    let started = Instant::now();
    let result = dispatch::dispatch(
        http,
        vec![candidate],
        Mode::Buffered,
        Duration::from_millis(200),
        &build,
    )
    .await;
    let latency_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(answer) => {
            let detail = match &answer.body {
                Body::Full(bytes) => {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
                }
                Body::Stream { .. } => String::new(),
            };
            ProbeResult {
                provider: spec.name.clone(),
                model,
                status: Some(answer.status),
                latency_ms,
                ok: (200..300).contains(&answer.status),
                detail,
            }
        }
        Err(e) => ProbeResult {
            provider: spec.name.clone(),
            model,
            status: None,
            latency_ms,
            ok: false,
            detail: e.to_string(),
        },
    }
}
