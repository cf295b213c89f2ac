//! Measuring: the worker tasks that send requests and record what happened.
//!
//! A fixed pool of `concurrency` workers (no task per request). Each waits
//! for a permit from the [`Pacer`], claims the next
//! index from a shared counter, sends, reads the whole body and records into
//! its own [`Recorder`]; recorders are merged only at the end (`report.rs`),
//! so the hot path shares nothing but two atomics and the live-view mutex.
//!
//! Latency is measured from the *due* time (coordinated-omission corrected,
//! oha's `--latency-correction`) and from the send time (uncorrected). When
//! every worker is busy, due requests wait for one: that shows up as
//! corrected latency and scheduling lag, which is the point of an open loop.
//!
//! The request is built from a [`Target`] prepared once: the body is a
//! `Bytes` cloned per request, header values are pre-built. What is left per
//! request is what reqwest itself needs (its `Request`, a `Url` copy).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use reqwest::header::{HeaderName, HeaderValue};
use tokio::sync::{TryAcquireError, watch};

use super::schedule::{Pacer, Schedule};
use super::sse::TokenCounter;
use crate::upstream::client::{HttpClient, Sent};

/// Histograms hold microseconds up to this (60 s); larger values are clamped.
pub const MAX_MICROS: u64 = 60_000_000;
/// Significant figures kept by every histogram.
pub const SIGFIGS: u8 = 3;
/// A request sent more than this after its due time counts as late.
pub const LATE: Duration = Duration::from_millis(1);

/// Everything needed to build one request, prepared before the run.
#[derive(Debug, Clone)]
pub struct Target {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
    /// Read the body as SSE: record time to first byte and tokens/s.
    pub stream: bool,
    /// Per-request timeout, body included.
    pub timeout: Duration,
}

impl Target {
    fn request(&self, client: &HttpClient) -> reqwest::RequestBuilder {
        let mut request = client
            .inner()
            .request(self.method.clone(), self.url.clone())
            .timeout(self.timeout);
        for (name, value) in &self.headers {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        request
    }
}

/// Low-cardinality reasons a request produced no complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Timeout,
    Connect,
    /// The response started but its body failed (reset, truncated).
    Body,
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 4] = [Self::Timeout, Self::Connect, Self::Body, Self::Other];

    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Body => "body",
            Self::Other => "other",
        }
    }

    fn classify(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Connect
        } else if error.is_body() || error.is_decode() {
            Self::Body
        } else {
            Self::Other
        }
    }
}

/// What one request produced.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Response {
        status: u16,
        /// When the first body byte arrived, if any did.
        first_byte: Option<Instant>,
        /// Output tokens seen in an SSE body (0 when not streaming).
        tokens: u64,
    },
    Error(ErrorKind),
}

fn new_histogram() -> Histogram<u32> {
    // `new` auto-resizes: a worker's histograms start at ~8 KB and grow only
    // as far as the values it sees, which matters with a thousand workers.
    match Histogram::new(SIGFIGS) {
        Ok(h) => h,
        Err(_) => unreachable!("3 significant figures is a valid histogram precision"),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .min(MAX_MICROS)
}

fn record(h: &mut Histogram<u32>, value: u64) {
    let value = value.min(MAX_MICROS);
    if h.record(value).is_err() {
        h.saturating_record(value);
    }
}

/// One worker's measurements; merged into the report at the end.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// From due time to the end of the body (corrected), µs.
    pub latency: Histogram<u32>,
    /// From send time to the end of the body, µs.
    pub uncorrected: Histogram<u32>,
    /// Send time minus due time, µs.
    pub lag: Histogram<u32>,
    /// From due time to the first body byte, µs (streaming only).
    pub ttfb: Histogram<u32>,
    /// Output tokens per second after the first byte (streaming only).
    pub tokens_per_s: Histogram<u32>,
    /// Response count per status code; few distinct codes, so a short vec.
    pub statuses: Vec<(u16, u64)>,
    /// Count per [`ErrorKind`], indexed like [`ErrorKind::ALL`].
    pub errors: [u64; 4],
    /// Requests sent more than [`LATE`] after their due time.
    pub late: u64,
    /// Late requests that found no free worker (all were busy) rather than
    /// being woken late: a sign `--concurrency` is too low for the latency.
    pub backlogged: u64,
    /// When the last measured request finished.
    pub last_done: Option<Instant>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            latency: new_histogram(),
            uncorrected: new_histogram(),
            lag: new_histogram(),
            ttfb: new_histogram(),
            tokens_per_s: new_histogram(),
            statuses: Vec::new(),
            errors: [0; 4],
            late: 0,
            backlogged: 0,
            last_done: None,
        }
    }
}

/// The timestamps of one request.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub due: Instant,
    pub sent: Instant,
    pub done: Instant,
    /// The worker found the permit already waiting: no worker was free.
    pub backlogged: bool,
}

impl Recorder {
    pub fn record(&mut self, timing: Timing, outcome: Outcome) {
        let lag = timing.sent.saturating_duration_since(timing.due);
        record(&mut self.lag, micros(lag));
        if lag > LATE {
            self.late += 1;
            self.backlogged += u64::from(timing.backlogged);
        }
        self.last_done = self.last_done.max(Some(timing.done));
        match outcome {
            Outcome::Error(kind) => self.errors[kind as usize] += 1,
            Outcome::Response {
                status,
                first_byte,
                tokens,
            } => {
                match self.statuses.iter_mut().find(|(code, _)| *code == status) {
                    Some((_, n)) => *n += 1,
                    None => self.statuses.push((status, 1)),
                }
                record(&mut self.latency, micros(timing.done - timing.due));
                record(&mut self.uncorrected, micros(timing.done - timing.sent));
                if let Some(first) = first_byte {
                    record(&mut self.ttfb, micros(first - timing.due));
                    let generating = timing.done.saturating_duration_since(first);
                    if tokens > 0 && !generating.is_zero() {
                        let rate = tokens as f64 / generating.as_secs_f64();
                        record(&mut self.tokens_per_s, rate.round() as u64);
                    }
                }
            }
        }
    }
}

/// Counters the progress display reads while the run goes on.
#[derive(Debug)]
pub struct Live {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    /// Corrected latency since the progress display last reset it.
    pub window: Mutex<Histogram<u32>>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            window: Mutex::new(new_histogram()),
        }
    }
}

impl Live {
    fn record(&self, timing: Timing, outcome: Outcome) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        let ok =
            matches!(outcome, Outcome::Response { status, .. } if (200..300).contains(&status));
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut window) = self.window.lock() {
            record(&mut window, micros(timing.done - timing.due));
        }
    }
}

/// State shared by all workers of one run.
#[derive(Debug)]
pub struct Shared {
    pub schedule: Schedule,
    pub target: Target,
    pub client: HttpClient,
    /// Read by the progress display.
    pub live: Arc<Live>,
    /// The next index to claim.
    pub next: AtomicU64,
}

/// One worker: claim, wait, send, record, until the schedule ends or `stop`
/// fires. Returns its recorder for the final merge.
pub async fn work(
    shared: Arc<Shared>,
    pacer: Arc<tokio::sync::Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> Recorder {
    let mut recorder = Recorder::default();
    let mut tokens = TokenCounter::default();
    loop {
        // A permit already waiting means the request was due while every
        // worker was busy.
        let backlogged = match pacer.try_acquire() {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => match pacer.acquire().await {
                Ok(permit) => {
                    permit.forget();
                    false
                }
                Err(_) => break,
            },
        };
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(due) = shared.schedule.due(i) else {
            break;
        };
        let sent = Instant::now();
        let outcome = tokio::select! {
            biased;
            _ = stop.changed() => break,
            outcome = send(&shared.target, &shared.client, &mut tokens) => outcome,
        };
        let timing = Timing {
            due,
            sent,
            done: Instant::now(),
            backlogged,
        };
        shared.live.record(timing, outcome);
        if shared.schedule.is_measured(i) {
            recorder.record(timing, outcome);
        }
    }
    recorder
}

/// Sends one request and reads its body to the end, chunk by chunk, without
/// collecting it.
async fn send(target: &Target, client: &HttpClient, tokens: &mut TokenCounter) -> Outcome {
    let Sent {
        mut response,
        permit,
    } = match client.send(target.request(client)).await {
        Ok(sent) => sent,
        Err(error) => return Outcome::Error(ErrorKind::classify(&error)),
    };
    let status = response.status().as_u16();
    let mut first_byte = None;
    tokens.reset();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                first_byte.get_or_insert_with(Instant::now);
                if target.stream {
                    tokens.feed(&chunk);
                }
            }
            Ok(None) => break,
            Err(error) => return Outcome::Error(ErrorKind::classify(&error)),
        }
    }
    // The connection is free for another request only once the body is read.
    drop(permit);
    Outcome::Response {
        status,
        first_byte: first_byte.filter(|_| target.stream),
        tokens: tokens.total(),
    }
}

/// Starts the pacer and `workers` worker tasks; returns the recorders when the
/// schedule is over or `stop` fired.
pub async fn run_workers(
    shared: Arc<Shared>,
    workers: usize,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<Recorder>> {
    let pacer = Pacer::start(shared.schedule, workers)?;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        set.spawn(work(shared.clone(), pacer.released().clone(), stop.clone()));
    }
    let mut stop_pacer = stop.clone();
    let mut recorders = Vec::with_capacity(workers);
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                Some(recorder) => recorders.push(recorder?),
                None => break,
            },
            Ok(()) = stop_pacer.changed() => pacer.stop(),
        }
    }
    Ok(recorders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_over_a_millisecond_is_late_and_backlog_is_told_apart() {
        let mut r = Recorder::default();
        let due = Instant::now();
        let ok = Outcome::Response {
            status: 200,
            first_byte: None,
            tokens: 0,
        };
        let at = |sent_us, done_us, backlogged| Timing {
            due,
            sent: due + Duration::from_micros(sent_us),
            done: due + Duration::from_micros(done_us),
            backlogged,
        };
        r.record(at(100, 1_100, false), ok);
        r.record(at(2_000, 3_000, true), ok);
        r.record(at(5_000, 6_000, false), Outcome::Error(ErrorKind::Timeout));
        assert_eq!(r.late, 2);
        assert_eq!(r.backlogged, 1);
        assert_eq!(r.statuses, vec![(200, 2)]);
        assert_eq!(r.errors, [1, 0, 0, 0]);
        assert_eq!(r.latency.len(), 2);
        assert_eq!(r.lag.len(), 3);
        assert_eq!(r.uncorrected.max(), r.uncorrected.highest_equivalent(1_000));
    }

    #[test]
    fn streaming_records_ttfb_and_tokens_per_second() {
        let mut r = Recorder::default();
        let due = Instant::now();
        let timing = Timing {
            due,
            sent: due,
            done: due + Duration::from_millis(110),
            backlogged: false,
        };
        let outcome = Outcome::Response {
            status: 200,
            first_byte: Some(due + Duration::from_millis(10)),
            tokens: 50,
        };
        r.record(timing, outcome);
        assert_eq!(r.ttfb.max(), r.ttfb.highest_equivalent(10_000));
        // 50 tokens over the 100 ms after the first byte.
        assert_eq!(r.tokens_per_s.max(), r.tokens_per_s.highest_equivalent(500));
    }
}
