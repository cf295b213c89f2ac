//! `/v1` request rules and conversion through the real server: Anthropic's
//! validation (400 naming the field), reasoning and structured output on
//! OpenAI-format providers, and the local token estimate's cost.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{MockUpstream, Reply, TestApp, openai_app, openai_text, providers_toml};

/// Time for `count_tokens` of `body` (at most 10 s, or the test fails).
async fn time_count(app: &TestApp, body: &serde_json::Value) -> (Duration, u64) {
    let started = Instant::now();
    let (status, v) = tokio::time::timeout(Duration::from_secs(10), count_tokens(app, body))
        .await
        .expect("count_tokens answered within 10 s");
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{v}");
    (elapsed, v["input_tokens"].as_u64().unwrap_or(0))
}

/// A 1 MB word used to take minutes (BPE merging is quadratic in a
/// piece's length); it now answers within a second. A debug build on a
/// busy machine (this suite runs its tests in parallel) can need more than
/// that for any megabyte, so there the deadline is also measured: four
/// times what a megabyte of ordinary prose takes in the same conditions.
#[tokio::test]
async fn count_tokens_of_a_megabyte_word_answers_within_a_second() {
    let (mock, app) = openai_app().await;
    let body =
        |text: String| json!({"model": "sonnet", "messages": [{"role": "user", "content": text}]});
    let word: String = (0..1_000_000u32)
        .map(|i| char::from(b'a' + u8::try_from(i * 7 % 26).unwrap_or(0)))
        .collect();
    let prose = "The quick brown fox jumps over the lazy dog. ".repeat(22_223);
    // Warm the tokenizer (built once per process) outside the measurement.
    time_count(&app, &body("hi".into())).await;
    let (mut word_time, mut prose_time) = (Duration::MAX, Duration::MAX);
    for _ in 0..2 {
        let (elapsed, tokens) = time_count(&app, &body(prose.clone())).await;
        assert!(tokens > 200_000, "{tokens}");
        prose_time = prose_time.min(elapsed);
        let (elapsed, tokens) = time_count(&app, &body(word.clone())).await;
        assert!(tokens > 1_000_000 / 32, "{tokens}");
        word_time = word_time.min(elapsed);
    }
    let deadline = if cfg!(debug_assertions) {
        Duration::from_secs(1).max(prose_time * 4)
    } else {
        Duration::from_secs(1)
    };
    assert!(
        word_time < deadline,
        "a 1 MB word took {word_time:?}, 1 MB of prose {prose_time:?}"
    );
    assert!(mock.received().is_empty());
}

/// Posts `body` to `/v1/messages/count_tokens`; the status and the JSON.
async fn count_tokens(app: &TestApp, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = app
        .post("/v1/messages/count_tokens")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn anthropic_request_rules_are_400_naming_the_field() {
    let (mock, app) = openai_app().await;
    let call = json!({"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}});
    let cases = [
        (
            json!({"model": "sonnet", "max_tokens": 100, "temperature": 1.5,
                "messages": [{"role": "user", "content": "hi"}]}),
            "temperature: must be between 0 and 1",
        ),
        (
            json!({"model": "sonnet", "max_tokens": 100,
                "tools": [{"name": "read file", "input_schema": {"type": "object"}}],
                "messages": [{"role": "user", "content": "hi"}]}),
            "tools.0.name: must match",
        ),
        (
            json!({"model": "sonnet", "max_tokens": 100, "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [call]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "x"}]}
            ]}),
            "messages.2.content.0.tool_use_id: unexpected `tool_use_id`",
        ),
        (
            json!({"model": "sonnet", "max_tokens": 2000,
                "thinking": {"type": "enabled", "budget_tokens": 2000},
                "messages": [{"role": "user", "content": "hi"}]}),
            "thinking.budget_tokens: must be less than max_tokens (2000)",
        ),
        (
            json!({"model": "sonnet", "max_tokens": 100, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AA"}}
            ]}]}),
            "messages.0.content.0.source.media_type: must be one of",
        ),
    ];
    for (body, expected) in cases {
        let (status, v) = app.messages(body).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(expected), "{message}");
    }
    let unpaired = json!({"model": "sonnet", "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}
    ]});
    let (status, v) = count_tokens(&app, &unpaired).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("messages.0.content.0.tool_use_id"),
        "{v}"
    );
    assert!(mock.received().is_empty(), "nothing invalid is forwarded");
}

/// Claude Code asks for interleaved thinking, whose budget may exceed
/// `max_tokens`: that request is Anthropic's to judge, and reaches the
/// provider; without the beta it is refused.
#[tokio::test]
async fn interleaved_thinking_budget_may_exceed_max_tokens() {
    let mock = MockUpstream::start(|_, _| {
        Reply::Json(
            200,
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "up",
                "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1}}),
        )
    })
    .await;
    let app = TestApp::spawn(&providers_toml(&[("a", "anthropic", &mock.url(), 1)])).await;
    let body = json!({"model": "sonnet", "max_tokens": 32000,
        "thinking": {"type": "enabled", "budget_tokens": 63999},
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, _) = app.messages(body.clone()).await;
    assert_eq!(status, 400);
    let r = app
        .post("/v1/messages")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mock.received().len(), 1);
    assert_eq!(mock.received()[0].body["thinking"]["budget_tokens"], 63999);
}

/// A provider's `reasoning_efforts` says which `reasoning_effort` values
/// it understands; thinking and effort are mapped into them, and a JSON
/// schema output becomes `response_format`.
#[tokio::test]
async fn reasoning_and_structured_output_reach_an_openai_format_provider() {
    let mock = MockUpstream::start(|_, _| Reply::Json(200, openai_text("{\"name\":\"x\"}"))).await;
    let providers = format!(
        "{}reasoning_efforts = [\"minimal\", \"low\", \"medium\", \"high\"]\n\n{}",
        providers_toml(&[("reasoning", "openai", &mock.url(), 1)]),
        providers_toml(&[("plain", "openai", &mock.url(), 2)]),
    );
    let app = TestApp::spawn(&providers).await;
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}},
        "required": ["name"], "additionalProperties": false});
    let ask = |model: &str| {
        json!({"model": model, "max_tokens": 4000,
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "max",
                "format": {"type": "json_schema", "schema": schema}},
            "messages": [{"role": "user", "content": "name?"}]})
    };
    let (status, answer) = app.messages(ask("reasoning/reasoning-mid")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["content"][0]["text"], "{\"name\":\"x\"}");
    let (status, _) = app.messages(ask("plain/plain-mid")).await;
    assert_eq!(status, 200);
    let received = mock.received();
    assert_eq!(received[0].body["reasoning_effort"], "high");
    assert_eq!(
        received[0].body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}})
    );
    assert!(
        received[1].body.get("reasoning_effort").is_none(),
        "no vocabulary, nothing sent"
    );
    assert_eq!(received[1].body["response_format"]["type"], "json_schema");
    // What cannot be mapped is refused, not dropped.
    let mut xml = ask("plain/plain-mid");
    xml["output_config"]["format"] = json!({"type": "xml"});
    let (status, v) = app.messages(xml).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("output_config.format.type"),
        "{v}"
    );
    assert_eq!(mock.received().len(), 2);
}

#[test]
fn an_unknown_reasoning_effort_in_a_providers_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("providers.toml");
    let base = providers_toml(&[("p", "openai", "http://127.0.0.1:9", 1)]);
    std::fs::write(
        &path,
        format!("{base}reasoning_efforts = [\"low\", \"extreme\"]\n"),
    )
    .unwrap();
    let err = abridge::upstream::provider::load_file(&path).unwrap_err();
    assert!(
        err.contains("reasoning_efforts") && err.contains("extreme"),
        "{err}"
    );
    std::fs::write(
        &path,
        format!("{base}reasoning_efforts = [\"none\", \"xhigh\"]\n"),
    )
    .unwrap();
    let file = abridge::upstream::provider::load_file(&path).unwrap();
    assert_eq!(
        file.providers[0].reasoning_efforts,
        [
            abridge::protocol::Effort::None,
            abridge::protocol::Effort::Xhigh
        ]
    );
}
