//! Request logs: every `/v1` request leaves a row, and a store that refuses
//! writes loses none of them silently.

use std::time::Duration;

use abridge::store::Endpoint;
use serde_json::json;
use tokio::time::Instant;
use tokio_rusqlite::rusqlite;

use crate::harness::{
    MockUpstream, Reply, TestApp, hello, openai_app_with, openai_text, providers_toml,
};

#[tokio::test]
async fn count_tokens_requests_are_logged_like_messages() {
    let native = MockUpstream::start(|_, _| Reply::Json(200, json!({"input_tokens": 42}))).await;
    let openai = MockUpstream::start(|_, _| Reply::Json(200, openai_text("hi"))).await;
    let app = TestApp::spawn(&providers_toml(&[
        ("n", "anthropic", &native.url(), 1),
        ("o", "openai", &openai.url(), 2),
    ]))
    .await;
    let count =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let send = |body: serde_json::Value| {
        let request = app.post("/v1/messages/count_tokens").json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send(count("n/n-big")).await, 200, "forwarded");
    assert_eq!(send(count("o/o-big")).await, 200, "estimated");
    assert_eq!(send(count("nope")).await, 404);
    assert_eq!(send(json!({"messages": []})).await, 400);
    assert_eq!(app.messages(hello("o/o-big")).await.0, 200);
    let state = app.stop().await;
    let logs = state.store.recent_logs(10).await.unwrap();
    assert_eq!(logs.len(), 5, "one row per request: {logs:#?}");
    let endpoints: Vec<Endpoint> = logs.iter().rev().map(|l| l.endpoint).collect();
    assert_eq!(
        endpoints,
        [
            Endpoint::CountTokens,
            Endpoint::CountTokens,
            Endpoint::CountTokens,
            Endpoint::CountTokens,
            Endpoint::Messages
        ]
    );
    let (forwarded, estimated, unknown, invalid) = (&logs[4], &logs[3], &logs[2], &logs[1]);
    assert_eq!(
        (
            forwarded.status,
            forwarded.provider.as_deref(),
            forwarded.alias.as_str()
        ),
        (200, Some("n"), "n/n-big")
    );
    assert!(forwarded.ttfb_ms.is_some());
    assert_eq!(
        (estimated.status, estimated.error_kind.as_deref()),
        (200, None)
    );
    assert_eq!(estimated.input_tokens, 0, "counting is not usage");
    assert_eq!(
        (unknown.status, unknown.error_kind.as_deref()),
        (404, Some("no_route"))
    );
    assert_eq!(
        (invalid.status, invalid.error_kind.as_deref()),
        (400, Some("invalid_request"))
    );
}

/// Opens the test app's database beside the server, to break and mend it.
fn side_door(app: &TestApp) -> rusqlite::Connection {
    let path = app
        .state
        .settings
        .database
        .url
        .strip_prefix("sqlite://")
        .unwrap()
        .to_string();
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// Polls `/ready` until `done` holds for its `request_logs`, at most 10 s.
async fn wait_for_logs(
    app: &TestApp,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, ready) = app.get_json("/ready").await;
        if done(&ready["request_logs"]) {
            return ready["request_logs"].clone();
        }
        assert!(Instant::now() < deadline, "gave up waiting: {ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn refused_log_writes_are_retried_shown_on_ready_and_written_on_recovery() {
    let (_mock, app) = openai_app_with(|s| s.server.ready_detail = true).await;
    let db = side_door(&app);
    db.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON request_logs
         BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(app.messages(hello("sonnet")).await.0, 200);
    }
    let counts = wait_for_logs(&app, |c| c["retried"].as_u64() >= Some(1)).await;
    assert_eq!(
        (counts["written"].as_u64(), counts["failed"].as_u64()),
        (Some(0), Some(0))
    );
    db.execute_batch("DROP TRIGGER refuse").unwrap();
    let counts = wait_for_logs(&app, |c| c["written"] == 3).await;
    assert_eq!(
        (counts["failed"].as_u64(), counts["dropped"].as_u64()),
        (Some(0), Some(0))
    );
    let state = app.stop().await;
    assert_eq!(state.store.count_logs().await.unwrap(), 3);
}
