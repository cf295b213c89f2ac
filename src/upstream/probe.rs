//! A one-token live check of a provider (`abridge providers test`): a real
//! request built and sent by the same code as the proxy's (`request`,
//! `dispatch`), limited to one provider.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use super::client::HttpClient;
use super::dispatch::{self, Body, Mode};
use super::request::Outgoing;
use super::router::{Candidate, Upstream};
use super::signatures::SignatureBook;

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
    let body = serde_json::json!({
        "model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]
    })
    .to_string();
    let typed = match crate::protocol::parse_messages_request(body.as_bytes()) {
        Ok(typed) => typed,
        Err(e) => {
            return ProbeResult {
                provider: spec.name.clone(),
                model,
                status: None,
                latency_ms: 0,
                ok: false,
                detail: format!("cannot build the probe request: {e}"),
            };
        }
    };
    let headers = HeaderMap::new();
    let signatures = SignatureBook::default();
    let outgoing = Outgoing::new(
        Some(&typed),
        body.as_bytes(),
        &headers,
        "/messages",
        false,
        &signatures,
    );
    let started = Instant::now();
    let result = dispatch::dispatch(
        http,
        &[candidate],
        &outgoing,
        Mode::Buffered,
        Duration::from_millis(200),
        &mut |_, _| Ok(()),
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
