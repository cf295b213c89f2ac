//! `/v1` over HTTP: authentication, validation, conversion, models, tokens, logs.

use serde_json::json;

use crate::harness::{
    MockUpstream, Reply, TestApp, hello, openai_app, openai_text, providers_toml,
};

#[tokio::test]
async fn missing_wrong_and_revoked_keys_are_401_in_anthropic_shape() {
    let (_mock, app) = openai_app().await;
    let r = app
        .client
        .post(app.url("/v1/messages"))
        .json(&hello("sonnet"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");

    let r = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", "sk-ab-wrong")
        .json(&hello("sonnet"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = app
        .client
        .post(app.url("/v1/messages"))
        .bearer_auth(&app.key)
        .json(&hello("sonnet"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "Bearer is accepted too");

    let created = app
        .state
        .store
        .create_api_key("doomed", None, None)
        .await
        .unwrap();
    app.state
        .store
        .revoke_api_key(&created.record.id.to_string())
        .await
        .unwrap();
    let r = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", &created.key)
        .json(&hello("sonnet"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field() {
    let (mock, app) = openai_app().await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "body"),
        (b"[1,2]".to_vec(), "body"),
        (vec![0xff, 0xfe, b'{'], "body"),
        (json!({"model": "sonnet", "messages": [{"role": "user", "content": "x"}]}).to_string().into_bytes(), "max_tokens"),
        (json!({"model": "sonnet", "max_tokens": "abc", "messages": [{"role": "user", "content": "x"}]}).to_string().into_bytes(), "max_tokens"),
        (json!({"model": "sonnet", "max_tokens": 5, "messages": "hi"}).to_string().into_bytes(), "messages"),
        (json!({"model": "sonnet", "max_tokens": 5, "messages": []}).to_string().into_bytes(), "messages"),
        (json!({"model": "sonnet", "max_tokens": 5, "messages": [{"role": "bot", "content": "x"}]}).to_string().into_bytes(), "role"),
        (json!({"model": "sonnet", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]}).to_string().into_bytes(), "content"),
        (format!("{}1{}", "[".repeat(300), "]".repeat(300)).into_bytes(), "body"),
    ];
    for (body, field) in cases {
        let r = app
            .post("/v1/messages")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message} should name {field}");
    }
    assert!(mock.received().is_empty(), "nothing invalid is forwarded");
}

#[tokio::test]
async fn unknown_model_is_404_and_unknown_path_too() {
    let (_mock, app) = openai_app().await;
    let (status, body) = app.messages(hello("gpt-nonexistent")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-nonexistent")
    );
    let r = app.client.get(app.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let mock = MockUpstream::start(|_, _| Reply::Json(200, openai_text("x"))).await;
    let app = TestApp::spawn_with(&providers_toml(&[("p", "openai", &mock.url(), 1)]), |s| {
        s.server.max_body_bytes = 4096
    })
    .await;
    let big = "x".repeat(10_000);
    let r = app.post("/v1/messages").json(&json!({"model": "sonnet", "max_tokens": 5, "messages": [{"role": "user", "content": big}]})).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "request_too_large");
}

#[tokio::test]
async fn request_is_converted_and_answer_converted_back() {
    let mock = MockUpstream::start(|_, _| {
        Reply::Json(200, json!({
            "id": "chatcmpl-9", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me look.",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 40}}
        }))
    })
    .await;
    let providers = providers_toml(&[("p", "openai", &mock.url(), 1)]).replace(
        "timeout = \"3s\"",
        "timeout = \"3s\"\nmax_tokens_limit = 1000",
    );
    let app = TestApp::spawn(&providers).await;
    let request = json!({
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 64000, "stream": false,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Rome"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "boom", "is_error": true}]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["END"], "temperature": 0.2, "top_p": 0.9, "top_k": 5,
        "metadata": {"user_id": "u-1"}, "some_future_field": {"x": 1}
    });
    let r = app
        .post("/v1/messages?beta=true")
        .header("anthropic-beta", "tools-2024")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();

    let sent = &mock.received()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.headers["authorization"], "Bearer p-key");
    let up = &sent.body;
    assert_eq!(up["model"], "p-mid");
    assert_eq!(up["max_tokens"], 1000, "clamped to max_tokens_limit");
    assert_eq!(up["messages"][0]["role"], "system");
    assert!(
        up["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Be kind.")
    );
    let user = &up["messages"][1]["content"];
    assert_eq!(user[0]["text"], "Weather?");
    assert_eq!(
        user[1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
    assert_eq!(
        up["messages"][2]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(up["messages"][3]["role"], "tool");
    assert_eq!(up["messages"][3]["tool_call_id"], "toolu_01");
    assert!(
        up["messages"][3]["content"]
            .as_str()
            .unwrap()
            .starts_with("Error: ")
    );
    assert_eq!(up["tools"][0]["type"], "function");
    assert_eq!(
        up["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(up["tool_choice"], "required");
    assert_eq!(up["parallel_tool_calls"], false);
    assert_eq!(up["stop"], json!(["END"]));
    assert_eq!(up["temperature"], 0.2);
    assert_eq!(up["top_p"], 0.9);
    assert!(up.get("top_k").is_none());
    assert_eq!(up["user"], "u-1");

    assert_eq!(body["type"], "message");
    assert_eq!(
        body["model"], "claude-sonnet-4-5-20250929",
        "the alias is echoed"
    );
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["content"][0]["text"], "Let me look.");
    assert_eq!(body["content"][1]["type"], "tool_use");
    assert!(
        body["content"][1]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_")
    );
    assert_eq!(body["content"][1]["input"]["city"], "Paris");
    assert_eq!(body["usage"]["input_tokens"], 60);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 40);
    assert_eq!(body["usage"]["output_tokens"], 20);
}

#[tokio::test]
async fn count_tokens_is_estimated_locally_with_a_tokenizer() {
    let (mock, app) = openai_app().await;
    let base = json!({"model": "sonnet", "messages": [{"role": "user", "content": "Hello, how are you today?"}]});
    let r = app
        .post("/v1/messages/count_tokens")
        .json(&base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-abridge-token-count"], "estimate");
    let plain = r.json::<serde_json::Value>().await.unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    assert!(plain > 5 && plain < 40, "{plain}");
    let mut with_extras = base.clone();
    with_extras["system"] = json!("You are a very helpful assistant with many rules.");
    with_extras["tools"] = json!([{"name": "lookup", "description": "Look things up", "input_schema": {"type": "object"}}]);
    let more = app
        .post("/v1/messages/count_tokens")
        .json(&with_extras)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    assert!(more > plain + 10, "{more} vs {plain}");
    assert!(mock.received().is_empty(), "never a paid completion");
}

#[tokio::test]
async fn every_request_is_logged_by_shutdown() {
    let (_mock, app) = openai_app().await;
    for _ in 0..20 {
        assert_eq!(app.messages(hello("haiku")).await.0, 200);
    }
    assert_eq!(app.messages(hello("nope")).await.0, 404);
    let state = app.stop().await;
    assert_eq!(state.store.count_logs().await.unwrap(), 21);
    let logs = state.store.recent_logs(21).await.unwrap();
    assert_eq!(logs[0].status, 404);
    assert_eq!(logs[0].error_kind.as_deref(), Some("no_route"));
    let ok = &logs[1];
    assert_eq!(
        (
            ok.status,
            ok.provider.as_deref(),
            ok.upstream_model.as_deref(),
            ok.alias.as_str()
        ),
        (200, Some("p"), Some("p-small"), "haiku")
    );
    assert_eq!((ok.input_tokens, ok.output_tokens), (11, 3));
}

#[tokio::test]
async fn providers_file_changes_apply_without_a_restart() {
    let first = MockUpstream::start(|_, _| Reply::Json(200, openai_text("first"))).await;
    let second = MockUpstream::start(|_, _| Reply::Json(200, openai_text("second"))).await;
    let app = TestApp::spawn(&providers_toml(&[("p", "openai", &first.url(), 1)])).await;
    assert_eq!(
        app.messages(hello("sonnet")).await.1["content"][0]["text"],
        "first"
    );
    let file = app.state.settings.server.providers_file.clone().unwrap();
    // A broken file keeps the providers that work.
    std::fs::write(&file, "[[providers]]\nname = ").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        app.messages(hello("sonnet")).await.1["content"][0]["text"],
        "first"
    );
    std::fs::write(&file, providers_toml(&[("q", "openai", &second.url(), 1)])).unwrap();
    let mut answer = String::new();
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        answer = app.messages(hello("sonnet")).await.1["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if answer == "second" {
            break;
        }
    }
    assert_eq!(answer, "second", "the new file is picked up");
    assert_eq!(
        app.messages(hello("p/p-mid")).await.0,
        404,
        "the old provider is gone"
    );
}

#[tokio::test]
async fn claude_code_sized_requests_pass() {
    let (mock, app) = openai_app().await;
    let tools: Vec<serde_json::Value> = (0..25)
        .map(|i| json!({"name": format!("tool_{i}"), "description": "x".repeat(400), "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}))
        .collect();
    let image = "A".repeat(6 * 1024 * 1024);
    let body = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1000, "tools": tools,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}}
        ]}]
    });
    let r = app
        .post("/v1/messages?beta=true")
        .header("anthropic-beta", "claude-code-20250219")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = &mock.received()[0].body;
    assert_eq!(sent["tools"].as_array().unwrap().len(), 25);
    assert!(
        sent["messages"][0]["content"][1]["image_url"]["url"]
            .as_str()
            .unwrap()
            .len()
            > 6 * 1024 * 1024
    );
}
