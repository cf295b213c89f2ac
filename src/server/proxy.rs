//! `/v1/*`: the Anthropic Messages API.
//!
//! Handlers authenticate (`ClientKey`), validate with `protocol`, ask the
//! router for candidates and hand them to `upstream::dispatch`. OpenAI-format
//! answers are converted (`protocol`); Anthropic-format answers are passed
//! through unchanged. Streams are relayed by [`super::relay`]. Every request
//! leaves one `LogRecord`. No SQL and no conversion logic lives here.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::json;

use super::AppState;
use super::auth::ClientKey;
use super::relay::{self, LogGuard};
use crate::error::Error;
use crate::protocol::{self, anthropic};
use crate::store::LogRecord;
use crate::upstream::dispatch::{self, DispatchError, Dispatched, Mode};
use crate::upstream::provider::ApiFormat;
use crate::upstream::router::{Candidate, RouteError, Router};
use crate::upstream::signatures::SignatureBook;

/// Anthropic API version sent upstream when the client sends none.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

pub fn router(body_limit: usize) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .layer(DefaultBodyLimit::max(body_limit))
}

/// Unknown paths: Anthropic's 404 shape.
pub async fn not_found(request: Request) -> Response {
    Error::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}

/// A panic in a handler becomes a 500 in our error shape, never a dropped connection.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Error::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

/// The raw request body, with over-limit and unreadable bodies turned into
/// Anthropic errors instead of axum's plain-text ones.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::RequestTooLarge(
                        "request body is larger than the gateway accepts (ABRIDGE_MAX_BODY_BYTES)"
                            .into(),
                    )
                } else {
                    Error::InvalidRequest(format!(
                        "cannot read the request body: {}",
                        rejection.body_text()
                    ))
                }
            })
    }
}

fn route_error(e: RouteError) -> Error {
    match e {
        RouteError::UnknownModel(_) => Error::NotFound(e.to_string()),
        RouteError::AllOpen(_) => Error::Overloaded(e.to_string()),
    }
}

fn dispatch_error(e: &DispatchError) -> Error {
    match e {
        DispatchError::Timeout { .. } => Error::BadUpstream {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: e.to_string(),
        },
        DispatchError::NoneAvailable => Error::Overloaded(e.to_string()),
        DispatchError::Build(m) => Error::InvalidRequest(m.clone()),
        DispatchError::Connect { .. } | DispatchError::Rejected { .. } => Error::BadUpstream {
            status: StatusCode::BAD_GATEWAY,
            message: e.to_string(),
        },
    }
}

/// Everything needed to build the upstream request for any candidate.
struct Outgoing<'a> {
    /// The validated request; needed to convert for OpenAI-format providers.
    typed: Option<&'a anthropic::MessagesRequest>,
    /// The body as sent, passed on to Anthropic-format providers.
    raw: &'a [u8],
    /// `raw` parsed, on first use only: OpenAI-format candidates never need it.
    parsed: std::sync::OnceLock<serde_json::Map<String, serde_json::Value>>,
    client_headers: &'a HeaderMap,
    /// Anthropic path: `/messages` or `/messages/count_tokens`.
    path: &'static str,
    stream: bool,
    /// Signature issuers, to keep foreign signed thinking away from a provider.
    signatures: &'a SignatureBook,
}

impl Outgoing<'_> {
    /// Builds the upstream request for one candidate and key.
    fn build(
        &self,
        http: &reqwest::Client,
        candidate: &Candidate,
        key: Option<&crate::config::Secret>,
    ) -> Result<reqwest::RequestBuilder, String> {
        let spec = &candidate.upstream.spec;
        let mut builder = match spec.api_format {
            ApiFormat::Openai => {
                let target = protocol::to_openai::Target {
                    model: &candidate.model,
                    max_tokens_limit: spec.max_tokens_limit,
                    stream: self.stream,
                    reasoning_efforts: &spec.reasoning_efforts,
                };
                let request = self
                    .typed
                    .ok_or("this endpoint is not available on OpenAI-format providers")?;
                let chat =
                    protocol::to_openai::to_openai(request, &target).map_err(|e| e.to_string())?;
                let body = serde_json::to_vec(&chat).map_err(|e| e.to_string())?;
                let mut b = http
                    .post(candidate.upstream.url("/chat/completions")?)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body);
                if let Some(key) = key {
                    b = b.bearer_auth(key.expose());
                }
                b
            }
            ApiFormat::Anthropic => {
                let mut body = self.parsed.get_or_init(|| raw_object(self.raw)).clone();
                if protocol::thinking::has_thinking(&body) {
                    let family = &candidate.upstream.family;
                    let removed = protocol::thinking::strip_unaccepted(&mut body, |sig| {
                        self.signatures.accepts(sig, family)
                    });
                    if removed > 0 {
                        tracing::debug!(provider = %spec.name, removed, "dropped thinking blocks signed elsewhere");
                    }
                }
                body.insert(
                    "model".into(),
                    serde_json::Value::String(candidate.model.clone()),
                );
                let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
                let version = self
                    .client_headers
                    .get("anthropic-version")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(DEFAULT_ANTHROPIC_VERSION);
                let mut b = http
                    .post(candidate.upstream.url(self.path)?)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("anthropic-version", version)
                    .body(bytes);
                for value in self.client_headers.get_all("anthropic-beta") {
                    b = b.header("anthropic-beta", value.as_bytes());
                }
                if let Some(key) = key
                    && !spec
                        .custom_headers
                        .keys()
                        .any(|h| h.eq_ignore_ascii_case("authorization"))
                {
                    b = b.header("x-api-key", key.expose());
                }
                b
            }
        };
        for (name, value) in &spec.custom_headers {
            let value = match key {
                Some(key) => value.replace("${API_KEY}", key.expose()),
                None => value.clone(),
            };
            builder = builder.header(name.as_str(), value);
        }
        Ok(builder)
    }
}

/// The request body as a JSON object, kept whole for passthrough.
fn raw_object(body: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

fn conversation_key(state: &AppState, request: &anthropic::MessagesRequest) -> Option<u64> {
    if !state.settings.routing.sticky {
        return None;
    }
    let first = request.messages.first()?;
    let text = serde_json::to_string(&first.content).ok()?;
    Some(Router::conversation_key(&text))
}

async fn messages(
    state: AppState,
    ClientKey(key): ClientKey,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    // Created first so that every request, even one the client abandons, is logged.
    let mut guard = LogGuard::new(
        state.logs.clone(),
        LogRecord {
            created_at: crate::store::now_ms(),
            api_key_id: Some(key.id),
            ..LogRecord::default()
        },
        Instant::now(),
    );
    let betas = protocol::Betas::from_headers(
        headers
            .get_all("anthropic-beta")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let request = match protocol::parse_messages_request_with(&body, betas) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                guard,
                Error::InvalidRequest(e.to_string()),
                "invalid_request",
            );
        }
    };
    let stream = request.stream.unwrap_or(false);
    guard.record_mut().alias = request.model.clone();
    guard.record_mut().stream = stream;
    let conversation = conversation_key(&state, &request);
    let candidates = match state.router.candidates(&request.model, conversation) {
        Ok(c) => c,
        Err(e) => return fail(guard, route_error(e), "no_route"),
    };
    let mode = if stream {
        Mode::Streaming
    } else {
        Mode::Buffered
    };
    let outgoing = Outgoing {
        typed: Some(&request),
        raw: &body,
        parsed: Default::default(),
        client_headers: &headers,
        path: "/messages",
        stream,
        signatures: &state.signatures,
    };
    let build =
        |c: &Candidate, k: Option<&crate::config::Secret>| outgoing.build(state.http.inner(), c, k);
    let answer = match dispatch::dispatch(
        &state.http,
        candidates,
        mode,
        state.settings.routing.backoff,
        &build,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            let kind = e.kind();
            return fail(guard, dispatch_error(&e), kind);
        }
    };
    state
        .router
        .remember(conversation, &answer.candidate.upstream.spec.name);
    let record = guard.record_mut();
    record.provider = Some(answer.candidate.upstream.spec.name.clone());
    record.upstream_model = Some(answer.candidate.model.clone());
    record.ttfb_ms = Some(answer.ttfb.as_millis() as u64);
    record.status = answer.status;
    match answer.candidate.upstream.spec.api_format {
        ApiFormat::Anthropic => {
            let recorder = relay::Recorder {
                book: state.signatures.clone(),
                family: answer.candidate.upstream.family.clone(),
            };
            relay::passthrough(answer, guard, Some(recorder))
        }
        ApiFormat::Openai => {
            convert_answer(answer, guard, &request, state.settings.server.ping_interval)
        }
    }
}

/// Turns an OpenAI-format answer into the Anthropic one.
fn convert_answer(
    answer: Dispatched,
    mut guard: LogGuard,
    request: &anthropic::MessagesRequest,
    ping: Duration,
) -> Response {
    let stop_sequences = request.stop_sequences.clone().unwrap_or_default();
    if !(200..300).contains(&answer.status) {
        let error = upstream_error(answer.status, &answer.body);
        guard.fail(error.status().as_u16(), "upstream_error");
        return error.into_response();
    }
    match answer.body {
        dispatch::Body::Full(bytes) => {
            let ctx = protocol::from_openai::ResponseContext {
                model: &request.model,
                stop_sequences: &stop_sequences,
            };
            match protocol::from_openai::from_openai(&bytes, &ctx) {
                Ok(response) => {
                    guard.usage(&response.usage);
                    guard.complete();
                    Json(response).into_response()
                }
                Err(e) => {
                    let error = Error::BadUpstream {
                        status: StatusCode::BAD_GATEWAY,
                        message: format!("invalid answer from provider: {e}"),
                    };
                    guard.fail(502, "invalid_response");
                    error.into_response()
                }
            }
        }
        body @ dispatch::Body::Stream { .. } => {
            let timing = relay::StreamTiming {
                ping,
                idle: answer.candidate.upstream.spec.timeout,
            };
            relay::converted(body, guard, request.model.clone(), stop_sequences, timing)
        }
    }
}

/// Maps an OpenAI-format error answer to Anthropic's vocabulary, keeping the upstream message.
fn upstream_error(status: u16, body: &dispatch::Body) -> Error {
    let detail = match body {
        dispatch::Body::Full(bytes) => serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .or_else(|| v.get("message"))
                    .or_else(|| v.get("detail"))
                    .and_then(|m| m.as_str().map(str::to_owned))
            })
            .unwrap_or_else(|| format!("provider answered {status}")),
        dispatch::Body::Stream { .. } => format!("provider answered {status}"),
    };
    match status {
        400 | 422 => Error::InvalidRequest(detail),
        404 => Error::NotFound(detail),
        413 => Error::RequestTooLarge(detail),
        429 => Error::RateLimited(detail),
        503 | 529 => Error::Overloaded(detail),
        _ => Error::BadUpstream {
            status: StatusCode::BAD_GATEWAY,
            message: format!("provider error ({status}): {detail}"),
        },
    }
}

fn fail(mut guard: LogGuard, error: Error, kind: &'static str) -> Response {
    guard.fail(error.status().as_u16(), kind);
    error.into_response()
}

async fn count_tokens(
    state: AppState,
    ClientKey(_key): ClientKey,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let request = match protocol::parse_count_tokens_request(&body) {
        Ok(r) => r,
        Err(e) => return Error::InvalidRequest(e.to_string()).into_response(),
    };
    let candidates = match state.router.candidates(&request.model, None) {
        Ok(c) => c,
        Err(e) => return route_error(e).into_response(),
    };
    // Anthropic-native providers count exactly; forward to the first of them.
    let native: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| c.upstream.spec.api_format == ApiFormat::Anthropic)
        .collect();
    if !native.is_empty() {
        let outgoing = Outgoing {
            typed: None,
            raw: &body,
            parsed: Default::default(),
            client_headers: &headers,
            path: "/messages/count_tokens",
            stream: false,
            signatures: &state.signatures,
        };
        let build = |c: &Candidate, k: Option<&crate::config::Secret>| {
            outgoing.build(state.http.inner(), c, k)
        };
        match dispatch::dispatch(
            &state.http,
            native,
            Mode::Buffered,
            state.settings.routing.backoff,
            &build,
        )
        .await
        {
            Ok(answer) => return relay::passthrough(answer, LogGuard::disabled(), None),
            Err(e) => {
                tracing::warn!(error = %e, "count_tokens upstream failed; estimating locally")
            }
        }
    }
    // Linear in the body, off the runtime, and abandoned if the client leaves.
    let count = super::blocking::run_cancellable(move |cancel| {
        protocol::tokens::count_input_tokens(&request, cancel)
    })
    .await;
    match count {
        Ok(Ok(n)) => {
            let mut response = Json(json!({"input_tokens": n})).into_response();
            response.headers_mut().insert(
                HeaderName::from_static("x-abridge-token-count"),
                HeaderValue::from_static("estimate"),
            );
            response
        }
        Ok(Err(protocol::tokens::Cancelled)) => {
            Error::Internal(anyhow::anyhow!("token counting was cancelled")).into_response()
        }
        Err(e) => Error::Internal(anyhow::anyhow!("token counting failed: {e}")).into_response(),
    }
}

/// Fixed creation date reported for every alias (Anthropic's list requires one).
const MODEL_CREATED_AT: &str = "2025-01-01T00:00:00Z";

fn model_object(id: &str) -> serde_json::Value {
    json!({"type": "model", "id": id, "display_name": id, "created_at": MODEL_CREATED_AT})
}

async fn list_models(state: AppState, ClientKey(_key): ClientKey) -> Response {
    let data: Vec<serde_json::Value> = state
        .router
        .model_names()
        .iter()
        .map(|m| model_object(m))
        .collect();
    let first = data
        .first()
        .and_then(|m| m["id"].as_str())
        .map(str::to_owned);
    let last = data
        .last()
        .and_then(|m| m["id"].as_str())
        .map(str::to_owned);
    Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last}))
        .into_response()
}

async fn get_model(
    state: AppState,
    ClientKey(_key): ClientKey,
    Path(id): Path<String>,
) -> Response {
    match state.router.candidates(&id, None) {
        Ok(_) => Json(model_object(&id)).into_response(),
        Err(RouteError::AllOpen(_)) => Json(model_object(&id)).into_response(),
        Err(e) => route_error(e).into_response(),
    }
}
