//! Failover, circuit breakers, key rotation, timeouts and invalid upstream answers.

use std::time::Duration;

use crate::harness::{
    MockUpstream, Reply, TestApp, hello, openai_text, providers_toml, rate_limited,
};

#[tokio::test]
async fn failing_first_provider_fails_over_to_the_second() {
    let bad = MockUpstream::start(|_, _| {
        Reply::Json(500, serde_json::json!({"error": {"message": "boom"}}))
    })
    .await;
    let good = MockUpstream::start(|_, _| Reply::Json(200, openai_text("from good"))).await;
    let app = TestApp::spawn(&providers_toml(&[
        ("bad", "openai", &bad.url(), 1),
        ("good", "openai", &good.url(), 2),
    ]))
    .await;
    let (status, body) = app.messages(hello("sonnet")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"][0]["text"], "from good");
    assert_eq!(
        bad.received().len(),
        2,
        "one attempt and one retry (max_retries = 1)"
    );
    let state = app.stop().await;
    assert_eq!(
        state.store.recent_logs(1).await.unwrap()[0]
            .provider
            .as_deref(),
        Some("good")
    );
}

#[tokio::test]
async fn breaker_opens_then_recovers_through_a_probe() {
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let flaky = MockUpstream::start(move |_, _| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::Json(200, openai_text("flaky is back"))
        } else {
            Reply::Json(503, serde_json::json!({"error": {"message": "down"}}))
        }
    })
    .await;
    let backup = MockUpstream::start(|_, _| Reply::Json(200, openai_text("backup"))).await;
    let providers = providers_toml(&[
        ("flaky", "openai", &flaky.url(), 1),
        ("backup", "openai", &backup.url(), 2),
    ]);
    let app = TestApp::spawn_with(&providers, |s| {
        s.routing.failure_threshold = 2;
        s.routing.recovery_timeout = Duration::from_millis(400);
        s.server.ready_detail = true;
    })
    .await;
    let (status, body) = app.messages(hello("sonnet")).await;
    assert_eq!(
        (status, body["content"][0]["text"].as_str()),
        (200, Some("backup"))
    );
    assert_eq!(flaky.received().len(), 2, "one attempt and one retry");
    assert_eq!(
        breaker_of(&app, "flaky").await,
        "closed",
        "a request counts once, however often it was retried"
    );
    app.messages(hello("sonnet")).await;
    assert_eq!(flaky.received().len(), 4);
    assert_eq!(
        breaker_of(&app, "flaky").await,
        "open",
        "the second failed request opens it (visible on /ready)"
    );
    for _ in 0..3 {
        assert_eq!(
            app.messages(hello("sonnet")).await.1["content"][0]["text"],
            "backup"
        );
    }
    assert_eq!(flaky.received().len(), 4, "an open breaker is skipped");
    let (_, ready) = app.get_json("/ready").await;
    let flaky_ready = ready["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "flaky")
        .unwrap();
    assert_eq!(
        flaky_ready["breaker"], "open",
        "breaker state is visible on /ready"
    );

    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.messages(hello("sonnet")).await.1["content"][0]["text"],
        "flaky is back",
        "the probe succeeds"
    );
    assert_eq!(
        app.messages(hello("sonnet")).await.1["content"][0]["text"],
        "flaky is back",
        "closed again"
    );
}

/// A provider's breaker state as `/ready` shows it.
async fn breaker_of(app: &TestApp, provider: &str) -> String {
    app.ready_provider(provider).await["breaker"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_refused_key_is_quarantined_after_three_requests_and_comes_back() {
    let accepts_bad = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = accepts_bad.clone();
    let mock = MockUpstream::start(move |req, _| {
        let fixed = flag.load(std::sync::atomic::Ordering::SeqCst);
        if req.headers["authorization"] == "Bearer bad-key" && !fixed {
            Reply::Json(
                401,
                serde_json::json!({"error": {"message": "invalid key"}}),
            )
        } else {
            Reply::Json(200, openai_text("ok"))
        }
    })
    .await;
    let providers = providers_toml(&[("p", "openai", &mock.url(), 1)]).replace(
        "api_keys = [\"p-key\"]",
        "api_keys = [\"bad-key\", \"good-key\"]",
    );
    let app = TestApp::spawn_with(&providers, |s| {
        s.routing.key_quarantine = Duration::from_millis(300);
    })
    .await;
    for _ in 0..8 {
        assert_eq!(
            app.messages(hello("opus")).await.0,
            200,
            "a refused key moves the request to the other key"
        );
    }
    assert_eq!(
        mock.received_with_key("bad-key"),
        3,
        "three requests refused on it quarantine it"
    );
    let keys = &app.ready_provider("p").await["keys"];
    assert_eq!(
        (keys["total"].as_u64(), keys["quarantined"].as_u64()),
        (Some(2), Some(1))
    );

    accepts_bad.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..4 {
        assert_eq!(app.messages(hello("opus")).await.0, 200);
    }
    assert!(
        mock.received_with_key("bad-key") >= 5,
        "after its quarantine the key is tried again, and accepted, stays"
    );
    let keys = &app.ready_provider("p").await["keys"];
    assert_eq!(keys["quarantined"].as_u64(), Some(0));
}

#[tokio::test]
async fn a_moderation_403_is_not_a_key_fault_and_is_not_fanned_out() {
    let mock = MockUpstream::start(|_, _| {
        Reply::Json(
            403,
            serde_json::json!({"error": {"message": "Your request was flagged by our moderation system"}}),
        )
    })
    .await;
    let providers = providers_toml(&[("p", "openai", &mock.url(), 1)])
        .replace("api_keys = [\"p-key\"]", "api_keys = [\"k1\", \"k2\"]");
    let app = TestApp::spawn(&providers).await;
    for n in 1..=5 {
        let (status, body) = app.messages(hello("opus")).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("flagged by our moderation"), "{message}");
        assert_eq!(mock.received().len(), n, "one upstream request per request");
    }
    let keys = &app.ready_provider("p").await["keys"];
    assert_eq!(keys["quarantined"].as_u64(), Some(0));
    assert_eq!(breaker_of(&app, "p").await, "closed");
}

#[tokio::test]
async fn rate_limited_key_cools_down_and_the_next_key_serves() {
    let mock = MockUpstream::start(|req, _| {
        if req.headers["authorization"] == "Bearer k1" {
            rate_limited("30")
        } else {
            Reply::Json(200, openai_text("k2 served"))
        }
    })
    .await;
    let providers = providers_toml(&[("p", "openai", &mock.url(), 1)])
        .replace("api_keys = [\"p-key\"]", "api_keys = [\"k1\", \"k2\"]");
    let app = TestApp::spawn(&providers).await;
    for _ in 0..3 {
        assert_eq!(
            app.messages(hello("opus")).await.1["content"][0]["text"],
            "k2 served"
        );
    }
    assert_eq!(
        mock.received_with_key("k1"),
        1,
        "k1 cools down for its Retry-After"
    );
}

#[tokio::test]
async fn a_hanging_upstream_times_out_as_504() {
    let mock = MockUpstream::start(|_, _| Reply::Hang).await;
    let providers = providers_toml(&[("p", "openai", &mock.url(), 1)])
        .replace("timeout = \"3s\"", "timeout = \"300ms\"")
        .replace("max_retries = 1", "max_retries = 0");
    let app = TestApp::spawn(&providers).await;
    let started = std::time::Instant::now();
    let (status, body) = app.messages(hello("opus")).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["type"], "timeout_error");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn invalid_upstream_answers_are_5xx_and_the_server_stays_healthy() {
    let mock = MockUpstream::start(|_, n| match n {
        0 => Reply::Raw(
            200,
            vec![("content-type", "text/html".into())],
            "<html>Bad gateway</html>".into(),
        ),
        1 => Reply::Json(200, serde_json::json!({"id": "x", "choices": []})),
        _ => Reply::Raw(200, vec![], String::new()),
    })
    .await;
    let providers = providers_toml(&[("p", "openai", &mock.url(), 1)]);
    let app = TestApp::spawn(&providers).await;
    for _ in 0..3 {
        let (status, body) = app.messages(hello("opus")).await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["error"]["type"], "api_error");
    }
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let tx = std::sync::Mutex::new(tx);
    let mock = MockUpstream::start(move |_, _| {
        let _ = tx.lock().unwrap().send(());
        Reply::Hang
    })
    .await;
    let app = TestApp::spawn(&providers_toml(&[("p", "openai", &mock.url(), 1)])).await;
    let request = app
        .post("/v1/messages")
        .json(&hello("opus"))
        .timeout(Duration::from_millis(300))
        .send();
    assert!(request.await.is_err(), "the client gives up");
    rx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(
        mock.wait_abandoned().await,
        1,
        "the upstream request was dropped with the client"
    );
    let state = app.stop().await;
    let logs = state.store.recent_logs(1).await.unwrap();
    assert_eq!(
        (logs[0].status, logs[0].error_kind.as_deref()),
        (499, Some("client_closed"))
    );
}

#[tokio::test]
async fn a_rate_limited_provider_fails_over_without_waiting() {
    let limited = MockUpstream::start(|_, _| rate_limited("20")).await;
    let other = MockUpstream::start(|_, _| Reply::Json(200, openai_text("other"))).await;
    let app = TestApp::spawn(&providers_toml(&[
        ("limited", "openai", &limited.url(), 1),
        ("other", "openai", &other.url(), 2),
    ]))
    .await;
    let started = std::time::Instant::now();
    let (status, body) = app.messages(hello("opus")).await;
    assert_eq!(
        (status, body["content"][0]["text"].as_str()),
        (200, Some("other"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no 20 s wait for Retry-After"
    );

    let alone = MockUpstream::start(|_, _| rate_limited("0")).await;
    let app = TestApp::spawn(&providers_toml(&[("alone", "openai", &alone.url(), 1)])).await;
    let (status, body) = app.messages(hello("opus")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(
        alone.received().len(),
        1,
        "the last candidate's 429 goes to the client, whose SDK retries"
    );
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_requests() {
    // A slow answer: the body arrives 400 ms after the request.
    let slow = vec![(
        Duration::from_millis(400),
        openai_text("finished").to_string(),
    )];
    let mock = MockUpstream::start(move |_, _| Reply::Chunks(slow.clone())).await;
    let app = TestApp::spawn(&providers_toml(&[("p", "openai", &mock.url(), 1)])).await;
    let request = app.post("/v1/messages").json(&hello("opus")).send();
    let pending = tokio::spawn(request);
    mock.wait_received().await;
    let state = app.stop().await;
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), 200, "drained, not cut off");
    assert_eq!(state.store.recent_logs(5).await.unwrap().len(), 1);
}

#[tokio::test]
async fn requests_cut_off_at_the_drain_limit_are_still_logged() {
    let mock = MockUpstream::start(|_, _| Reply::Hang).await;
    let app = TestApp::spawn_with(&providers_toml(&[("p", "openai", &mock.url(), 1)]), |s| {
        s.server.shutdown_timeout = Duration::from_millis(300);
    })
    .await;
    let request = app.post("/v1/messages").json(&hello("opus")).send();
    let pending = tokio::spawn(request);
    mock.wait_received().await;
    let started = std::time::Instant::now();
    let state = app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the drain limit holds"
    );
    assert!(
        pending.await.unwrap().is_err(),
        "the cut-off client sees its connection close"
    );
    let logs = state.store.recent_logs(5).await.unwrap();
    assert_eq!(logs.len(), 1, "the cut-off request is in the log");
    assert_eq!(
        (logs[0].status, logs[0].error_kind.as_deref()),
        (499, Some("client_closed"))
    );
}
