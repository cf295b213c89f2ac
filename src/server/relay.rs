//! Relaying upstream answers to the client: passthrough of Anthropic-format
//! answers (bytes unchanged; usage read on the side) and conversion of
//! OpenAI-format streams into Anthropic SSE, with `ping` keep-alives while
//! the upstream is silent. [`LogGuard`] writes the request's log record when
//! the answer is finished, failed, or dropped because the client went away.
//!
//! A stream that breaks is never passed off as a whole answer: an invalid
//! chunk, a reset, a converted stream ending without `[DONE]` or a
//! `finish_reason`, a passthrough stream ending without `message_stop`,
//! silence beyond the provider's timeout, or more than
//! `ABRIDGE_MAX_STREAM_BYTES` in total all end the client's stream with an
//! Anthropic `error` event, and the log records the request as failed with
//! the reason as its kind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

use crate::protocol::UpstreamInvalid;
use crate::protocol::anthropic::Usage;
use crate::protocol::stream::{Event, StreamContext, StreamConverter};
use crate::protocol::thinking;
use crate::store::{LogRecord, LogWriter};
use crate::upstream::dispatch::{self, Dispatched};
use crate::upstream::signatures::SignatureBook;
use crate::upstream::sse::SseParser;

/// Response headers that belong to one connection and are never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Writes the request's log record exactly once, when dropped.
pub struct LogGuard {
    logs: Option<LogWriter>,
    record: LogRecord,
    started: Instant,
    done: bool,
}

impl LogGuard {
    pub fn new(logs: LogWriter, record: LogRecord, started: Instant) -> Self {
        logs.begin();
        Self {
            logs: Some(logs),
            record,
            started,
            done: false,
        }
    }

    pub fn usage(&mut self, usage: &Usage) {
        let r = &mut self.record;
        r.input_tokens = r.input_tokens.max(usage.input_tokens);
        r.output_tokens = r.output_tokens.max(usage.output_tokens);
        r.cache_read_tokens = r
            .cache_read_tokens
            .max(usage.cache_read_input_tokens.unwrap_or(0));
        r.cache_creation_tokens = r
            .cache_creation_tokens
            .max(usage.cache_creation_input_tokens.unwrap_or(0));
    }

    /// Usage from an Anthropic JSON `usage` object (passthrough), where any
    /// field may be missing or null.
    fn usage_json(&mut self, usage: &serde_json::Value) {
        let get = |k: &str| usage.get(k).and_then(serde_json::Value::as_u64);
        self.usage(&Usage {
            input_tokens: get("input_tokens").unwrap_or(0),
            output_tokens: get("output_tokens").unwrap_or(0),
            cache_creation_input_tokens: get("cache_creation_input_tokens"),
            cache_read_input_tokens: get("cache_read_input_tokens"),
        });
    }

    /// The record, for the handler to fill in as it learns more.
    pub fn record_mut(&mut self) -> &mut LogRecord {
        &mut self.record
    }

    pub fn complete(&mut self) {
        self.done = true;
    }

    pub fn fail(&mut self, status: u16, kind: &'static str) {
        self.record.status = status;
        self.record.error_kind = Some(kind.into());
        self.done = true;
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(logs) = self.logs.take() else { return };
        let mut record = std::mem::take(&mut self.record);
        record.latency_ms = self.started.elapsed().as_millis() as u64;
        if !self.done {
            // 499: the client closed the connection first (nginx's convention).
            if record.status == 0 {
                record.status = 499;
            }
            record.error_kind = Some("client_closed".into());
        }
        logs.finish(record);
    }
}

fn sse_response(stream: BoxStream<'static, Result<Bytes, std::convert::Infallible>>) -> Response {
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn event_bytes(event: &Event) -> Bytes {
    let mut out = Vec::new();
    event.write_sse(&mut out);
    Bytes::from(out)
}

/// Notes which provider family issued the thinking signatures in an answer.
pub struct Recorder {
    pub book: SignatureBook,
    pub family: Arc<str>,
}

impl Recorder {
    fn note(&self, signature: &str) {
        self.book.record(signature, &self.family);
    }
}

/// Passes an Anthropic-format answer through unchanged. `parsed` is the
/// whole body already parsed by dispatch's check, if it was.
pub fn passthrough(
    answer: Dispatched,
    mut guard: LogGuard,
    recorder: Option<Recorder>,
    parsed: Option<serde_json::Value>,
    max_stream: u64,
) -> Response {
    let idle = answer.candidate.upstream.spec.timeout;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let ok = status.is_success();
    let body = match answer.body {
        dispatch::Body::Full(bytes) => {
            if ok {
                let value = parsed.or_else(|| serde_json::from_slice(&bytes).ok());
                if let Some(value) = value {
                    if let Some(usage) = value.get("usage") {
                        guard.usage_json(usage);
                    }
                    if let Some(recorder) = &recorder {
                        for signature in thinking::signatures_in_message(&value) {
                            recorder.note(signature);
                        }
                    }
                }
                guard.complete();
            } else {
                guard.fail(answer.status, "upstream_error");
            }
            drop(guard);
            Body::from(bytes)
        }
        stream @ dispatch::Body::Stream { .. } => Body::from_stream(observe(
            stream.into_stream(),
            guard,
            recorder,
            Limits {
                idle,
                bytes: max_stream,
            },
        )),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in &answer.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

/// Bounds on a relayed stream.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Silence after which the stream is given up (the provider's `timeout`).
    idle: Duration,
    /// Upstream bytes relayed at most (`ABRIDGE_MAX_STREAM_BYTES`).
    bytes: u64,
}

/// Relays a passthrough stream byte for byte, reading usage on the side.
/// It ends with an `error` event (see the module doc) when it breaks, stalls
/// longer than the provider's timeout, grows too large, or ends without
/// `message_stop`.
fn observe(
    inner: BoxStream<'static, Result<Bytes, reqwest::Error>>,
    guard: LogGuard,
    recorder: Option<Recorder>,
    limits: Limits,
) -> BoxStream<'static, Result<Bytes, std::convert::Infallible>> {
    struct State {
        inner: BoxStream<'static, Result<Bytes, reqwest::Error>>,
        parser: SseParser,
        guard: LogGuard,
        recorder: Option<Recorder>,
        /// Upstream bytes relayed so far.
        relayed: u64,
        /// `message_stop` went by: the answer is whole, whatever follows.
        stopped: bool,
        finished: bool,
    }
    let state = State {
        inner,
        parser: SseParser::default(),
        guard,
        recorder,
        relayed: 0,
        stopped: false,
        finished: false,
    };
    futures_util::stream::unfold(state, move |mut s| async move {
        if s.finished {
            return None;
        }
        let idle = limits.idle;
        let failure = match tokio::time::timeout(idle, s.inner.next()).await {
            Ok(Some(Ok(bytes))) => {
                s.relayed += bytes.len() as u64;
                if s.relayed > limits.bytes && !s.stopped {
                    Some((
                        "response_too_large",
                        format!("the provider's answer exceeded {} bytes", limits.bytes),
                    ))
                } else {
                    for frame in s.parser.push(&bytes).unwrap_or_default() {
                        s.stopped |=
                            note_anthropic_event(&mut s.guard, s.recorder.as_ref(), &frame.data);
                    }
                    return Some((Ok(bytes), s));
                }
            }
            Ok(None) => Some((
                UpstreamInvalid::Truncated.kind(),
                "the provider's stream ended before message_stop".to_string(),
            )),
            Ok(Some(Err(e))) => Some((
                "stream_interrupted",
                format!("the provider's stream broke off: {e}"),
            )),
            Err(_) => Some(("timeout", format!("the provider sent nothing for {idle:?}"))),
        };
        s.finished = true;
        match failure {
            Some((kind, message)) if !s.stopped => {
                s.guard.fail(200, kind);
                let event = StreamConverter::error_event("api_error", &message);
                Some((Ok(event_bytes(&event)), s))
            }
            _ => {
                s.guard.complete();
                None
            }
        }
    })
    .boxed()
}

/// Reads one passthrough event for usage, signatures and errors; true when
/// it is `message_stop`.
fn note_anthropic_event(guard: &mut LogGuard, recorder: Option<&Recorder>, data: &str) -> bool {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(data) else {
        return false;
    };
    if let (Some(recorder), Some(signature)) = (recorder, thinking::signature_in_event(&value)) {
        recorder.note(signature);
    }
    match value.get("type").and_then(|t| t.as_str()) {
        Some("message_start") => {
            if let Some(usage) = value.pointer("/message/usage") {
                guard.usage_json(usage);
            }
        }
        Some("message_delta") => {
            if let Some(usage) = value.get("usage") {
                guard.usage_json(usage);
            }
        }
        Some("message_stop") => {
            guard.complete();
            return true;
        }
        Some("error") => guard.fail(200, "upstream_stream_error"),
        _ => {}
    }
    false
}

/// How a converted stream treats upstream silence.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    /// Silence after which a `ping` event is sent (`ABRIDGE_PING_INTERVAL`).
    pub ping: Duration,
    /// Silence after which the stream is given up (the provider's `timeout`).
    pub idle: Duration,
}

/// Converts an OpenAI-format stream into Anthropic SSE, relaying at most
/// `max_bytes` of upstream stream.
pub fn converted(
    body: dispatch::Body,
    guard: LogGuard,
    alias: String,
    stop_sequences: Vec<String>,
    timing: StreamTiming,
    max_bytes: u64,
) -> Response {
    struct State {
        inner: BoxStream<'static, Result<Bytes, reqwest::Error>>,
        parser: SseParser,
        converter: StreamConverter,
        guard: LogGuard,
        /// Events not yet sent, coalesced: everything one upstream read
        /// produces goes to the client in one write.
        out: Vec<u8>,
        silent: Duration,
        timing: StreamTiming,
        /// Upstream bytes read so far, against `max_bytes`.
        read: u64,
        max_bytes: u64,
        finished: bool,
    }

    impl State {
        /// The answer is complete: record its usage and stop.
        fn done(&mut self) {
            self.guard.usage(&self.converter.usage());
            self.guard.complete();
            self.finished = true;
        }

        fn emit(&mut self, event: &Event) {
            event.write_sse(&mut self.out);
        }

        fn abort(&mut self, kind: &'static str, message: &str) {
            self.emit(&StreamConverter::error_event("api_error", message));
            self.guard.fail(200, kind);
            self.finished = true;
        }

        fn frames(&mut self, frames: Vec<crate::upstream::sse::SseFrame>) {
            for frame in frames {
                match self.converter.push(&frame.data) {
                    Ok(events) => {
                        for event in &events {
                            self.emit(event);
                            // Anthropic sends a ping right after message_start; clients expect it.
                            if event.name == "message_start" {
                                self.emit(&Event::ping());
                            }
                        }
                    }
                    Err(e) => {
                        self.abort(e.kind(), &format!("invalid stream from provider: {e}"));
                        return;
                    }
                }
            }
        }
    }

    let ctx = StreamContext {
        model: alias,
        stop_sequences,
        ..StreamContext::default()
    };
    let state = State {
        inner: body.into_stream(),
        parser: SseParser::default(),
        converter: StreamConverter::new(ctx),
        guard,
        out: Vec::new(),
        silent: Duration::ZERO,
        timing,
        read: 0,
        max_bytes,
        finished: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if !s.out.is_empty() {
                let bytes = Bytes::from(std::mem::take(&mut s.out));
                return Some((Ok(bytes), s));
            }
            if s.finished {
                return None;
            }
            match tokio::time::timeout(s.timing.ping, s.inner.next()).await {
                Err(_) => {
                    s.silent += s.timing.ping;
                    if s.silent >= s.timing.idle {
                        s.abort("timeout", "the provider stopped sending");
                    } else {
                        s.emit(&Event::ping());
                    }
                }
                Ok(Some(Ok(bytes))) => {
                    s.silent = Duration::ZERO;
                    s.read += bytes.len() as u64;
                    if s.read > s.max_bytes {
                        let message =
                            format!("the provider's answer exceeded {} bytes", s.max_bytes);
                        s.abort("response_too_large", &message);
                        continue;
                    }
                    match s.parser.push(&bytes) {
                        Ok(frames) => s.frames(frames),
                        Err(e) => s.abort(
                            "response_too_large",
                            &format!("invalid stream from provider: {e}"),
                        ),
                    }
                    // `[DONE]` ends the answer even if the upstream keeps the
                    // connection open: stop reading and account for it now.
                    if !s.finished && s.converter.is_finished() {
                        s.done();
                    }
                }
                Ok(Some(Err(e))) => s.abort(
                    "stream_interrupted",
                    &format!("the provider's stream broke off: {e}"),
                ),
                Ok(None) => {
                    let rest = s.parser.finish();
                    s.frames(rest);
                    if !s.finished {
                        match s.converter.end() {
                            Ok(events) => {
                                for event in &events {
                                    s.emit(event);
                                }
                                s.done();
                            }
                            Err(e) => s.abort(
                                e.kind(),
                                &format!("the provider's stream ended early: {e}"),
                            ),
                        }
                    }
                }
            }
        }
    });
    sse_response(stream.boxed())
}
