//! Unit tests for `to_openai` (one per conversion rule) plus the fixture
//! snapshot. No I/O beyond `include_str!`.

use super::*;
use crate::protocol::{Effort, parse_messages_request};
use serde_json::{Value, json};

const TARGET: Target = Target {
    model: "gpt-up",
    max_tokens_limit: None,
    stream: false,
    reasoning_efforts: &[],
};

fn convert_with(mut body: Value, target: &Target) -> Value {
    if body.get("model").is_none() {
        body["model"] = json!("claude-x");
    }
    if body.get("max_tokens").is_none() {
        body["max_tokens"] = json!(100);
    }
    let req = match parse_messages_request(body.to_string().as_bytes()) {
        Ok(req) => req,
        Err(e) => panic!("fixture rejected: {e}"),
    };
    match to_openai(&req, target).map(serde_json::to_value) {
        Ok(Ok(v)) => v,
        other => panic!("conversion failed: {other:?}"),
    }
}

fn convert(body: Value) -> Value {
    convert_with(body, &TARGET)
}

fn messages(body: Value) -> Value {
    convert(body)["messages"].clone()
}

fn user(content: Value) -> Value {
    json!({"messages": [{"role": "user", "content": content}]})
}

/// A user turn answering tool calls `ids`, after the assistant turn that
/// made them; converts and returns the messages of that user turn only.
fn answering(ids: &[&str], content: Value) -> Value {
    let calls: Vec<Value> = ids
        .iter()
        .map(|id| json!({"type": "tool_use", "id": id, "name": "Read", "input": {}}))
        .collect();
    let out = messages(json!({"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": calls},
        {"role": "user", "content": content}
    ]}));
    json!(out.as_array().map(|m| m[2..].to_vec()).unwrap_or_default())
}

#[test]
fn base_fields_model_max_tokens_and_no_stream() {
    let out = convert(user(json!("hi")));
    assert_eq!(
        out,
        json!({"model": "gpt-up", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100})
    );
}

#[test]
fn system_string_becomes_first_message() {
    let mut body = user(json!("hi"));
    body["system"] = json!("be brief");
    assert_eq!(
        messages(body)[0],
        json!({"role": "system", "content": "be brief"})
    );
}

#[test]
fn system_text_blocks_joined_with_newline() {
    let mut body = user(json!("hi"));
    body["system"] = json!([
        {"type": "text", "text": "one"},
        {"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}}
    ]);
    assert_eq!(
        messages(body)[0],
        json!({"role": "system", "content": "one\ntwo"})
    );
}

#[test]
fn single_text_block_with_cache_control_collapses_and_is_kept() {
    let out = messages(user(
        json!([{"type": "text", "text": "keep me", "cache_control": {"type": "ephemeral"}}]),
    ));
    assert_eq!(out, json!([{"role": "user", "content": "keep me"}]));
}

#[test]
fn text_and_images_become_parts() {
    let out = messages(user(json!([
        {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QUJD"}},
        {"type": "image", "source": {"type": "url", "url": "https://e.x/a.jpg"}}
    ])));
    assert_eq!(
        out,
        json!([{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
            {"type": "image_url", "image_url": {"url": "https://e.x/a.jpg"}}
        ]}])
    );
}

#[test]
fn assistant_tool_use_only_has_null_content_and_tool_calls() {
    let out = messages(json!({"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.rs", "n": 2}},
            {"type": "tool_use", "id": "toolu_2", "name": "Ls", "input": {}}
        ]}
    ]}));
    assert_eq!(
        out[1],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"a.rs\",\"n\":2}"}},
            {"id": "toolu_2", "type": "function", "function": {"name": "Ls", "arguments": "{}"}}
        ]})
    );
}

#[test]
fn assistant_text_thinking_and_tool_use() {
    let out = messages(json!({"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "plan", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}
        ]}
    ]}));
    assert_eq!(
        out[1],
        json!({"role": "assistant", "content": "Reading.", "reasoning_content": "plan", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
        ]})
    );
}

#[test]
fn tool_results_come_first_then_remaining_user_text_and_images() {
    let out = answering(
        &["toolu_1", "toolu_2"],
        json!([
            {"type": "text", "text": "here you go"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "file body"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "Zm9v"}},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [
                {"type": "text", "text": "line1"}, {"type": "text", "text": "line2"}
            ]}
        ]),
    );
    assert_eq!(
        out,
        json!([
            {"role": "tool", "tool_call_id": "toolu_1", "content": "file body"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "line1\nline2"},
            {"role": "user", "content": [
                {"type": "text", "text": "here you go"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,Zm9v"}}
            ]}
        ])
    );
}

#[test]
fn tool_result_error_prefix_and_empty_placeholder() {
    let out = answering(
        &["a", "b", "c", "d"],
        json!([
            {"type": "tool_result", "tool_use_id": "a", "content": "boom", "is_error": true},
            {"type": "tool_result", "tool_use_id": "b"},
            {"type": "tool_result", "tool_use_id": "c", "content": []},
            {"type": "tool_result", "tool_use_id": "d", "content": "", "is_error": true}
        ]),
    );
    assert_eq!(
        out,
        json!([
            {"role": "tool", "tool_call_id": "a", "content": "Error: boom"},
            {"role": "tool", "tool_call_id": "b", "content": "No content provided"},
            {"role": "tool", "tool_call_id": "c", "content": "No content provided"},
            {"role": "tool", "tool_call_id": "d", "content": "Error: No content provided"}
        ])
    );
}

#[test]
fn image_inside_tool_result_moves_to_following_user_message() {
    let out = answering(
        &["a"],
        json!([
            {"type": "tool_result", "tool_use_id": "a", "content": [
                {"type": "text", "text": "screenshot:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}
            ]}
        ]),
    );
    assert_eq!(
        out,
        json!([
            {"role": "tool", "tool_call_id": "a", "content": "screenshot:"},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
            ]}
        ])
    );
}

#[test]
fn documents_text_and_pdf_unknown_blocks_dropped() {
    let out = messages(user(json!([
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc text"}},
        {"type": "document", "title": "a.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
        {"type": "web_search_tool_result", "tool_use_id": "s", "content": []}
    ])));
    assert_eq!(
        out,
        json!([{"role": "user", "content": [
            {"type": "text", "text": "doc text"},
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBER"}}
        ]}])
    );
}

#[test]
fn tools_map_to_functions_server_tools_dropped() {
    let mut body = user(json!("hi"));
    body["tools"] = json!([
        {"name": "Read", "description": "read a file", "input_schema": {"type": "object", "properties": {"p": {"type": "string"}}}},
        {"type": "custom", "name": "Custom", "input_schema": {"type": "object"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    ]);
    assert_eq!(
        convert(body)["tools"],
        json!([
            {"type": "function", "function": {"name": "Read", "description": "read a file",
                "parameters": {"type": "object", "properties": {"p": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "Custom", "parameters": {"type": "object"}}}
        ])
    );
}

fn with_choice(choice: Value) -> Value {
    let mut body = user(json!("hi"));
    body["tools"] = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    body["tool_choice"] = choice;
    convert(body)
}

#[test]
fn tool_choice_mapping() {
    assert_eq!(with_choice(json!({"type": "auto"}))["tool_choice"], "auto");
    assert_eq!(
        with_choice(json!({"type": "any"}))["tool_choice"],
        "required"
    );
    assert_eq!(with_choice(json!({"type": "none"}))["tool_choice"], "none");
    assert_eq!(
        with_choice(json!({"type": "tool", "name": "f"}))["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
}

#[test]
fn disable_parallel_tool_use_maps_to_parallel_tool_calls_false() {
    let out = with_choice(json!({"type": "auto", "disable_parallel_tool_use": true}));
    assert_eq!(out["parallel_tool_calls"], json!(false));
    let out = with_choice(json!({"type": "auto"}));
    assert!(out.get("parallel_tool_calls").is_none());
}

#[test]
fn tool_choice_omitted_when_every_tool_was_dropped() {
    let mut body = user(json!("hi"));
    body["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    body["tool_choice"] = json!({"type": "any", "disable_parallel_tool_use": true});
    let out = convert(body);
    assert!(out.get("tools").is_none() && out.get("tool_choice").is_none());
    assert!(out.get("parallel_tool_calls").is_none());
}

#[test]
fn sampling_stop_user_and_dropped_top_k() {
    let mut body = user(json!("hi"));
    body["temperature"] = json!(0.5);
    body["top_p"] = json!(0.9);
    body["top_k"] = json!(40);
    body["stop_sequences"] = json!(["END", "###"]);
    body["metadata"] = json!({"user_id": "u-42"});
    body["max_tokens"] = json!(2000);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let out = convert(body);
    assert_eq!(out["temperature"], json!(0.5));
    assert_eq!(out["top_p"], json!(0.9));
    assert_eq!(out["stop"], json!(["END", "###"]));
    assert_eq!(out["user"], json!("u-42"));
    assert!(out.get("top_k").is_none() && out.get("thinking").is_none());
}

#[test]
fn max_tokens_clamped_to_limit() {
    let target = Target {
        max_tokens_limit: Some(64),
        ..TARGET
    };
    assert_eq!(convert_with(user(json!("hi")), &target)["max_tokens"], 64);
    let target = Target {
        max_tokens_limit: Some(1000),
        ..TARGET
    };
    assert_eq!(convert_with(user(json!("hi")), &target)["max_tokens"], 100);
}

#[test]
fn stream_adds_stream_options() {
    let target = Target {
        stream: true,
        ..TARGET
    };
    let out = convert_with(user(json!("hi")), &target);
    assert_eq!(out["stream"], json!(true));
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
}

#[test]
fn claude_code_fixture_snapshot() {
    let body: Value = match serde_json::from_str(include_str!("fixtures/claude_code_request.json"))
    {
        Ok(v) => v,
        Err(e) => panic!("bad fixture: {e}"),
    };
    let target = Target {
        model: "qwen3-coder-plus",
        max_tokens_limit: Some(16384),
        stream: true,
        reasoning_efforts: &[],
    };
    let converted = convert_with(body, &target);
    // No module prefix: the file name must not depend on the crate's name.
    insta::with_settings!({prepend_module_to_snapshot => false}, {
        insta::assert_json_snapshot!("claude_code_request_to_openai", converted);
    });
}

const OPENAI_EFFORTS: [Effort; 4] = [Effort::Minimal, Effort::Low, Effort::Medium, Effort::High];

/// Converts `extra` merged into a one-message request for a provider
/// that accepts `efforts`; the error text when refused.
fn convert_for(extra: Value, efforts: &[Effort]) -> Result<Value, String> {
    let mut body = json!({"model": "claude-x", "max_tokens": 64000,
        "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let req = parse_messages_request(body.to_string().as_bytes()).map_err(|e| e.to_string())?;
    let target = Target {
        reasoning_efforts: efforts,
        ..TARGET
    };
    let chat = to_openai(&req, &target).map_err(|e| e.to_string())?;
    serde_json::to_value(chat).map_err(|e| e.to_string())
}

#[test]
fn thinking_and_effort_become_the_providers_reasoning_effort() {
    let cases = [
        (json!({}), Value::Null),
        (json!({"thinking": {"type": "adaptive"}}), json!("high")),
        (
            json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"}}),
            json!("medium"),
        ),
        (json!({"output_config": {"effort": "max"}}), json!("high")),
        (json!({"output_config": {"effort": "xhigh"}}), json!("high")),
        (json!({"output_config": {"effort": "low"}}), json!("low")),
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 4000}}),
            json!("low"),
        ),
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 10000}}),
            json!("medium"),
        ),
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 31999}}),
            json!("high"),
        ),
        (json!({"thinking": {"type": "disabled"}}), json!("minimal")),
    ];
    for (extra, expected) in cases {
        let out = convert_for(extra.clone(), &OPENAI_EFFORTS);
        assert_eq!(
            out.map(|o| o["reasoning_effort"].clone()),
            Ok(expected),
            "{extra}"
        );
        // A provider without a reasoning vocabulary gets nothing.
        let none = convert_for(extra.clone(), &[]);
        assert_eq!(
            none.map(|o| o.get("reasoning_effort").cloned()),
            Ok(None),
            "{extra}"
        );
    }
    assert_eq!(
        convert_for(json!({"output_config": {"effort": "huge"}}), &OPENAI_EFFORTS).err(),
        Some("output_config.effort: unknown effort \"huge\"; expected low, medium, high, xhigh or max".to_owned())
    );
}

#[test]
fn json_schema_output_becomes_response_format() {
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}},
        "required": ["name"], "additionalProperties": false});
    let expected = json!({"type": "json_schema",
        "json_schema": {"name": RESPONSE_FORMAT_NAME, "schema": schema, "strict": true}});
    let current = json!({"output_config": {"format": {"type": "json_schema", "schema": schema}}});
    assert_eq!(
        convert_for(current, &[]).map(|o| o["response_format"].clone()),
        Ok(expected.clone())
    );
    let beta = json!({"output_format": {"type": "json_schema", "schema": schema}});
    assert_eq!(
        convert_for(beta, &[]).map(|o| o["response_format"].clone()),
        Ok(expected)
    );
    assert_eq!(
        convert_for(json!({"output_config": {"format": {"type": "xml"}}}), &[]).err(),
        Some("output_config.format.type: \"xml\" cannot be sent to an OpenAI-format provider; only \"json_schema\" can".to_owned())
    );
    assert_eq!(
        convert_for(
            json!({"output_config": {"format": {"type": "json_schema"}}}),
            &[]
        )
        .err(),
        Some("output_config.format.schema: must be a JSON object".to_owned())
    );
    let plain = convert_for(json!({"output_config": {"effort": "high"}}), &[]);
    assert_eq!(plain.map(|o| o.get("response_format").cloned()), Ok(None));
}

#[test]
fn strict_tools_stay_strict() {
    let tools = json!({"tools": [
        {"name": "a", "strict": true, "input_schema": {"type": "object", "additionalProperties": false}},
        {"name": "b", "input_schema": {"type": "object"}}
    ]});
    let out = convert_for(tools, &[]).unwrap_or_default();
    assert_eq!(out["tools"][0]["function"]["strict"], true);
    assert!(out["tools"][1]["function"].get("strict").is_none());
}
