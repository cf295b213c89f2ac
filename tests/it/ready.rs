//! `/ready`: status for anyone, detail only with a credential.

use serde_json::json;

use crate::harness::openai_app_with;

#[tokio::test]
async fn anonymous_callers_get_the_status_only() {
    for detail in [false, true] {
        let (_mock, app) = openai_app_with(|s| s.server.ready_detail = detail).await;
        for key in [None, Some("sk-ab-wrong")] {
            let mut request = app.client.get(app.url("/ready"));
            if let Some(key) = key {
                request = request.header("x-api-key", key);
            }
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(
                body,
                json!({"status": "ready"}),
                "detail={detail} key={key:?}"
            );
        }
        if !detail {
            let (status, body) = app.get_json("/ready").await;
            assert_eq!(
                (status, body),
                (200, json!({"status": "ready"})),
                "a valid key sees no detail while ABRIDGE_READY_DETAIL is off"
            );
        }
    }
}

#[tokio::test]
async fn a_client_key_sees_providers_and_log_counters_but_no_secrets() {
    let (mock, app) = openai_app_with(|s| s.server.ready_detail = true).await;
    let (status, ready) = app.get_json("/ready").await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["providers"][0]["name"], "p");
    assert_eq!(ready["providers"][0]["breaker"], "closed");
    assert_eq!(ready["providers"][0]["keys"]["total"], 1);
    for counter in ["written", "queued", "dropped", "failed", "retried"] {
        assert_eq!(ready["request_logs"][counter], 0, "{counter}: {ready}");
    }
    let text = ready.to_string();
    assert!(!text.contains("p-key"), "never a provider key");
    assert!(!text.contains(&app.key), "never the caller's key");
    assert!(!text.contains(&mock.addr.to_string()), "never a URL");
}
