//! `/v1` request rules and conversion through the real server: Anthropic's
//! validation (400 naming the field), reasoning and structured output on
//! OpenAI-format providers, and the local token estimate's cost.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{MockUpstream, Reply, TestApp, openai_text, providers_toml};

async fn openai_app() -> (MockUpstream, TestApp) {
    let mock = MockUpstream::start(|_, _| Reply::Json(200, openai_text("hi there"))).await;
    let app = TestApp::spawn(&providers_toml(&[("p", "openai", &mock.url(), 1)])).await;
    (mock, app)
}

/// A 1 MB word used to take minutes (BPE merging is quadratic in a
/// piece's length); it is now linear, under a second even in a debug build.
#[tokio::test]
async fn count_tokens_of_a_megabyte_word_answers_within_a_second() {
    let (mock, app) = openai_app().await;
    let word: String = (0..1_000_000u32)
        .map(|i| char::from(b'a' + u8::try_from(i * 7 % 26).unwrap_or(0)))
        .collect();
    let body = json!({"model": "sonnet", "messages": [{"role": "user", "content": word}]});
    // Warm the tokenizer (built once per process) outside the measurement.
    let warm = app
        .post("/v1/messages/count_tokens")
        .json(&json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        app.post("/v1/messages/count_tokens").json(&body).send(),
    )
    .await
    .expect("count_tokens answered within 10 s")
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(r.status(), 200);
    let tokens = r.json::<serde_json::Value>().await.unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    assert!(tokens > 1_000_000 / 32, "{tokens}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert!(mock.received().is_empty());
}
