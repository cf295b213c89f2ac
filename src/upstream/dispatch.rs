//! The failover loop: try candidates in order until one answers.
//!
//! Per candidate: skip it when its breaker refuses; pick a key (round-robin);
//! send under the provider's timeout. 401/403 disables the key and moves to
//! the next key; 429 cools the key down for its `Retry-After` and moves to
//! the next key, then to the next provider (the last provider is waited for,
//! honouring `Retry-After` up to 30 s); connect errors, timeouts and 5xx count against the breaker
//! and are retried with jittered backoff up to the provider's `max_retries`,
//! then the next candidate is tried. Any other answer is final. A stream is
//! committed only once its first body bytes have arrived, so failover never
//! happens after the client has seen a byte. Dropping the returned future
//! (client gone) drops the upstream request.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::header::HeaderMap;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::breaker::BreakerState;
use super::client::HttpClient;
use super::retry;
use super::router::Candidate;
use crate::config::Secret;

/// How much of the answer to wait for before committing to a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read the whole body (non-streaming requests).
    Buffered,
    /// Wait for the first body bytes only (streams).
    Streaming,
}

/// The answer's body: whole, or the first bytes and the rest still coming.
pub enum Body {
    Full(Bytes),
    Stream {
        first: Bytes,
        response: reqwest::Response,
        permit: OwnedSemaphorePermit,
    },
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Full(b) => write!(f, "Full({} bytes)", b.len()),
            Body::Stream { first, .. } => write!(f, "Stream(first {} bytes)", first.len()),
        }
    }
}

impl Body {
    /// The body as a byte stream, the connection permit held until it ends.
    pub fn into_stream(
        self,
    ) -> futures_util::stream::BoxStream<'static, Result<Bytes, reqwest::Error>> {
        match self {
            Body::Full(bytes) => futures_util::stream::once(async move { Ok(bytes) }).boxed(),
            Body::Stream {
                first,
                response,
                permit,
            } => futures_util::stream::once(async move { Ok(first) })
                .chain(response.bytes_stream().map(move |chunk| {
                    let _held = &permit;
                    chunk
                }))
                .boxed(),
        }
    }
}

/// A final upstream answer (success, or an error that is not worth retrying
/// elsewhere, or the last retryable error when every candidate failed).
#[derive(Debug)]
pub struct Dispatched {
    pub candidate: Candidate,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Body,
    /// From the first send to the answer's headers.
    pub ttfb: Duration,
    /// Candidates given up on before this one.
    pub failovers: u32,
}

/// No candidate produced an answer worth returning.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("provider {provider} did not answer within {after:?}")]
    Timeout { provider: String, after: Duration },
    #[error("provider {provider} could not be reached: {message}")]
    Connect { provider: String, message: String },
    #[error("provider {provider}: {message}")]
    Rejected { provider: String, message: String },
    #[error("no provider is available right now (circuit breakers open)")]
    NoneAvailable,
    #[error("{0}")]
    Build(String),
}

impl DispatchError {
    /// Low-cardinality label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DispatchError::Timeout { .. } => "timeout",
            DispatchError::Connect { .. } => "connect",
            DispatchError::Rejected { .. } => "upstream_rejected",
            DispatchError::NoneAvailable => "no_provider",
            DispatchError::Build(_) => "invalid_request",
        }
    }
}

enum Attempt {
    Answer(Dispatched),
    /// Worth retrying (or failing over): the reason, and a buffered answer if any.
    Retry(DispatchError, Option<Dispatched>, Option<Duration>),
}

/// Builds the upstream request for a candidate and the key to use.
pub type BuildRequest<'a> = dyn Fn(&Candidate, Option<&Secret>) -> Result<reqwest::RequestBuilder, String>
    + Send
    + Sync
    + 'a;

/// Tries `candidates` in order; see the module doc.
pub async fn dispatch(
    http: &HttpClient,
    candidates: Vec<Candidate>,
    mode: Mode,
    backoff: Duration,
    build: &BuildRequest<'_>,
) -> Result<Dispatched, DispatchError> {
    let mut last_error = DispatchError::NoneAvailable;
    let mut last_answer: Option<Dispatched> = None;
    let mut failovers = 0;
    let count = candidates.len();
    for (position, candidate) in candidates.into_iter().enumerate() {
        let is_last = position + 1 == count;
        let upstream = candidate.upstream.clone();
        let Some(mut pass) = upstream.breaker.try_acquire() else {
            continue;
        };
        let spec = &upstream.spec;
        let mut tried_keys: Vec<usize> = Vec::new();
        let mut retries = 0;
        loop {
            let key = if upstream.keys.is_empty() {
                None
            } else {
                match upstream.keys.pick(&tried_keys) {
                    Some(k) => Some(k),
                    None if retries < spec.max_retries
                        && tried_keys.is_empty()
                        && upstream.keys.counts().cooling > 0 =>
                    {
                        // Every usable key is cooling down: wait, then retry.
                        retries += 1;
                        tokio::time::sleep(retry::backoff(backoff, retries)).await;
                        continue;
                    }
                    None => {
                        let counts = upstream.keys.counts();
                        if counts.disabled == counts.total {
                            last_error = DispatchError::Rejected {
                                provider: spec.name.clone(),
                                message:
                                    "every API key was refused (401/403); fix the keys and reload"
                                        .into(),
                            };
                        }
                        break;
                    }
                }
            };
            let request = build(&candidate, key.map(|(_, s)| s)).map_err(DispatchError::Build)?;
            match attempt(http, &candidate, request, mode, failovers).await {
                Attempt::Answer(answer) => {
                    let status = answer.status;
                    match (status, key) {
                        (401 | 403, Some((index, _))) => {
                            tracing::warn!(provider = %spec.name, key = index, status, "provider refused an API key; disabling it");
                            upstream.keys.disable(index);
                            tried_keys.push(index);
                            last_error = DispatchError::Rejected {
                                provider: spec.name.clone(),
                                message: format!("the provider refused its API key ({status})"),
                            };
                            last_answer = None;
                            continue;
                        }
                        _ => {
                            // A client error says nothing about the provider's
                            // health: the pass is dropped without a verdict.
                            if (200..300).contains(&status) {
                                pass.success();
                            }
                            return Ok(answer);
                        }
                    }
                }
                Attempt::Retry(error, answer, retry_after) => {
                    let status = answer.as_ref().map(|a| a.status);
                    if status == Some(429) {
                        if let Some((index, _)) = key {
                            upstream.keys.cool_down(
                                index,
                                retry_after.unwrap_or(backoff).min(retry::MAX_RETRY_AFTER),
                            );
                            tried_keys.push(index);
                        }
                    } else {
                        pass.failure();
                    }
                    tracing::warn!(provider = %spec.name, error = %error, ?status, "upstream attempt failed");
                    last_error = error;
                    if answer.is_some() {
                        last_answer = answer;
                    }
                    let more_keys =
                        status == Some(429) && upstream.keys.pick(&tried_keys).is_some();
                    if more_keys {
                        continue;
                    }
                    // A rate-limited provider is waited for only when it is the
                    // last one; otherwise the next provider is tried at once.
                    let rate_limited_with_alternatives = status == Some(429) && !is_last;
                    if rate_limited_with_alternatives
                        || retries >= spec.max_retries
                        || upstream.breaker.state() == BreakerState::Open
                    {
                        break;
                    }
                    retries += 1;
                    tried_keys.clear();
                    let wait = retry_after
                        .filter(|d| *d <= retry::MAX_RETRY_AFTER)
                        .unwrap_or_else(|| retry::backoff(backoff, retries));
                    tokio::time::sleep(wait).await;
                }
            }
        }
        failovers += 1;
    }
    match last_answer {
        Some(mut answer) => {
            answer.failovers = failovers.saturating_sub(1);
            Ok(answer)
        }
        None => Err(last_error),
    }
}

async fn attempt(
    http: &HttpClient,
    candidate: &Candidate,
    request: reqwest::RequestBuilder,
    mode: Mode,
    failovers: u32,
) -> Attempt {
    let spec = &candidate.upstream.spec;
    let limit = match mode {
        Mode::Buffered => spec.timeout,
        Mode::Streaming => spec.first_byte_timeout(),
    };
    let started = Instant::now();
    let timeout = || DispatchError::Timeout {
        provider: spec.name.clone(),
        after: limit,
    };
    let deadline = started + limit;
    // The connection broke or the upstream could not be reached: worth another try.
    let broken = |message: String| {
        let error = DispatchError::Connect {
            provider: spec.name.clone(),
            message,
        };
        Attempt::Retry(error, None, None)
    };
    let mut sent = match tokio::time::timeout_at(deadline, http.send(request)).await {
        Err(_) => return Attempt::Retry(timeout(), None, None),
        Ok(Err(e)) if e.is_timeout() => return broken("timed out".into()),
        Ok(Err(e)) => return broken(error_chain(&e)),
        Ok(Ok(sent)) => sent,
    };
    let ttfb = started.elapsed();
    let status = sent.response.status().as_u16();
    // Moved out, not cloned: reading the body never needs them.
    let headers = std::mem::take(sent.response.headers_mut());
    let retry_after = retry::retry_after(&headers);
    let streaming_ok = mode == Mode::Streaming && (200..300).contains(&status);
    let body = if streaming_ok {
        // Commit to a stream only once its first bytes are here.
        let mut response = sent.response;
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return Attempt::Retry(timeout(), None, None),
            Ok(Err(e)) => return broken(error_chain(&e)),
            Ok(Ok(None)) => return broken("the stream ended before any data".into()),
            Ok(Ok(Some(first))) => Body::Stream {
                first,
                response,
                permit: sent.permit,
            },
        }
    } else {
        // Error answers to streaming requests are small: read them whole.
        let deadline = if mode == Mode::Streaming {
            Instant::now() + spec.timeout
        } else {
            deadline
        };
        match tokio::time::timeout_at(deadline, sent.response.bytes()).await {
            Err(_) => return Attempt::Retry(timeout(), None, None),
            Ok(Err(e)) => return broken(error_chain(&e)),
            Ok(Ok(bytes)) => Body::Full(bytes),
        }
    };
    let answer = Dispatched {
        candidate: candidate.clone(),
        status,
        headers,
        body,
        ttfb,
        failovers,
    };
    if retry::is_retryable_status(status) {
        let error = DispatchError::Rejected {
            provider: spec.name.clone(),
            message: format!("answered {status}"),
        };
        return Attempt::Retry(error, Some(answer), retry_after);
    }
    Attempt::Answer(answer)
}

/// `e` and its sources on one line (reqwest hides the useful part in them).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
