//! `/v1/*`: the Anthropic Messages API.
//!
//! Handlers authenticate (`ClientKey`), validate with `protocol`, ask the
//! router for candidates and hand them, with an `upstream::request::Outgoing`
//! describing the request, to `upstream::dispatch`. OpenAI-format answers
//! are converted (`protocol`); Anthropic-format answers are passed through
//! unchanged. Streams are relayed by [`super::relay`]. Every request leaves
//! one `LogRecord`. No SQL and no conversion logic lives here.
//!
//! Upstream errors reach the client as the upstream gave them: status,
//! message, `retry-after` and `anthropic-ratelimit-*` (passthrough: the body
//! byte for byte; OpenAI format: in Anthropic's shape with Anthropic's type
//! for the status). Two exceptions, because the client did nothing wrong
//! that it could fix by logging in again: credentials refused by the
//! upstream (401/403) become `502 api_error` naming the provider, and a 403
//! about the request's content becomes `400 invalid_request_error`.

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequest, Path, Query, Request};
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
use crate::store::{Endpoint, LogRecord};
use crate::upstream::catalog;
use crate::upstream::dispatch::{self, DispatchError, Dispatched, Mode};
use crate::upstream::provider::ApiFormat;
use crate::upstream::request::Outgoing;
use crate::upstream::retry::Outcome;
use crate::upstream::router::{Candidate, RouteError, Router, shown_model};

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

/// The raw request body, with over-limit, unreadable and too-slow bodies
/// turned into Anthropic errors instead of axum's plain-text ones. The whole
/// body must arrive within `server.body_timeout`, so a client cannot hold a
/// handler by trickling or stalling its upload.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody
where
    AppState: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let limit = AppState::from_ref(state).settings.server.body_timeout;
        let read = tokio::time::timeout(limit, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                Error::RequestTimeout(format!(
                    "the request body did not arrive within {} (ABRIDGE_BODY_TIMEOUT)",
                    humantime::format_duration(limit)
                ))
            })?;
        read.map(RawBody).map_err(|rejection| {
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
    }
}

/// The client's error when dispatch ended without an answer to relay.
fn dispatch_error(e: &DispatchError) -> Error {
    let upstream = |status: StatusCode| Error::Upstream {
        status,
        message: e.to_string(),
        headers: HeaderMap::new(),
    };
    match e {
        DispatchError::Timeout { .. } => upstream(StatusCode::GATEWAY_TIMEOUT),
        DispatchError::Busy(busy) => Error::Busy {
            message: e.to_string(),
            retry_after: busy.waited,
        },
        DispatchError::Build(m) => Error::InvalidRequest(m.clone()),
        DispatchError::Connect { .. }
        | DispatchError::Invalid { .. }
        | DispatchError::Redirect { .. }
        | DispatchError::TooLarge { .. } => upstream(StatusCode::BAD_GATEWAY),
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
    guard.record_mut().alias = shown_model(&request.model).to_owned();
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
    let outgoing = Outgoing::new(
        Some(&request),
        &body,
        &headers,
        "/messages",
        stream,
        &state.signatures,
    );
    let stop_sequences = request.stop_sequences.as_deref().unwrap_or_default();
    let ctx = protocol::from_openai::ResponseContext {
        model: &request.model,
        stop_sequences,
    };
    // A whole answer is checked (converted, or parsed) before dispatch takes
    // it; what the check made of the answer dispatch returns is kept here.
    let mut converted: Option<anthropic::MessagesResponse> = None;
    let mut parsed: Option<serde_json::Value> = None;
    let mut accept = |candidate: &Candidate, bytes: &Bytes| {
        match candidate.upstream.spec.api_format {
            ApiFormat::Openai => converted = Some(protocol::from_openai(bytes, &ctx)?),
            ApiFormat::Anthropic => parsed = Some(passthrough_json(bytes)?),
        }
        Ok(())
    };
    let answer = match dispatch::dispatch(
        &state.http,
        &candidates,
        &outgoing,
        mode,
        state.settings.routing.backoff,
        &mut accept,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            let kind = e.kind();
            return fail(guard, dispatch_error(&e), kind);
        }
    };
    note_answer(&mut guard, &answer);
    if let Some((error, kind)) = answer_error(&answer) {
        return fail(guard, error, kind);
    }
    if (200..300).contains(&answer.status) {
        state
            .router
            .remember(conversation, &answer.candidate.upstream.spec.name);
    }
    let max_stream = state.settings.http.max_stream_bytes;
    match answer.candidate.upstream.spec.api_format {
        ApiFormat::Anthropic => {
            let recorder = relay::Recorder {
                book: state.signatures.clone(),
                family: answer.candidate.upstream.family.clone(),
            };
            relay::passthrough(answer, guard, Some(recorder), parsed, max_stream)
        }
        ApiFormat::Openai => {
            let timing = relay::StreamTiming {
                ping: state.settings.server.ping_interval,
                idle: answer.candidate.upstream.spec.timeout,
            };
            convert_answer(answer, guard, &request, converted, timing, max_stream)
        }
    }
}

/// A whole Anthropic-format answer must at least be a JSON object.
fn passthrough_json(bytes: &[u8]) -> Result<serde_json::Value, protocol::UpstreamInvalid> {
    match serde_json::from_slice(bytes) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(_) => Err(protocol::UpstreamInvalid::NotJson(
            "expected a JSON object".into(),
        )),
        Err(e) => Err(protocol::UpstreamInvalid::NotJson(e.to_string())),
    }
}

/// Turns an OpenAI-format 2xx answer into the Anthropic one (`converted`:
/// the whole answer, as dispatch's check converted it).
fn convert_answer(
    answer: Dispatched,
    mut guard: LogGuard,
    request: &anthropic::MessagesRequest,
    converted: Option<anthropic::MessagesResponse>,
    timing: relay::StreamTiming,
    max_stream: u64,
) -> Response {
    match (answer.body, converted) {
        (dispatch::Body::Full(_), Some(response)) => {
            guard.usage(&response.usage);
            guard.complete();
            Json(response).into_response()
        }
        (dispatch::Body::Full(_), None) => fail(
            guard,
            Error::Internal(anyhow::anyhow!("an accepted answer was not converted")),
            "internal",
        ),
        (body @ dispatch::Body::Stream { .. }, _) => {
            let stop_sequences = request.stop_sequences.clone().unwrap_or_default();
            relay::converted(
                body,
                guard,
                request.model.clone(),
                stop_sequences,
                timing,
                max_stream,
            )
        }
    }
}

/// The client's error for an upstream error answer, with its log kind;
/// `None` for a success, and for a passthrough error relayed unchanged.
fn answer_error(answer: &Dispatched) -> Option<(Error, &'static str)> {
    if (200..300).contains(&answer.status) {
        return None;
    }
    let provider = &answer.candidate.upstream.spec.name;
    let status = answer.status;
    let message = || upstream_message(status, &answer.body);
    let rewritten = |status: StatusCode, message: String| Error::Upstream {
        status,
        message,
        headers: HeaderMap::new(),
    };
    match answer.outcome {
        Outcome::CredentialsRefused => Some((
            rewritten(
                StatusCode::BAD_GATEWAY,
                format!(
                    "provider {provider} refused the gateway's credentials ({status}): {}",
                    message()
                ),
            ),
            "credentials_refused",
        )),
        Outcome::ContentRefused => Some((
            rewritten(
                StatusCode::BAD_REQUEST,
                format!(
                    "provider {provider} refused the request ({status}): {}",
                    message()
                ),
            ),
            "content_refused",
        )),
        _ if answer.candidate.upstream.spec.api_format == ApiFormat::Anthropic => None,
        _ => Some((
            upstream_error(status, &answer.headers, message()),
            "upstream_error",
        )),
    }
}

/// An OpenAI-format error answer in Anthropic's shape, keeping its status,
/// message, `retry-after` and `anthropic-ratelimit-*` headers.
fn upstream_error(status: u16, headers: &HeaderMap, message: String) -> Error {
    let mut relayed = HeaderMap::new();
    for (name, value) in headers {
        let name_str = name.as_str();
        if name_str == "retry-after" || name_str.starts_with("anthropic-ratelimit-") {
            relayed.append(name.clone(), value.clone());
        }
    }
    Error::Upstream {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        message,
        headers: relayed,
    }
}

/// The upstream's own message in an error body (OpenAI's or Anthropic's
/// `error.message`, or `message` / `detail` / a string `error`), else a
/// short plain-text body, else the status.
fn upstream_message(status: u16, body: &dispatch::Body) -> String {
    let fallback = || format!("provider answered {status}");
    let dispatch::Body::Full(bytes) = body else {
        return fallback();
    };
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str().map(str::to_owned));
        return found.unwrap_or_else(fallback);
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') {
        fallback()
    } else {
        text.to_owned()
    }
}

fn fail(mut guard: LogGuard, error: Error, kind: &'static str) -> Response {
    guard.fail(error.status().as_u16(), kind);
    error.into_response()
}

/// Records who answered, and how fast, in the request's log record.
fn note_answer(guard: &mut LogGuard, answer: &Dispatched) {
    let record = guard.record_mut();
    record.provider = Some(answer.candidate.upstream.spec.name.clone());
    record.upstream_model = Some(answer.candidate.model.clone());
    record.ttfb_ms = Some(answer.ttfb.as_millis() as u64);
    record.status = answer.status;
}

async fn count_tokens(
    state: AppState,
    ClientKey(key): ClientKey,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    // Logged like every request: one `request_logs` row, endpoint `count_tokens`.
    let mut guard = LogGuard::new(
        state.logs.clone(),
        LogRecord {
            created_at: crate::store::now_ms(),
            endpoint: Endpoint::CountTokens,
            api_key_id: Some(key.id),
            ..LogRecord::default()
        },
        Instant::now(),
    );
    let request = match protocol::parse_count_tokens_request(&body) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                guard,
                Error::InvalidRequest(e.to_string()),
                "invalid_request",
            );
        }
    };
    guard.record_mut().alias = request.model.clone();
    let candidates = match state.router.candidates(&request.model, None) {
        Ok(c) => c,
        Err(e) => return fail(guard, route_error(e), "no_route"),
    };
    // Anthropic-native providers count exactly; forward to the first of them.
    let native: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| c.upstream.spec.api_format == ApiFormat::Anthropic)
        .collect();
    if !native.is_empty() {
        let outgoing = Outgoing::new(
            None,
            &body,
            &headers,
            "/messages/count_tokens",
            false,
            &state.signatures,
        );
        match dispatch::dispatch(
            &state.http,
            &native,
            &outgoing,
            Mode::Buffered,
            state.settings.routing.backoff,
            &mut |_, _| Ok(()),
        )
        .await
        {
            Ok(answer) => {
                note_answer(&mut guard, &answer);
                if let Some((error, kind)) = answer_error(&answer) {
                    return fail(guard, error, kind);
                }
                let max_stream = state.settings.http.max_stream_bytes;
                return relay::passthrough(answer, guard, None, None, max_stream);
            }
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
            guard.record_mut().status = 200;
            guard.complete();
            let mut response = Json(json!({"input_tokens": n})).into_response();
            response.headers_mut().insert(
                HeaderName::from_static("x-abridge-token-count"),
                HeaderValue::from_static("estimate"),
            );
            response
        }
        // Only a dropped handler sets the flag, so nobody waits for this.
        Ok(Err(protocol::tokens::Cancelled)) => fail(
            guard,
            Error::Internal(anyhow::anyhow!("token counting was cancelled")),
            "internal",
        ),
        Err(e) => fail(
            guard,
            Error::Internal(anyhow::anyhow!("token counting failed: {e}")),
            "internal",
        ),
    }
}

/// `GET /v1/models`: Anthropic's list, newest first, with its cursors.
async fn list_models(
    state: AppState,
    ClientKey(_key): ClientKey,
    query: Result<Query<catalog::PageQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return Error::InvalidRequest("malformed query string".into()).into_response();
    };
    let catalog = state.router.catalog();
    let all = catalog.list(&state.router.snapshot());
    match catalog::page(&all, &query) {
        Ok(page) => Json(json!({
            "data": page.data,
            "has_more": page.has_more,
            "first_id": page.data.first().map(|m| &m.id),
            "last_id": page.data.last().map(|m| &m.id),
        }))
        .into_response(),
        Err(message) => Error::InvalidRequest(message).into_response(),
    }
}

/// `GET /v1/models/{id}`: the listed object for an id or alias.
async fn get_model(
    state: AppState,
    ClientKey(_key): ClientKey,
    Path(id): Path<String>,
) -> Response {
    let catalog = state.router.catalog();
    let all = catalog.list(&state.router.snapshot());
    match catalog.find(&all, &id) {
        Some(model) => Json(model).into_response(),
        // The id is not echoed: it is client input of any length.
        None => Error::NotFound(
            "no such model here; GET /v1/models lists the ids this gateway serves".into(),
        )
        .into_response(),
    }
}
