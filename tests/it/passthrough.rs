//! Anthropic-native providers: requests and answers pass through unchanged.

use serde_json::json;

use crate::harness::{MockUpstream, Reply, TestApp, providers_toml};

fn anthropic_answer() -> String {
    r#"{"id":"msg_up","type":"message","role":"assistant","model":"a-mid","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":2,"cache_read_input_tokens":5}}"#.to_string()
}

#[tokio::test]
async fn body_goes_up_unchanged_except_model_and_answer_comes_back_unchanged() {
    let mock = MockUpstream::start(|req, _| {
        if req.path.ends_with("/count_tokens") {
            Reply::Json(200, json!({"input_tokens": 1234}))
        } else {
            Reply::Raw(
                200,
                vec![
                    ("content-type", "application/json".into()),
                    ("request-id", "req_123".into()),
                ],
                anthropic_answer(),
            )
        }
    })
    .await;
    let app = TestApp::spawn(&providers_toml(&[("a", "anthropic", &mock.url(), 1)])).await;
    let request = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 100,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
                     {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig-abc"}, {"type": "text", "text": "yo"}]},
                     {"role": "user", "content": "again"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        "container": "c-1", "mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "m"}],
        "metadata": {"user_id": "u"}, "future_field": [1, 2, 3]
    });
    let r = app
        .post("/v1/messages?beta=true")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["request-id"], "req_123");
    assert_eq!(
        r.text().await.unwrap(),
        anthropic_answer(),
        "answer bytes unchanged"
    );

    let sent = &mock.received()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(
        sent.headers["x-api-key"], "a-key",
        "the provider's key replaces the client's"
    );
    assert_eq!(
        sent.headers["anthropic-beta"],
        "interleaved-thinking-2025-05-14"
    );
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    let mut expected = request.clone();
    expected["model"] = json!("a-mid");
    assert_eq!(sent.body, expected, "everything but the model is passed on");

    let r = app
        .post("/v1/messages/count_tokens")
        .json(&json!({"model": "sonnet", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("x-abridge-token-count").is_none(),
        "exact count, not an estimate"
    );
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["input_tokens"],
        1234
    );
    assert_eq!(mock.received()[1].path, "/v1/messages/count_tokens");

    let state = app.stop().await;
    // Newest first: the count_tokens row, then the message's.
    let logs = state.store.recent_logs(2).await.unwrap();
    assert_eq!(logs[0].endpoint, abridge::store::Endpoint::CountTokens);
    assert_eq!(
        (
            logs[1].input_tokens,
            logs[1].output_tokens,
            logs[1].cache_read_tokens
        ),
        (7, 2, 5)
    );
}

#[tokio::test]
async fn upstream_errors_keep_status_body_and_headers() {
    let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_9"}"#;
    let mock = MockUpstream::start(move |_, _| {
        Reply::Raw(
            529,
            vec![
                ("content-type", "application/json".into()),
                ("retry-after", "0".into()),
                ("anthropic-ratelimit-requests-remaining", "0".into()),
            ],
            body.to_string(),
        )
    })
    .await;
    let app = TestApp::spawn(&providers_toml(&[("a", "anthropic", &mock.url(), 1)])).await;
    let r = app
        .post("/v1/messages")
        .json(&crate::harness::hello("opus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 529);
    assert_eq!(r.headers()["retry-after"], "0");
    assert_eq!(r.headers()["anthropic-ratelimit-requests-remaining"], "0");
    assert_eq!(r.text().await.unwrap(), body);

    let r = app.post("/v1/messages").json(&json!({"model": "opus", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})).send().await.unwrap();
    assert_eq!(r.status(), 529);
}

#[tokio::test]
async fn streams_pass_through_byte_for_byte() {
    let sse = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"a-big\",\"usage\":{\"input_tokens\":4,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );
    let chunks: Vec<_> = sse
        .as_bytes()
        .chunks(37)
        .map(|c| {
            (
                std::time::Duration::ZERO,
                String::from_utf8_lossy(c).into_owned(),
            )
        })
        .collect();
    let mock = MockUpstream::start(move |_, _| Reply::Chunks(chunks.clone())).await;
    let app = TestApp::spawn(&providers_toml(&[("a", "anthropic", &mock.url(), 1)])).await;
    let r = app.post("/v1/messages").json(&json!({"model": "opus", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), sse);
    let state = app.stop().await;
    let logs = state.store.recent_logs(1).await.unwrap();
    assert_eq!(
        (logs[0].input_tokens, logs[0].output_tokens, logs[0].stream),
        (4, 3, true)
    );
}

#[tokio::test]
async fn signed_thinking_goes_only_back_to_the_family_that_signed_it() {
    let a_answer = r#"{"id":"msg_a","type":"message","role":"assistant","model":"a-big","content":[{"type":"thinking","thinking":"hmm","signature":"sig-from-a"},{"type":"text","text":"4"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}"#;
    let a = MockUpstream::start(move |_, n| {
        if n == 0 {
            Reply::Raw(
                200,
                vec![("content-type", "application/json".into())],
                a_answer.to_string(),
            )
        } else {
            Reply::Json(
                500,
                json!({"type": "error", "error": {"type": "api_error", "message": "down"}}),
            )
        }
    })
    .await;
    let b = MockUpstream::start(|_, _| {
        Reply::Raw(
            200,
            vec![("content-type", "application/json".into())],
            anthropic_answer(),
        )
    })
    .await;
    let app = TestApp::spawn(&providers_toml(&[
        ("a", "anthropic", &a.url(), 1),
        ("b", "anthropic", &b.url(), 2),
    ]))
    .await;
    let first = app.post("/v1/messages").json(&json!({"model": "opus", "max_tokens": 50, "messages": [{"role": "user", "content": "2+2?"}]})).send().await.unwrap();
    let first: serde_json::Value = first.json().await.unwrap();
    assert_eq!(first["content"][0]["signature"], "sig-from-a");

    let follow_up = json!({"model": "opus", "max_tokens": 50, "messages": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "and 3+3?"}
    ]});
    let r = app
        .post("/v1/messages")
        .json(&follow_up)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "b serves after a fails");
    let to_a = &a.received()[1].body;
    assert_eq!(
        to_a["messages"][1]["content"][0]["signature"], "sig-from-a",
        "a gets its own signature back"
    );
    let to_b = &b.received()[0].body;
    let blocks = to_b["messages"][1]["content"].as_array().unwrap();
    assert_eq!(
        blocks.len(),
        1,
        "b never sees a's signed thinking: {blocks:?}"
    );
    assert_eq!(blocks[0]["type"], "text");
}

#[tokio::test]
async fn a_stalled_or_cut_off_passthrough_stream_ends_with_an_error_event() {
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"a-big\",\"usage\":{\"input_tokens\":4,\"output_tokens\":1}}}\n\n";
    let stalled = vec![
        (std::time::Duration::ZERO, start.to_string()),
        (std::time::Duration::from_secs(10), "never".to_string()),
    ];
    let cut_off = vec![(std::time::Duration::ZERO, start.to_string())];
    for (chunks, kind) in [(stalled, "timeout"), (cut_off, "incomplete_response")] {
        let mock = MockUpstream::start(move |_, _| Reply::Chunks(chunks.clone())).await;
        let providers = providers_toml(&[("a", "anthropic", &mock.url(), 1)])
            .replace("timeout = \"3s\"", "timeout = \"400ms\"");
        let app = TestApp::spawn(&providers).await;
        let r = app.post("/v1/messages").json(&json!({"model": "opus", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]})).send().await.unwrap();
        let text = r.text().await.unwrap();
        assert!(
            text.starts_with(start),
            "{kind}: what arrived is passed on unchanged"
        );
        let events = crate::harness::sse_events(&text);
        assert_eq!(events.last().unwrap().0, "error", "{kind}");
        let state = app.stop().await;
        assert_eq!(
            state.store.recent_logs(1).await.unwrap()[0]
                .error_kind
                .as_deref(),
            Some(kind)
        );
    }
}

#[tokio::test]
async fn a_passthrough_stream_opening_with_an_error_event_fails_over() {
    let overloaded = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let failing = MockUpstream::start(move |_, _| {
        Reply::Chunks(vec![(std::time::Duration::ZERO, overloaded.to_string())])
    })
    .await;
    let answer = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":4,\"output_tokens\":1}}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let good = MockUpstream::start(move |_, _| {
        Reply::Chunks(vec![(std::time::Duration::ZERO, answer.to_string())])
    })
    .await;
    let app = TestApp::spawn(&providers_toml(&[
        ("a", "anthropic", &failing.url(), 1),
        ("b", "anthropic", &good.url(), 2),
    ]))
    .await;
    let r = app.post("/v1/messages").json(&json!({"model": "opus", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().ends_with("message_stop\"}\n\n"));
    assert_eq!(good.received().len(), 1, "the failed opening moved on to b");
    let state = app.stop().await;
    assert_eq!(
        state.store.recent_logs(1).await.unwrap()[0]
            .provider
            .as_deref(),
        Some("b")
    );
}
