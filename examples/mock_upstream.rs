//! A fast mock LLM provider for benchmarks and demos: OpenAI
//! `/v1/chat/completions` and Anthropic `/v1/messages` (JSON and SSE),
//! `/v1/messages/count_tokens` and `/health`.
//!
//! ```text
//! cargo run --release --example mock_upstream -- --listen 127.0.0.1:9100 \
//!     --latency 0ms --stream-chunks 10 --chunk-interval 1ms
//! ```
//!
//! Every body is read and checked to be JSON (a bad one gets a 400), the
//! model is echoed back, and streams carry `--stream-chunks` deltas spaced
//! `--chunk-interval` apart (tokio timers: 1 ms granularity). No per-request
//! logging, so the mock costs far less than what it is benchmarked against.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use clap::Parser;
use futures_util::stream;
use serde_json::json;

#[path = "support/openai_answer.rs"]
mod openai_answer;

#[derive(Parser, Debug)]
#[command(about = "Mock OpenAI/Anthropic upstream for abridge benchmarks")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Delay before each response starts (e.g. 0ms, 50ms).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Content deltas per streamed response (also the output token count).
    #[arg(long, default_value_t = 10)]
    stream_chunks: u32,
    /// Pause before each streamed delta (0ms for none).
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    chunk_interval: Duration,
}

struct Mock {
    latency: Duration,
    chunks: u32,
    interval: Duration,
    /// The full text of a non-streamed answer: one word per chunk.
    text: String,
    ids: AtomicU64,
}

#[derive(serde::Deserialize)]
struct Request {
    #[serde(default)]
    model: String,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
}

#[derive(serde::Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mock = Arc::new(Mock {
        latency: args.latency,
        chunks: args.stream_chunks,
        interval: args.chunk_interval,
        text: openai_answer::text(args.stream_chunks),
        ids: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        // Like a real provider, accept the multi-MB bodies Claude Code sends.
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Without TCP_NODELAY, Nagle holds each small SSE chunk until the client
    // ACKs the previous one (up to 40 ms with delayed ACKs).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Reads the fields the mock needs; parsing the whole body also checks it
/// is JSON.
fn parse(body: &Bytes) -> Result<Request, serde_json::Error> {
    serde_json::from_slice(body)
}

fn bad_request(error: &serde_json::Error) -> Response {
    let message = format!("body is not valid JSON: {error}");
    let error =
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}});
    (StatusCode::BAD_REQUEST, axum::Json(error)).into_response()
}

/// Sleeps unless `d` is zero: even a zero tokio sleep waits for the next
/// 1 ms timer tick, which would add ~1 ms to every "instant" response.
async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// Rough prompt size: a token per 4 bytes of request.
fn input_tokens(body: &Bytes) -> usize {
    body.len() / 4 + 1
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn count_tokens(body: Bytes) -> Response {
    match parse(&body) {
        Ok(_) => axum::Json(json!({"input_tokens": input_tokens(&body)})).into_response(),
        Err(error) => bad_request(&error),
    }
}

async fn chat(State(mock): State<Arc<Mock>>, body: Bytes) -> Response {
    let request = match parse(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(&error),
    };
    pause(mock.latency).await;
    let id = format!("chatcmpl-mock{}", mock.ids.fetch_add(1, Ordering::Relaxed));
    let answer = openai_answer::Answer {
        id: &id,
        created: now_secs(),
        model: &request.model,
        chunks: mock.chunks,
        prompt_tokens: input_tokens(&body),
    };
    if !request.stream {
        return axum::Json(answer.completion(&mock.text)).into_response();
    }
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let stream = answer.stream(include_usage);
    sse(move |step| stream.frame(step), mock.chunks, mock.interval)
}

async fn messages(State(mock): State<Arc<Mock>>, body: Bytes) -> Response {
    let request = match parse(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(&error),
    };
    pause(mock.latency).await;
    let id = format!("msg_mock{}", mock.ids.fetch_add(1, Ordering::Relaxed));
    let (input, output) = (input_tokens(&body), mock.chunks);
    if !request.stream {
        return axum::Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": request.model,
            "content": [{"type": "text", "text": mock.text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": output},
        }))
        .into_response();
    }
    let model = serde_json::Value::from(request.model);
    let (chunks, interval) = (mock.chunks, mock.interval);
    let frame = move |step: u32| -> Option<String> {
        let n = mock.chunks;
        Some(match step {
            0 => format!(
                "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"{id}\",\"type\":\"message\",\"role\":\"assistant\",\"model\":{model},\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":{input},\"output_tokens\":1}}}}}}\n\n\
                 event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
                 event: ping\ndata: {{\"type\":\"ping\"}}\n\n"
            ),
            s if s <= n => format!(
                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"tok{} \"}}}}\n\n",
                s - 1
            ),
            s if s == n + 1 => format!(
                "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
                 event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{output}}}}}\n\n\
                 event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
            ),
            _ => return None,
        })
    };
    sse(frame, chunks, interval)
}

/// Streams `frame(0)`, `frame(1)`, … until it returns `None`, pausing
/// `interval` before each delta step (`1..=chunks`).
fn sse<F>(frame: F, chunks: u32, interval: Duration) -> Response
where
    F: Fn(u32) -> Option<String> + Send + 'static,
{
    let body = stream::unfold((0, frame), move |(step, frame)| async move {
        if (1..=chunks).contains(&step) {
            pause(interval).await;
        }
        let bytes = Bytes::from(frame(step)?);
        Some((Ok::<_, std::convert::Infallible>(bytes), (step + 1, frame)))
    });
    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, Body::from_stream(body)).into_response()
}
