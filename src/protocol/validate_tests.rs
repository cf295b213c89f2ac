//! Table tests for `validate`: for each rule a request that passes and one
//! that fails with the exact field path. No I/O beyond `include_str!`.

use super::*;
use crate::protocol::{
    parse_count_tokens_request, parse_messages_request, parse_messages_request_with,
};
use serde_json::{Value, json};

/// A valid request with `patch`'s top-level fields replaced.
fn with(patch: Value) -> Value {
    let mut body = json!({"model": "m", "max_tokens": 2048,
        "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(body), Some(patch)) = (body.as_object_mut(), patch.as_object()) {
        for (k, v) in patch {
            body.insert(k.clone(), v.clone());
        }
    }
    body
}

fn verdict(body: &Value) -> Result<(), String> {
    parse_messages_request(body.to_string().as_bytes())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `None`: accepted. `Some(prefix)`: refused with a message starting so
/// (always `path: ...`).
type Case = (&'static str, Value, Option<&'static str>);

fn run(cases: Vec<Case>) {
    for (name, patch, expected) in cases {
        let got = verdict(&with(patch.clone()));
        match (expected, &got) {
            (None, Ok(())) => {}
            (Some(prefix), Err(message)) if message.starts_with(prefix) => {}
            _ => panic!("{name}: {patch} gave {got:?}, expected {expected:?}"),
        }
    }
}

fn user(content: Value) -> Value {
    json!({"role": "user", "content": content})
}
fn assistant(content: Value) -> Value {
    json!({"role": "assistant", "content": content})
}
fn call(id: &str) -> Value {
    json!({"type": "tool_use", "id": id, "name": "Read", "input": {}})
}
fn answer(id: &str) -> Value {
    json!({"type": "tool_result", "tool_use_id": id, "content": "ok"})
}
fn png(media_type: &str) -> Value {
    json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": "AA"}})
}
fn read_tool(name: &str) -> Value {
    json!({"name": name, "input_schema": {"type": "object", "properties": {}}})
}

#[test]
fn sampling_and_limits() {
    run(vec![
        ("max_tokens 1", json!({"max_tokens": 1}), None),
        (
            "max_tokens 0",
            json!({"max_tokens": 0}),
            Some("max_tokens: must be at least 1"),
        ),
        ("temperature 0", json!({"temperature": 0}), None),
        ("temperature 1", json!({"temperature": 1.0}), None),
        (
            "temperature 1.5",
            json!({"temperature": 1.5}),
            Some("temperature: must be between 0 and 1, got 1.5"),
        ),
        (
            "temperature -0.1",
            json!({"temperature": -0.1}),
            Some("temperature: must be between 0 and 1"),
        ),
        ("top_p 0.9", json!({"top_p": 0.9}), None),
        (
            "top_p 1.01",
            json!({"top_p": 1.01}),
            Some("top_p: must be between 0 and 1"),
        ),
        ("top_k 0", json!({"top_k": 0}), None),
        (
            "top_k -1",
            json!({"top_k": -1}),
            Some("top_k: invalid value: integer -1"),
        ),
        (
            "model",
            json!({"model": ""}),
            Some("model: must not be empty"),
        ),
        (
            "messages",
            json!({"messages": []}),
            Some("messages: must not be empty"),
        ),
    ]);
}

#[test]
fn thinking_budget() {
    let enabled = |budget: Value| json!({"thinking": {"type": "enabled", "budget_tokens": budget}});
    run(vec![
        ("1024", enabled(json!(1024)), None),
        (
            "1023",
            enabled(json!(1023)),
            Some("thinking.budget_tokens: must be at least 1024, got 1023"),
        ),
        (
            "= max_tokens",
            enabled(json!(2048)),
            Some("thinking.budget_tokens: must be less than max_tokens (2048), got 2048"),
        ),
        (
            "not an integer",
            enabled(json!("big")),
            Some("thinking.budget_tokens: must be a non-negative integer"),
        ),
        (
            "missing",
            json!({"thinking": {"type": "enabled"}}),
            Some("thinking.budget_tokens: is required"),
        ),
        ("adaptive", json!({"thinking": {"type": "adaptive"}}), None),
        ("disabled", json!({"thinking": {"type": "disabled"}}), None),
        (
            "a future type",
            json!({"thinking": {"type": "someday"}}),
            None,
        ),
        ("null", json!({"thinking": null}), None),
        (
            "not an object",
            json!({"thinking": "yes"}),
            Some("thinking: must be an object"),
        ),
        (
            "no type",
            json!({"thinking": {"budget_tokens": 2000}}),
            Some("thinking.type: is required"),
        ),
    ]);
}

#[test]
fn interleaved_thinking_lets_the_budget_exceed_max_tokens() {
    let body = with(json!({"thinking": {"type": "enabled", "budget_tokens": 31999}}));
    assert!(verdict(&body).is_err());
    let betas = Betas::from_headers(["claude-code-20250219,interleaved-thinking-2025-05-14"]);
    assert!(betas.interleaved_thinking);
    assert!(parse_messages_request_with(body.to_string().as_bytes(), betas).is_ok());
    assert_eq!(
        Betas::from_headers(["fine-grained-tool-streaming-2025-05-14"]),
        Betas::default()
    );
    // The minimum still holds.
    let low = with(json!({"thinking": {"type": "enabled", "budget_tokens": 10}}));
    assert!(parse_messages_request_with(low.to_string().as_bytes(), betas).is_err());
}

#[test]
fn tool_definitions() {
    let long = "n".repeat(64);
    let too_long = "n".repeat(65);
    run(vec![
        (
            "client tool",
            json!({"tools": [read_tool("Read_file-2")]}),
            None,
        ),
        ("64 characters", json!({"tools": [read_tool(&long)]}), None),
        (
            "65 characters",
            json!({"tools": [read_tool(&too_long)]}),
            Some("tools.0.name: must match ^[a-zA-Z0-9_-]{1,64}$"),
        ),
        (
            "space in name",
            json!({"tools": [read_tool("ok"), read_tool("read file")]}),
            Some("tools.1.name: must match"),
        ),
        (
            "empty name",
            json!({"tools": [read_tool("")]}),
            Some("tools.0.name: must match"),
        ),
        (
            "no schema",
            json!({"tools": [{"name": "a"}]}),
            Some("tools.0.input_schema: is required"),
        ),
        (
            "schema not an object",
            json!({"tools": [{"name": "a", "input_schema": []}]}),
            Some("tools.0.input_schema: must be a JSON object"),
        ),
        (
            "schema of an array",
            json!({"tools": [{"name": "a", "input_schema": {"type": "array"}}]}),
            Some("tools.0.input_schema.type: must be \"object\""),
        ),
        (
            "schema without type",
            json!({"tools": [{"name": "a", "input_schema": {"properties": {}}}]}),
            Some("tools.0.input_schema.type: must be \"object\""),
        ),
        (
            "custom type is a client tool",
            json!({"tools": [{"type": "custom", "name": "a", "input_schema": {"type": "string"}}]}),
            Some("tools.0.input_schema.type"),
        ),
        (
            "server tools keep their rules",
            json!({"tools": [
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
                {"type": "bash_20250124", "name": "bash"},
                {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
                {"type": "some_future_tool_20990101", "name": "odd name!"}
            ]}),
            None,
        ),
        (
            "duplicate names",
            json!({"tools": [read_tool("a"), read_tool("b"), read_tool("a")]}),
            Some("tools.2.name: duplicate tool name \"a\""),
        ),
        (
            "duplicate among many",
            json!({"tools": (0..40).map(|i| read_tool(&format!("t{}", i % 39))).collect::<Vec<_>>()}),
            Some("tools.39.name: duplicate tool name \"t0\""),
        ),
        (
            "many distinct",
            json!({"tools": (0..40).map(|i| read_tool(&format!("t{i}"))).collect::<Vec<_>>()}),
            None,
        ),
        (
            "duplicate with a server tool",
            json!({"tools": [read_tool("web_search"), {"type": "web_search_20250305", "name": "web_search"}]}),
            Some("tools.1.name: duplicate"),
        ),
        (
            "tool_choice names a tool",
            json!({"tools": [read_tool("a")], "tool_choice": {"type": "tool", "name": "a"}}),
            None,
        ),
        (
            "tool_choice names no tool",
            json!({"tools": [read_tool("a")], "tool_choice": {"type": "tool", "name": "b"}}),
            Some("tool_choice.name: no tool named \"b\" in tools"),
        ),
        (
            "tool_choice without tools",
            json!({"tool_choice": {"type": "tool", "name": "b"}}),
            Some("tool_choice.name"),
        ),
        (
            "tool_choice any",
            json!({"tools": [read_tool("a")], "tool_choice": {"type": "any"}}),
            None,
        ),
    ]);
}

#[test]
fn tool_use_and_tool_result_pairing() {
    let m = |messages: Vec<Value>| json!({"messages": messages});
    run(vec![
        (
            "answered in the next turn",
            m(vec![
                user(json!("go")),
                assistant(json!([call("t1"), call("t2")])),
                user(json!([answer("t1"), answer("t2"), {"type": "text", "text": "next"}])),
            ]),
            None,
        ),
        (
            "answered out of order",
            m(vec![
                user(json!("go")),
                assistant(json!([call("t1"), call("t2")])),
                user(json!([answer("t2"), answer("t1")])),
            ]),
            None,
        ),
        (
            "last turn is the call",
            m(vec![user(json!("go")), assistant(json!([call("t1")]))]),
            None,
        ),
        (
            "turns of several messages",
            m(vec![
                user(json!("go")),
                assistant(json!([call("t1")])),
                assistant(json!([call("t2")])),
                user(json!([answer("t1")])),
                user(json!([answer("t2")])),
            ]),
            None,
        ),
        (
            "unknown id",
            m(vec![
                user(json!("go")),
                assistant(json!([call("t1")])),
                user(json!([answer("t1"), answer("t9")])),
            ]),
            Some(
                "messages.2.content.1.tool_use_id: unexpected `tool_use_id` found in `tool_result` blocks: t9.",
            ),
        ),
        (
            "no assistant turn before",
            m(vec![user(json!([answer("t1")]))]),
            Some("messages.0.content.0.tool_use_id: unexpected"),
        ),
        (
            "answer to an older turn",
            m(vec![
                user(json!("go")),
                assistant(json!([call("t1")])),
                user(json!([answer("t1")])),
                assistant(json!("done")),
                user(json!([answer("t1")])),
            ]),
            Some("messages.4.content.0.tool_use_id"),
        ),
        (
            "one call unanswered",
            m(vec![
                user(json!("go")),
                assistant(
                    json!([{"type": "text", "text": "x"}, call("t1"), call("t2"), call("t3")]),
                ),
                user(json!([answer("t2")])),
            ]),
            Some(
                "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: t1, t3. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
            ),
        ),
        (
            "answered by text only",
            m(vec![
                user(json!("go")),
                assistant(json!([call("t1")])),
                user(json!("ignored it")),
                assistant(json!("ok")),
            ]),
            Some("messages.1: `tool_use` ids"),
        ),
        (
            "unanswered in a later message of the turn",
            m(vec![
                user(json!("go")),
                assistant(json!("thinking aloud")),
                assistant(json!([call("t1")])),
                user(json!("no")),
            ]),
            Some("messages.2: `tool_use` ids"),
        ),
    ]);
}

#[test]
fn many_calls_in_one_turn_are_paired_in_linear_time() {
    let calls: Vec<Value> = (0..5_000).map(|i| call(&format!("t{i}"))).collect();
    let mut answers: Vec<Value> = (0..5_000).rev().map(|i| answer(&format!("t{i}"))).collect();
    let body = with(
        json!({"messages": [user(json!("go")), assistant(json!(calls)), user(json!(answers))]}),
    );
    assert_eq!(verdict(&body), Ok(()));
    answers.remove(10);
    let body = with(
        json!({"messages": [user(json!("go")), assistant(json!(calls)), user(json!(answers))]}),
    );
    let err = verdict(&body).err().unwrap_or_default();
    assert!(err.starts_with("messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: t4989."), "{err}");
}

#[test]
fn image_media_types() {
    let m = |messages: Vec<Value>| json!({"messages": messages});
    let mut cases: Vec<Case> = IMAGE_MEDIA_TYPES
        .iter()
        .map(|t| ("accepted type", m(vec![user(json!([png(t)]))]), None))
        .collect();
    cases.extend([
        ("bmp", m(vec![user(json!([{"type": "text", "text": "see"}, png("image/bmp")]))]), Some("messages.0.content.1.source.media_type: must be one of image/jpeg, image/png, image/gif, image/webp, got \"image/bmp\"")),
        ("url source", m(vec![user(json!([{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]))]), None),
        ("inside a tool result", m(vec![user(json!("go")), assistant(json!([call("t1")])), user(json!([{"type": "tool_result", "tool_use_id": "t1", "content": [png("image/png"), png("image/tiff")]}]))]), Some("messages.2.content.0.content.1.source.media_type: must be one of")),
        ("in an assistant turn", m(vec![user(json!("go")), assistant(json!([png("text/plain")]))]), Some("messages.1.content.0.source.media_type")),
    ]);
    run(cases);
}

#[test]
fn unknown_blocks_and_fields_pass() {
    run(vec![(
        "server tool blocks and new fields",
        json!({"container": "c1", "context_management": {"edits": []},
        "messages": [user(json!("go")), assistant(json!([
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "some_new_block", "x": 1}
        ]))]}),
        None,
    )]);
}

#[test]
fn claude_code_requests_pass() {
    let fixture = include_str!("fixtures/claude_code_request.json");
    assert_eq!(
        parse_messages_request(fixture.as_bytes()).map(|_| ()),
        Ok(())
    );
}

#[test]
fn count_tokens_follows_the_same_rules_without_max_tokens() {
    let parse = |body: Value| {
        parse_count_tokens_request(body.to_string().as_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let ok = json!({"model": "m", "messages": [user(json!("hi"))],
        "thinking": {"type": "enabled", "budget_tokens": 64000}});
    assert_eq!(parse(ok), Ok(()));
    let unpaired = json!({"model": "m", "messages": [user(json!([answer("t1")]))]});
    assert!(parse(unpaired).is_err_and(|e| e.starts_with("messages.0.content.0.tool_use_id")));
    let bad_tool =
        json!({"model": "m", "messages": [user(json!("hi"))], "tools": [read_tool("a b")]});
    assert!(parse(bad_tool).is_err_and(|e| e.starts_with("tools.0.name")));
}
