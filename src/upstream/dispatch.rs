//! The failover loop: send a request to its candidates until one answer is
//! the request's answer. What each attempt's outcome means (return it, try
//! another key, retry after a delay, the next candidate) is decided by the
//! pure [`retry::decide`]; this module does the I/O around it.
//!
//! - A candidate is usable when its breaker lets a request through and it
//!   has a usable key. Unusable candidates are skipped. When no candidate
//!   was usable, the request still goes to the best of them, the one usable
//!   soonest (Envoy's panic routing): the client gets the upstream's real
//!   answer instead of one we invent, and a provider that recovered is seen
//!   at once. With one provider and one key, every request reaches it.
//! - Keys are used round-robin; `retry` says what an answer did to the key
//!   (accepted, refused, cooling down) and `keys` keeps score.
//! - The breaker hears once per request and candidate, however many
//!   retries it took (the last attempt's verdict).
//! - A connection permit (`HTTP_MAX_CONNECTIONS`) is waited for before the
//!   provider's clock starts, at most `ABRIDGE_CONNECTION_WAIT`; running out
//!   ends the request with [`DispatchError::Busy`] and counts against no
//!   provider.
//! - Answers are read within `ABRIDGE_MAX_RESPONSE_BYTES`. A 2xx answer is
//!   checked before it is taken: a whole body by the caller's `accept`, a
//!   stream by its first event (see `protocol::stream::opening`; for an
//!   Anthropic-format stream, an `error` event or a non-JSON one fails the
//!   attempt). So a broken answer fails over like any other failure, and a
//!   stream is committed only once it has started well: failover never
//!   happens after the client has seen a byte.
//! - Dropping the returned future (client gone) drops the upstream request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use reqwest::header::HeaderMap;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::breaker::Pass;
use super::client::{Busy, HttpClient};
use super::provider::ApiFormat;
use super::request::Outgoing;
use super::retry::{self, Health, KeyVerdict, Next, Outcome, Position};
use super::router::Candidate;
use super::sse::SseParser;
use crate::config::Secret;
use crate::protocol::UpstreamInvalid;
use crate::protocol::stream::{self as openai_stream, Opening};

/// The longest a rate-limited key cools down, whatever its `Retry-After`.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(3600);

/// How much of the answer to wait for before committing to a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read the whole body (non-streaming requests).
    Buffered,
    /// Wait for the stream's first event only.
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

/// The request's upstream answer: a success, or the error answer that ends
/// it (which the caller relays as the upstream gave it).
#[derive(Debug)]
pub struct Dispatched {
    pub candidate: Candidate,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Body,
    /// From sending to the answer's headers.
    pub ttfb: Duration,
    /// Candidates given up on before this one.
    pub failovers: u32,
    /// What the answer was taken as (a 403 about credentials or content).
    pub outcome: Outcome,
}

/// The request ended without an upstream answer to relay.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("provider {provider} did not answer within {after:?}")]
    Timeout { provider: String, after: Duration },
    #[error("provider {provider} could not be reached: {message}")]
    Connect { provider: String, message: String },
    #[error("provider {provider} sent an unusable answer: {error}")]
    Invalid {
        provider: String,
        error: UpstreamInvalid,
    },
    #[error("provider {provider} answered with a redirect ({status}), which is never followed")]
    Redirect { provider: String, status: u16 },
    #[error("provider {provider} sent an answer larger than {limit} bytes")]
    TooLarge { provider: String, limit: usize },
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("{0}")]
    Build(String),
}

impl DispatchError {
    /// Low-cardinality label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DispatchError::Timeout { .. } => "timeout",
            DispatchError::Connect { .. } => "connect",
            DispatchError::Invalid { error, .. } => error.kind(),
            DispatchError::Redirect { .. } => "redirect",
            DispatchError::TooLarge { .. } => "response_too_large",
            DispatchError::Busy(_) => "busy",
            DispatchError::Build(_) => "invalid_request",
        }
    }
}

/// Checks a whole 2xx body before it is taken as the answer (the caller
/// may keep what it parsed).
pub type Accept<'a> = dyn FnMut(&Candidate, &Bytes) -> Result<(), UpstreamInvalid> + Send + 'a;

/// Each request's number, so a key refused twice by one request counts once.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

type Attempted = Result<Dispatched, DispatchError>;

/// How one candidate ended.
enum Step {
    /// The request's answer (or error).
    Done(Attempted),
    /// Given up; this was its last attempt.
    MovedOn(Attempted),
}

/// Sends the request to `candidates` in order; see the module doc.
pub async fn dispatch(
    http: &HttpClient,
    candidates: &[Candidate],
    outgoing: &Outgoing<'_>,
    mode: Mode,
    backoff: Duration,
    accept: &mut Accept<'_>,
) -> Result<Dispatched, DispatchError> {
    let mut run = Run {
        http,
        outgoing,
        mode,
        backoff,
        request: REQUESTS.fetch_add(1, Ordering::Relaxed),
        failovers: 0,
    };
    let mut last: Option<Attempted> = None;
    for (i, candidate) in candidates.iter().enumerate() {
        let upstream = &candidate.upstream;
        let Some(pass) = upstream.breaker.try_acquire() else {
            continue;
        };
        let key = upstream.keys.pick(&[]);
        if key.is_none() && upstream.keys.has_keys() {
            continue;
        }
        let rest = &candidates[i + 1..];
        match run.candidate(candidate, pass, key, rest, accept).await? {
            Step::Done(result) => return result,
            Step::MovedOn(result) => {
                last = Some(result);
                run.failovers += 1;
            }
        }
    }
    if let Some(result) = last {
        return result;
    }
    // Nothing was usable, so nothing was sent: panic routing.
    let best = candidates
        .iter()
        .min_by_key(|c| usable_at(c))
        .ok_or_else(|| DispatchError::Build("no provider can serve this request".into()))?;
    tracing::debug!(provider = %best.upstream.spec.name, "no usable candidate; sending to the one usable soonest");
    let keys = &best.upstream.keys;
    let key = keys.pick(&[]).or_else(|| keys.soonest(&[]));
    match run
        .candidate(best, best.upstream.breaker.force(), key, &[], accept)
        .await?
    {
        Step::Done(result) | Step::MovedOn(result) => result,
    }
}

/// Whether `outcome` may move the request to the next candidate.
fn moves_on(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::RateLimited { .. } | Outcome::Unavailable { .. } | Outcome::Broken
    )
}

/// Whether a request would be sent to `candidate` now.
fn usable(candidate: &Candidate) -> bool {
    candidate.upstream.breaker.is_available() && candidate.upstream.keys.has_usable(&[])
}

/// When `candidate` becomes usable (`None`: now), to rank unusable ones.
fn usable_at(candidate: &Candidate) -> Option<Instant> {
    let breaker = candidate.upstream.breaker.reopens_at();
    let keys = candidate.upstream.keys.usable_at();
    breaker.max(keys)
}

/// One request's dispatch, across candidates.
struct Run<'r, 'o> {
    http: &'r HttpClient,
    outgoing: &'r Outgoing<'o>,
    mode: Mode,
    backoff: Duration,
    request: u64,
    failovers: u32,
}

impl Run<'_, '_> {
    /// Attempts on one candidate until [`retry::decide`] returns or moves on,
    /// starting with `key`; `rest` are the candidates after this one. `Err`
    /// only when the whole request must end (no connection permit, or the
    /// request cannot be built).
    async fn candidate<'c>(
        &self,
        candidate: &'c Candidate,
        mut pass: Pass<'_>,
        mut key: Option<(usize, &'c Secret)>,
        rest: &[Candidate],
        accept: &mut Accept<'_>,
    ) -> Result<Step, DispatchError> {
        let upstream = &candidate.upstream;
        let spec = &upstream.spec;
        let keys = &upstream.keys;
        // Keys this request must not use again (refused or rate limited).
        let mut tried: Vec<usize> = Vec::new();
        let mut retries = 0;
        let mut switched_key = false;
        let mut health = Health::Unknown;
        loop {
            let request = self
                .outgoing
                .build(self.http.inner(), candidate, key.map(|(_, s)| s))
                .map_err(DispatchError::Build)?;
            let (outcome, result) = self.attempt(candidate, request, accept).await?;
            if outcome != Outcome::Accepted {
                let status = result.as_ref().ok().map(|a| a.status);
                let error = result.as_ref().err().map(ToString::to_string);
                tracing::warn!(provider = %spec.name, ?outcome, ?status, ?error, "upstream attempt failed");
            }
            let another_key = match (outcome, key) {
                (Outcome::CredentialsRefused | Outcome::RateLimited { .. }, Some((index, _))) => {
                    tried.push(index);
                    keys.has_usable(&tried)
                }
                _ => false,
            };
            let decision = retry::decide(
                outcome,
                &Position {
                    retries,
                    max_retries: spec.max_retries,
                    another_key,
                    switched_key,
                    // Asked only when it matters: it costs locks per candidate.
                    last: !moves_on(outcome) || !rest.iter().any(usable),
                },
            );
            if let Some((index, _)) = key {
                match decision.key {
                    KeyVerdict::Accepted => keys.accepted(index),
                    KeyVerdict::Refused => {
                        if let Some(length) = keys.refused(index, self.request) {
                            tracing::warn!(provider = %spec.name, key = index, ?length, "key quarantined after repeated authentication failures");
                        }
                    }
                    KeyVerdict::CoolDown(retry_after) => keys.cool_down(
                        index,
                        retry_after.unwrap_or(self.backoff).min(MAX_COOL_DOWN),
                    ),
                    KeyVerdict::Unknown => {}
                }
            }
            if decision.health != Health::Unknown {
                health = decision.health;
            }
            match decision.next {
                Next::NextKey => {
                    switched_key |= outcome == Outcome::CredentialsRefused;
                    key = keys.pick(&tried).or_else(|| keys.soonest(&tried));
                }
                Next::Retry(wait) => {
                    retries += 1;
                    tokio::time::sleep(retry::delay(wait, self.backoff)).await;
                    key = keys.pick(&tried).or_else(|| keys.soonest(&tried));
                }
                Next::Return | Next::NextCandidate => {
                    match health {
                        Health::Success => pass.success(),
                        Health::Failure => pass.failure(),
                        Health::Unknown => {}
                    }
                    return Ok(if decision.next == Next::Return {
                        Step::Done(result)
                    } else {
                        Step::MovedOn(result)
                    });
                }
            }
        }
    }

    /// One attempt: permit, send, read (or check the opening of) the answer.
    async fn attempt(
        &self,
        candidate: &Candidate,
        request: reqwest::RequestBuilder,
        accept: &mut Accept<'_>,
    ) -> Result<(Outcome, Attempted), DispatchError> {
        let permit = self.http.permit().await?;
        let spec = &candidate.upstream.spec;
        let provider = || spec.name.clone();
        let limit = match self.mode {
            Mode::Buffered => spec.timeout,
            Mode::Streaming => spec.first_byte_timeout(),
        };
        let max_bytes = self.http.max_response_bytes();
        let started = Instant::now();
        let deadline = started + limit;
        let timeout = || DispatchError::Timeout {
            provider: provider(),
            after: limit,
        };
        let unavailable = Outcome::Unavailable { retry_after: None };
        let broken = |error: DispatchError| Ok((Outcome::Broken, Err(error)));
        let mut sent =
            match tokio::time::timeout_at(deadline, self.http.send_with(permit, request)).await {
                Err(_) => return Ok((unavailable, Err(timeout()))),
                Ok(Err(e)) => {
                    let message = if e.is_timeout() {
                        "timed out".into()
                    } else {
                        error_chain(&e)
                    };
                    let error = DispatchError::Connect {
                        provider: provider(),
                        message,
                    };
                    return Ok((unavailable, Err(error)));
                }
                Ok(Ok(sent)) => sent,
            };
        let ttfb = started.elapsed();
        let status = sent.response.status().as_u16();
        // Moved out, not cloned: reading the body never needs them.
        let headers = std::mem::take(sent.response.headers_mut());
        let retry_after = retry::retry_after(&headers);
        if (300..400).contains(&status) {
            return broken(DispatchError::Redirect {
                provider: provider(),
                status,
            });
        }
        let answer = |body, outcome| Dispatched {
            candidate: candidate.clone(),
            status,
            headers,
            body,
            ttfb,
            failovers: self.failovers,
            outcome,
        };
        let success = (200..300).contains(&status);
        if success && self.mode == Mode::Streaming {
            let format = spec.api_format;
            return Ok(
                match open_stream(&mut sent.response, format, deadline, max_bytes).await {
                    Opened::Ready(first) => {
                        let body = Body::Stream {
                            first,
                            response: sent.response,
                            permit: sent.permit,
                        };
                        (Outcome::Accepted, Ok(answer(body, Outcome::Accepted)))
                    }
                    Opened::Failed(read) => self.read_failure(read, candidate, limit),
                },
            );
        }
        // Error answers to streaming requests are small: read them whole,
        // under the provider's whole-request timeout.
        let deadline = match self.mode {
            Mode::Streaming => Instant::now() + spec.timeout,
            Mode::Buffered => deadline,
        };
        let body = match read_body(&mut sent.response, deadline, max_bytes).await {
            Ok(body) => body,
            Err(read) => return Ok(self.read_failure(read, candidate, limit)),
        };
        drop(sent);
        if success {
            return Ok(match accept(candidate, &body) {
                Ok(()) => (
                    Outcome::Accepted,
                    Ok(answer(Body::Full(body), Outcome::Accepted)),
                ),
                Err(error) => (
                    Outcome::Broken,
                    Err(DispatchError::Invalid {
                        provider: provider(),
                        error,
                    }),
                ),
            });
        }
        let outcome = retry::classify(status, retry_after, &body);
        Ok((outcome, Ok(answer(Body::Full(body), outcome))))
    }

    fn read_failure(
        &self,
        read: ReadFailure,
        candidate: &Candidate,
        limit: Duration,
    ) -> (Outcome, Attempted) {
        let provider = candidate.upstream.spec.name.clone();
        let unavailable = Outcome::Unavailable { retry_after: None };
        match read {
            ReadFailure::TimedOut => (
                unavailable,
                Err(DispatchError::Timeout {
                    provider,
                    after: limit,
                }),
            ),
            ReadFailure::Broken(message) => (
                unavailable,
                Err(DispatchError::Connect { provider, message }),
            ),
            ReadFailure::TooLarge(limit) => (
                Outcome::Broken,
                Err(DispatchError::TooLarge { provider, limit }),
            ),
            ReadFailure::Invalid(error) => (
                Outcome::Broken,
                Err(DispatchError::Invalid { provider, error }),
            ),
        }
    }
}

/// Why reading an answer failed.
#[derive(Debug)]
enum ReadFailure {
    TimedOut,
    /// The connection broke.
    Broken(String),
    TooLarge(usize),
    /// A stream that did not start as an answer.
    Invalid(UpstreamInvalid),
}

/// Reads a whole body, at most `limit` bytes, by `deadline`.
async fn read_body(
    response: &mut reqwest::Response,
    deadline: Instant,
    limit: usize,
) -> Result<Bytes, ReadFailure> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadFailure::TooLarge(limit));
    }
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    loop {
        let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return Err(ReadFailure::TimedOut),
            Ok(Err(e)) => return Err(ReadFailure::Broken(error_chain(&e))),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        let read = first.as_ref().map_or(0, Bytes::len) + more.len() + chunk.len();
        if read > limit {
            return Err(ReadFailure::TooLarge(limit));
        }
        match &first {
            None => first = Some(chunk),
            Some(head) => {
                if more.is_empty() {
                    more.extend_from_slice(head);
                }
                more.extend_from_slice(&chunk);
            }
        }
    }
    // One chunk (the usual case) is returned without a copy.
    Ok(if more.is_empty() {
        first.unwrap_or_default()
    } else {
        more.freeze()
    })
}

/// How a stream's opening went.
enum Opened {
    /// It began as an answer; these bytes were read so far.
    Ready(Bytes),
    Failed(ReadFailure),
}

/// Reads a 2xx stream until its first event shows it is an answer.
async fn open_stream(
    response: &mut reqwest::Response,
    format: ApiFormat,
    deadline: Instant,
    limit: usize,
) -> Opened {
    let mut parser = SseParser::default();
    let mut read = BytesMut::new();
    let mut single: Option<Bytes> = None;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return Opened::Failed(ReadFailure::TimedOut),
            Ok(Err(e)) => return Opened::Failed(ReadFailure::Broken(error_chain(&e))),
            Ok(Ok(None)) => {
                return Opened::Failed(ReadFailure::Invalid(UpstreamInvalid::Truncated));
            }
            Ok(Ok(Some(chunk))) => chunk,
        };
        let frames = match parser.push(&chunk) {
            Ok(frames) => frames,
            Err(_) => return Opened::Failed(ReadFailure::TooLarge(parser.max_frame())),
        };
        // Keep every byte read: the relay parses the stream from its start.
        match single.take() {
            None if read.is_empty() => single = Some(chunk),
            Some(head) => {
                read.extend_from_slice(&head);
                read.extend_from_slice(&chunk);
            }
            None => read.extend_from_slice(&chunk),
        }
        if single.as_ref().map_or(read.len(), Bytes::len) > limit {
            return Opened::Failed(ReadFailure::TooLarge(limit));
        }
        for frame in frames {
            let opening = match format {
                ApiFormat::Openai => openai_stream::opening(&frame.data),
                ApiFormat::Anthropic => anthropic_opening(&frame.data),
            };
            match opening {
                Ok(Opening::NeedMore) => {}
                Ok(Opening::Ready) => {
                    return Opened::Ready(single.take().unwrap_or_else(|| read.split().freeze()));
                }
                Err(error) => return Opened::Failed(ReadFailure::Invalid(error)),
            }
        }
    }
}

/// The first event of an Anthropic-format stream: JSON, and not `error`.
fn anthropic_opening(data: &str) -> Result<Opening, UpstreamInvalid> {
    let value: serde_json::Value =
        serde_json::from_str(data).map_err(|e| UpstreamInvalid::NotJson(e.to_string()))?;
    if value.get("type").and_then(serde_json::Value::as_str) == Some("error") {
        let message = value
            .pointer("/error/message")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("error event")
            .to_string();
        return Err(UpstreamInvalid::Error(message));
    }
    Ok(Opening::Ready)
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
