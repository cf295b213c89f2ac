//! What the client gets when upstreams fail: every request reaches an
//! upstream while one can answer, the upstream's own error comes back (its
//! status, type, message and rate-limit headers), and the gateway's own
//! limits answer with its own errors.

use std::time::Duration;

use serde_json::json;

use crate::harness::{MockUpstream, Reply, TestApp, hello, openai_text, providers_toml};

/// An OpenAI-format error answer with extra headers.
fn openai_error(status: u16, message: &str, headers: Vec<(&'static str, String)>) -> Reply {
    let mut headers = headers;
    headers.push(("content-type", "application/json".into()));
    Reply::Raw(
        status,
        headers,
        json!({"error": {"message": message, "type": "whatever"}}).to_string(),
    )
}

#[tokio::test]
async fn one_key_answering_401_then_429_then_200_is_reached_every_time() {
    let mock = MockUpstream::start(|_, n| match n {
        0 => openai_error(401, "Incorrect API key provided", vec![]),
        1 => openai_error(
            429,
            "slow down",
            vec![
                ("retry-after", "7".into()),
                ("anthropic-ratelimit-requests-remaining", "0".into()),
            ],
        ),
        _ => Reply::Json(200, openai_text("fine now")),
    })
    .await;
    let app = TestApp::spawn(&providers_toml(&[("p", "openai", &mock.url(), 1)])).await;

    let r = app.send(&hello("opus")).await;
    assert_eq!(
        r.status(),
        502,
        "never a 401: that would log Claude Code out"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("provider p") && message.contains("Incorrect API key provided"),
        "{message}"
    );

    let r = app.send(&hello("opus")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(r.headers()["anthropic-ratelimit-requests-remaining"], "0");
    assert_eq!(r.headers()["x-abridge-error-source"], "upstream");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (
            body["error"]["type"].as_str(),
            body["error"]["message"].as_str()
        ),
        (Some("rate_limit_error"), Some("slow down"))
    );

    let (status, body) = app.messages(hello("opus")).await;
    assert_eq!(
        (status, body["content"][0]["text"].as_str()),
        (200, Some("fine now")),
        "the key still cools down, but it is the only one: the request goes anyway"
    );
    assert_eq!(
        mock.received().len(),
        3,
        "every request reached the upstream"
    );
    let state = app.stop().await;
    let kinds: Vec<Option<String>> = state
        .store
        .recent_logs(3)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.error_kind.map(|k| k.into_owned()))
        .collect();
    assert!(
        kinds.contains(&Some("credentials_refused".into())),
        "{kinds:?}"
    );
    assert!(kinds.contains(&Some("upstream_error".into())), "{kinds:?}");
}

#[tokio::test]
async fn passthrough_credentials_refused_is_502_and_other_errors_pass_unchanged() {
    let refused =
        r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
    let limited = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit"}}"#;
    let mock = MockUpstream::start(move |_, n| {
        let json = ("content-type", "application/json".to_string());
        match n {
            0 => Reply::Raw(401, vec![json], refused.into()),
            _ => Reply::Raw(429, vec![json, ("retry-after", "9".into())], limited.into()),
        }
    })
    .await;
    let app = TestApp::spawn(&providers_toml(&[("a", "anthropic", &mock.url(), 1)])).await;
    let (status, body) = app.messages(hello("opus")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["type"], "api_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("provider a") && message.contains("invalid x-api-key"));

    let r = app.send(&hello("opus")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "9");
    assert_eq!(r.text().await.unwrap(), limited, "byte for byte");
}

#[tokio::test]
async fn an_open_breaker_does_not_keep_the_only_provider_from_answering() {
    let mock = MockUpstream::start(|_, n| {
        if n < 2 {
            openai_error(500, "internal trouble", vec![])
        } else {
            Reply::Json(200, openai_text("recovered"))
        }
    })
    .await;
    let providers = providers_toml(&[("p", "openai", &mock.url(), 1)])
        .replace("max_retries = 1", "max_retries = 0");
    let app = TestApp::spawn_with(&providers, |s| {
        s.routing.failure_threshold = 1;
        s.routing.recovery_timeout = Duration::from_secs(600);
    })
    .await;
    for _ in 0..2 {
        let (status, body) = app.messages(hello("opus")).await;
        assert_eq!(status, 500, "the upstream's own status: {body}");
        assert_eq!(body["error"]["type"], "api_error");
        assert_eq!(body["error"]["message"], "internal trouble");
    }
    let (status, _) = app.messages(hello("opus")).await;
    assert_eq!(status, 200, "sent although the breaker was open");
    assert_eq!(mock.received().len(), 3);
    assert_eq!(
        app.ready_provider("p").await["breaker"],
        "closed",
        "its success closed it"
    );
}

#[tokio::test]
async fn waiting_for_a_connection_is_bounded_and_answered_with_our_own_529() {
    let mock = MockUpstream::start(|_, n| {
        if n == 0 {
            Reply::Hang
        } else {
            Reply::Json(200, openai_text("ok"))
        }
    })
    .await;
    let app = TestApp::spawn_with(&providers_toml(&[("p", "openai", &mock.url(), 1)]), |s| {
        s.http.max_connections = 1;
        s.http.connection_wait = Duration::from_millis(200);
    })
    .await;
    let holder = tokio::spawn(app.post("/v1/messages").json(&hello("opus")).send());
    tokio::time::timeout(Duration::from_secs(5), mock.wait_received())
        .await
        .expect("the first request reaches the mock");
    let started = std::time::Instant::now();
    let r = app.send(&hello("opus")).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the wait is bounded"
    );
    assert_eq!(r.status(), 529);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["x-abridge-error-source"], "gateway");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert_eq!(mock.received().len(), 1);
    assert_eq!(
        app.state.router.snapshot()[0].breaker.state(),
        abridge::upstream::breaker::BreakerState::Closed,
        "our own limit counts against no provider"
    );
    holder.abort();
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let answer = app.messages(hello("opus")).await;
            if answer.0 != 529 {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the connection is released with the client");
    assert_eq!(status, 200);
    let state = app.stop().await;
    let logs = state.store.recent_logs(5).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.status == 529 && l.error_kind.as_deref() == Some("busy")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn redirects_are_upstream_errors_and_never_followed() {
    let target = MockUpstream::start(|_, _| Reply::Json(200, openai_text("elsewhere"))).await;
    let location = format!("{}/v1/chat/completions", target.url());
    let mock = MockUpstream::start(move |_, _| {
        Reply::Raw(307, vec![("location", location.clone())], String::new())
    })
    .await;
    let app = TestApp::spawn(&providers_toml(&[("p", "openai", &mock.url(), 1)])).await;
    let (status, body) = app.messages(hello("opus")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("redirect")
    );
    assert!(
        target.received().is_empty(),
        "the redirect was not followed"
    );
    assert_eq!(mock.received().len(), 1, "a redirect is not retried");
}

#[tokio::test]
async fn oversized_answers_end_as_errors() {
    let big = "x".repeat(5000);
    let chunk = |text: &str| json!({"id": "c", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    // Apart in time, so the first read (the stream's opening) is small.
    let chunks: Vec<(Duration, String)> = (0..10)
        .map(|_| {
            let data = format!("data: {}\n\n", chunk(&"y".repeat(500)));
            (Duration::from_millis(20), data)
        })
        .collect();
    let mock = MockUpstream::start(move |req, _| {
        if req.body["stream"] == true {
            Reply::Chunks(chunks.clone())
        } else {
            Reply::Json(200, openai_text(&big))
        }
    })
    .await;
    let app = TestApp::spawn_with(&providers_toml(&[("p", "openai", &mock.url(), 1)]), |s| {
        s.http.max_response_bytes = 2048;
        s.http.max_stream_bytes = 2048;
    })
    .await;
    let (status, body) = app.messages(hello("opus")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("2048"));
    let r = app
        .post("/v1/messages")
        .json(&json!({"model": "opus", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the stream had started");
    let events = crate::harness::sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().0, "error");
    assert!(!events.iter().any(|(name, _)| name == "message_stop"));
    let state = app.stop().await;
    let kinds: Vec<_> = state
        .store
        .recent_logs(2)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.error_kind.map(|k| k.into_owned()))
        .collect();
    assert_eq!(
        kinds,
        [
            Some("response_too_large".to_string()),
            Some("response_too_large".to_string())
        ]
    );
}

#[tokio::test]
async fn client_model_strings_are_capped_and_exact_names_need_listed_models() {
    let mock = MockUpstream::start(|_, _| Reply::Json(200, openai_text("ok"))).await;
    let app = TestApp::spawn(&providers_toml(&[("p", "openai", &mock.url(), 1)])).await;
    let long = "m".repeat(100_000);
    let (status, body) = app.messages(hello(&long)).await;
    assert_eq!(status, 404);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() < 400, "{} bytes", message.len());
    let (status, _) = app.messages(hello("p/not-listed")).await;
    assert_eq!(status, 404, "provider/model reaches only listed models");
    let (status, _) = app.messages(hello("p/p-big")).await;
    assert_eq!(status, 200);
    assert_eq!(mock.received().len(), 1);
    let state = app.stop().await;
    let logs = state.store.recent_logs(3).await.unwrap();
    assert!(logs.iter().all(|l| l.alias.len() <= 256));
}

#[tokio::test]
async fn the_originals_provider_json_routing_keys_are_honoured() {
    let mock = MockUpstream::start(|_, _| openai_error(503, "down", vec![])).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("provider.json");
    let json = json!({
        "providers": [{"name": "p", "api_format": "openai", "base_url": format!("{}/v1", mock.url()),
                       "api_key": "k", "timeout": 3, "max_retries": 0, "models": {"big": ["p-big"]}}],
        "fallback_strategy": "priority",
        "circuit_breaker": {"failure_threshold": 1, "recovery_timeout": 600, "enabled": true},
        "cache": {"enabled": true}
    });
    std::fs::write(&file, json.to_string()).unwrap();
    let app = TestApp::spawn_with("", |s| s.server.providers_file = Some(file)).await;
    let settings = app.state.router.snapshot().settings().clone();
    assert_eq!(settings.failure_threshold, 1);
    assert_eq!(settings.recovery_timeout, Duration::from_secs(600));
    let (status, _) = app.messages(hello("opus")).await;
    assert_eq!(status, 503);
    assert_eq!(
        app.state.router.snapshot()[0].breaker.state(),
        abridge::upstream::breaker::BreakerState::Open,
        "one failed request opens it, as the file says"
    );
}
