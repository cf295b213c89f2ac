//! Streaming conversion over HTTP: exact event sequences.

use std::time::Duration;

use serde_json::json;

use crate::harness::{MockUpstream, Reply, TestApp, openai_sse, providers_toml, sse_events};

fn chunk(delta: serde_json::Value, finish: Option<&str>) -> serde_json::Value {
    json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

/// Sends a small streaming request for `sonnet`.
async fn stream_request(app: &TestApp) -> reqwest::Response {
    app.post("/v1/messages")
        .json(&json!({"model": "sonnet", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

async fn stream_through(
    chunks: Vec<(Duration, String)>,
) -> (MockUpstream, Vec<(String, serde_json::Value)>) {
    let mock = MockUpstream::start(move |_, _| Reply::Chunks(chunks.clone())).await;
    let app = TestApp::spawn(&providers_toml(&[("p", "openai", &mock.url(), 1)])).await;
    let r = stream_request(&app).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    (mock, sse_events(&text))
}

fn names(events: &[(String, serde_json::Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn text_stream_has_the_exact_anthropic_sequence() {
    let chunks = openai_sse(&[
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": "Hel"}), None),
        chunk(json!({"content": "lo"}), None),
        chunk(json!({}), Some("stop")),
        json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}),
    ]);
    let (mock, events) = stream_through(chunks).await;
    assert_eq!(
        names(&events),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[0].1["message"]["model"], "sonnet");
    assert_eq!(events[2].1["content_block"]["type"], "text");
    assert_eq!(events[3].1["delta"]["text"], "Hel");
    assert_eq!(events[6].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[6].1["usage"]["output_tokens"], 2);
    let sent = &mock.received()[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn text_then_tool_call_streams_the_tool_with_its_arguments() {
    let chunks = openai_sse(&[
        chunk(json!({"content": "Checking."}), None),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Oslo\"}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
    ]);
    let (_mock, events) = stream_through(chunks).await;
    let starts: Vec<&serde_json::Value> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0]["index"], 0);
    assert_eq!(starts[1]["index"], 1);
    assert_eq!(starts[1]["content_block"]["type"], "tool_use");
    assert_eq!(starts[1]["content_block"]["name"], "get_weather");
    let args: String = events
        .iter()
        .filter(|(n, d)| n == "content_block_delta" && d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&args).unwrap(),
        json!({"city": "Oslo"})
    );
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    assert_eq!(names(&events).last(), Some(&"message_stop"));
}

#[tokio::test]
async fn finish_reason_without_done_still_ends_cleanly() {
    let chunks = vec![(
        Duration::ZERO,
        format!(
            "data: {}\n\n",
            chunk(json!({"content": "whole"}), Some("stop"))
        ),
    )];
    let (_mock, events) = stream_through(chunks).await;
    let n = names(&events);
    assert_eq!(n.last(), Some(&"message_stop"));
    assert!(n.contains(&"content_block_stop"));
}

#[tokio::test]
async fn garbage_after_content_ends_with_an_error_event() {
    let chunks = vec![
        (
            Duration::ZERO,
            format!("data: {}\n\n", chunk(json!({"content": "ok so far"}), None)),
        ),
        (Duration::ZERO, "data: {this is not json\n\n".to_string()),
    ];
    let (_mock, events) = stream_through(chunks).await;
    let last = events.last().unwrap();
    assert_eq!(last.0, "error");
    assert_eq!(last.1["type"], "error");
    assert_eq!(last.1["error"]["type"], "api_error");
}

#[tokio::test]
async fn silent_upstream_gets_ping_keepalives() {
    let chunks = vec![
        (
            Duration::ZERO,
            format!("data: {}\n\n", chunk(json!({"content": "a"}), None)),
        ),
        (
            Duration::from_millis(700),
            format!("data: {}\n\n", chunk(json!({"content": "b"}), Some("stop"))),
        ),
        (Duration::ZERO, "data: [DONE]\n\n".to_string()),
    ];
    let mock = MockUpstream::start(move |_, _| Reply::Chunks(chunks.clone())).await;
    let app = TestApp::spawn_with(&providers_toml(&[("p", "openai", &mock.url(), 1)]), |s| {
        s.server.ping_interval = Duration::from_millis(200);
    })
    .await;
    let r = stream_request(&app).await;
    let events = sse_events(&r.text().await.unwrap());
    let n = names(&events);
    let pings = n.iter().filter(|e| **e == "ping").count();
    assert!(
        pings >= 3,
        "one after message_start and at least two while silent: {n:?}"
    );
    assert_eq!(n.last(), Some(&"message_stop"));
}

#[tokio::test]
async fn done_ends_the_answer_even_if_the_upstream_lingers() {
    let chunks = vec![
        (
            Duration::ZERO,
            format!(
                "data: {}\n\n",
                chunk(json!({"content": "hi"}), Some("stop"))
            ),
        ),
        (
            Duration::ZERO,
            format!(
                "data: {}\n\n",
                json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}})
            ),
        ),
        (Duration::ZERO, "data: [DONE]\n\n".to_string()),
        (
            Duration::from_secs(5),
            ": the upstream keeps the connection open\n\n".to_string(),
        ),
    ];
    let mock = MockUpstream::start(move |_, _| Reply::Chunks(chunks.clone())).await;
    let app = TestApp::spawn_with(&providers_toml(&[("p", "openai", &mock.url(), 1)]), |s| {
        s.server.ping_interval = Duration::from_millis(100);
    })
    .await;
    let started = std::time::Instant::now();
    let r = stream_request(&app).await;
    let events = sse_events(&r.text().await.unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the answer ended at [DONE]"
    );
    assert_eq!(
        names(&events).last(),
        Some(&"message_stop"),
        "nothing after message_stop"
    );
    let state = app.stop().await;
    let log = &state.store.recent_logs(1).await.unwrap()[0];
    assert_eq!(
        (
            log.status,
            log.error_kind.as_deref(),
            log.input_tokens,
            log.output_tokens
        ),
        (200, None, 5, 1)
    );
}

#[tokio::test]
async fn a_client_leaving_a_stream_cancels_the_upstream_stream() {
    let mut chunks = vec![(
        Duration::ZERO,
        format!("data: {}\n\n", chunk(json!({"content": "first"}), None)),
    )];
    chunks.extend((0..50).map(|_| {
        (
            Duration::from_millis(100),
            format!("data: {}\n\n", chunk(json!({"content": "."}), None)),
        )
    }));
    let mock = MockUpstream::start(move |_, _| Reply::Chunks(chunks.clone())).await;
    let app = TestApp::spawn(&providers_toml(&[("p", "openai", &mock.url(), 1)])).await;
    let mut r = stream_request(&app).await;
    assert!(r.chunk().await.unwrap().is_some(), "the stream started");
    drop(r);
    assert_eq!(
        mock.wait_abandoned().await,
        1,
        "the upstream stream was dropped long before its 5 s end"
    );
    let state = app.stop().await;
    let log = &state.store.recent_logs(1).await.unwrap()[0];
    assert_eq!(log.error_kind.as_deref(), Some("client_closed"));
}

/// Streams a request through providers `broken` (priority 1) and, when
/// given, `good` (priority 2); returns the response and the app.
async fn stream_with_fallback(
    broken: Reply,
    good: Option<Vec<(Duration, String)>>,
) -> (
    reqwest::Response,
    TestApp,
    MockUpstream,
    Option<MockUpstream>,
) {
    let mock = MockUpstream::start(move |_, _| broken.clone()).await;
    let good = match good {
        Some(chunks) => Some(MockUpstream::start(move |_, _| Reply::Chunks(chunks.clone())).await),
        None => None,
    };
    let mut providers = vec![("broken", "openai", mock.url(), 1)];
    if let Some(good) = &good {
        providers.push(("good", "openai", good.url(), 2));
    }
    let providers: Vec<(&str, &str, &str, i64)> = providers
        .iter()
        .map(|(n, f, u, p)| (*n, *f, u.as_str(), *p))
        .collect();
    let app = TestApp::spawn(&providers_toml(&providers)).await;
    let r = stream_request(&app).await;
    (r, app, mock, good)
}

/// The ways an OpenAI-format stream can break before its first event.
fn broken_openings() -> Vec<(&'static str, Reply, &'static str)> {
    let data = |text: &str| vec![(Duration::ZERO, text.to_string())];
    vec![
        (
            "not JSON",
            Reply::Chunks(data("data: {not json\n\n")),
            "invalid_response",
        ),
        (
            "no choices before any content",
            Reply::Chunks(data(&format!(
                "data: {}\n\n",
                json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0}})
            ))),
            "invalid_response",
        ),
        (
            "[DONE] before any choice",
            Reply::Chunks(data("data: [DONE]\n\n")),
            "invalid_response",
        ),
        (
            "an error chunk",
            Reply::Chunks(data(&format!(
                "data: {}\n\n",
                json!({"error": {"message": "model crashed"}})
            ))),
            "upstream_error",
        ),
        (
            "ended without any data",
            Reply::Chunks(vec![]),
            "incomplete_response",
        ),
        (
            "reset before any data",
            Reply::ChunksThenReset(vec![]),
            "connect",
        ),
    ]
}

#[tokio::test]
async fn a_stream_broken_before_its_first_event_fails_over() {
    let good = openai_sse(&[chunk(json!({"content": "from good"}), Some("stop"))]);
    for (case, reply, _) in broken_openings() {
        let (r, app, _broken, _good) = stream_with_fallback(reply, Some(good.clone())).await;
        assert_eq!(r.status(), 200, "{case}");
        let events = sse_events(&r.text().await.unwrap());
        let text: Vec<&str> = events
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, ["from good"], "{case}");
        assert_eq!(names(&events).last(), Some(&"message_stop"), "{case}");
        let state = app.stop().await;
        let log = &state.store.recent_logs(1).await.unwrap()[0];
        assert_eq!(
            (log.provider.as_deref(), log.error_kind.as_deref()),
            (Some("good"), None),
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_stream_broken_before_its_first_event_is_a_json_error_on_the_last_provider() {
    for (case, reply, kind) in broken_openings() {
        let (r, app, _broken, _) = stream_with_fallback(reply, None).await;
        assert_eq!(r.status(), 502, "{case}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{case}"
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "api_error", "{case}");
        let state = app.stop().await;
        let log = &state.store.recent_logs(1).await.unwrap()[0];
        assert_eq!(
            (log.status, log.error_kind.as_deref()),
            (502, Some(kind)),
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_stream_broken_after_its_first_event_ends_with_an_error_event() {
    let started = (
        Duration::ZERO,
        format!("data: {}\n\n", chunk(json!({"content": "partial"}), None)),
    );
    // Later chunks come apart in time, so the opening is the first one only.
    let later = |text: String| (Duration::from_millis(20), text);
    let cases = vec![
        (
            "not JSON",
            Reply::Chunks(vec![started.clone(), later("data: {not json\n\n".into())]),
            "invalid_response",
        ),
        (
            "an error chunk",
            Reply::Chunks(vec![
                started.clone(),
                later(format!(
                    "data: {}\n\n",
                    json!({"error": {"message": "overloaded"}})
                )),
            ]),
            "upstream_error",
        ),
        (
            "no finish_reason and no [DONE]",
            Reply::Chunks(vec![started.clone()]),
            "incomplete_response",
        ),
        (
            "reset",
            Reply::ChunksThenReset(vec![
                started.clone(),
                later(format!(
                    "data: {}\n\n",
                    chunk(json!({"content": "more"}), None)
                )),
            ]),
            "stream_interrupted",
        ),
    ];
    for (case, reply, kind) in cases {
        let (r, app, _broken, _) = stream_with_fallback(reply, None).await;
        assert_eq!(r.status(), 200, "{case}");
        let events = sse_events(&r.text().await.unwrap());
        let n = names(&events);
        assert_eq!(n.first(), Some(&"message_start"), "{case}");
        assert_eq!(n.last(), Some(&"error"), "{case}: {n:?}");
        assert!(
            !n.contains(&"message_stop"),
            "{case}: never a complete answer"
        );
        assert!(!n.contains(&"message_delta"), "{case}");
        let state = app.stop().await;
        let log = &state.store.recent_logs(1).await.unwrap()[0];
        assert_eq!(log.error_kind.as_deref(), Some(kind), "{case}");
    }
}

#[tokio::test]
async fn azure_filter_results_and_done_without_finish_reason_are_normal() {
    let chunks = vec![
        (
            Duration::ZERO,
            format!(
                "data: {}\n\n",
                json!({"id": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]})
            ),
        ),
        (
            Duration::ZERO,
            format!(
                "data: {}\n\n",
                chunk(json!({"content": "filtered ok"}), None)
            ),
        ),
        (Duration::ZERO, "data: [DONE]\n\n".to_string()),
    ];
    let (_mock, events) = stream_through(chunks).await;
    let n = names(&events);
    assert_eq!(n.last(), Some(&"message_stop"), "{n:?}");
    assert!(
        events
            .iter()
            .any(|(_, d)| d["delta"]["text"] == "filtered ok")
    );
}
