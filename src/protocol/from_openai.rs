//! OpenAI chat-completion response body → Anthropic `MessagesResponse`.
//! Pure; never does I/O. Also home of the shared mapping helpers
//! (`map_stop_reason`, [`map_usage`], `tool_use_id`) that the stream
//! converter uses, so both paths agree.
//!
//! Decisions:
//! - A body that is not JSON, is HTML, carries `error`, or has no choice is an
//!   [`UpstreamInvalid`] error: never a fabricated empty success. Dispatch
//!   treats it as a failed attempt (the next candidate, or a 502).
//! - Block order: thinking (from `reasoning_content`/`reasoning`, signature
//!   `""` since OpenAI providers have none), text, then tool calls. With no
//!   block at all the content is one empty text block, so clients reading
//!   `content[0]` keep working.
//! - Tool-call ids are kept when they already look like Anthropic's
//!   (`toolu_…`); other ids become fresh `toolu_…` ids. The client echoes
//!   them back in `tool_result`, and `to_openai` reuses them, so upstream
//!   always sees consistent ids within one conversation.
//! - Arguments: `""` → `{}`; a JSON object → itself; anything else (invalid
//!   JSON, or JSON that is not an object) → `{"_raw": "<arguments>"}`, so
//!   the model's output is not silently lost and the client's tool-input
//!   validation reports it.
//! - `stop_sequence`: OpenAI does not say which stop string matched. We use
//!   vLLM's `stop_reason` extension when it names one of the request's stop
//!   sequences, else a heuristic: if the text ends with one of them (some
//!   providers include it), that one. Otherwise `end_turn`.
//! - `finish_reason` `stop` (or none) while tool calls were returned maps to
//!   `tool_use`: several providers say `stop` there, and the client must
//!   run the tools.

use super::anthropic::{
    MessagesResponse, ResponseBlock, Role, StopReason, Usage, new_message_id, random_id,
};
use super::openai::{ChatResponse, ChatUsage};
use serde_json::{Map, Value};

/// What the client asked for, echoed into the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseContext<'a> {
    /// The model alias the client sent (not the upstream name).
    pub model: &'a str,
    /// The request's `stop_sequences`.
    pub stop_sequences: &'a [String],
}

/// The upstream answered something we cannot turn into a message (or a
/// stream that is not a whole one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamInvalid {
    #[error("upstream returned an HTML page instead of JSON")]
    Html,
    #[error("upstream returned invalid JSON: {0}")]
    NotJson(String),
    #[error("upstream response has no choices")]
    NoChoices,
    #[error("upstream error: {0}")]
    Error(String),
    /// A stream that ended (without `[DONE]`, `finish_reason` or
    /// `message_stop`) before the answer was complete.
    #[error("upstream stream ended before the answer was complete")]
    Truncated,
}

impl UpstreamInvalid {
    /// Low-cardinality label for `request_logs.error_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamInvalid::Html | UpstreamInvalid::NotJson(_) | UpstreamInvalid::NoChoices => {
                "invalid_response"
            }
            UpstreamInvalid::Error(_) => "upstream_error",
            UpstreamInvalid::Truncated => "incomplete_response",
        }
    }
}

/// Converts a non-streaming chat-completion body.
pub fn from_openai(
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<MessagesResponse, UpstreamInvalid> {
    let resp: ChatResponse = parse_json(body)?;
    if let Some(error) = &resp.error {
        return Err(UpstreamInvalid::Error(error_message(error)));
    }
    let choice = resp
        .choices
        .into_iter()
        .min_by_key(|c| c.index)
        .ok_or(UpstreamInvalid::NoChoices)?;
    let message = choice.message;

    let mut content = Vec::new();
    if let Some(reasoning) = message.reasoning_text() {
        content.push(ResponseBlock::Thinking {
            thinking: reasoning.to_owned(),
            signature: String::new(),
        });
    }
    let text = message.content.clone().unwrap_or_default();
    if !text.is_empty() {
        content.push(ResponseBlock::Text { text: text.clone() });
    }
    let mut rng = rand::thread_rng();
    let has_tools = !message.tool_calls.is_empty();
    for call in message.tool_calls {
        content.push(ResponseBlock::ToolUse {
            id: tool_use_id(Some(&call.id), &mut rng),
            name: call.function.name,
            input: parse_arguments(&call.function.arguments),
        });
    }
    if content.is_empty() {
        content.push(ResponseBlock::Text {
            text: String::new(),
        });
    }
    let (stop_reason, stop_sequence) = map_stop_reason(
        choice.finish_reason.as_deref(),
        choice.stop_reason.as_ref(),
        &text,
        ctx.stop_sequences,
        has_tools,
    );
    Ok(MessagesResponse {
        id: new_message_id(),
        kind: "message".to_owned(),
        role: Role::Assistant,
        model: ctx.model.to_owned(),
        content,
        stop_reason: Some(stop_reason),
        stop_sequence,
        usage: resp.usage.as_ref().map(map_usage).unwrap_or_default(),
    })
}

/// Parses an upstream JSON document, telling HTML and garbage apart.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, UpstreamInvalid> {
    let text = std::str::from_utf8(body)
        .map_err(|_| UpstreamInvalid::NotJson("body is not UTF-8".to_owned()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('<') {
        return Err(UpstreamInvalid::Html);
    }
    if !trimmed.starts_with('{') {
        let head: String = trimmed.chars().take(80).collect();
        return Err(UpstreamInvalid::NotJson(format!(
            "expected a JSON object, got {head:?}"
        )));
    }
    serde_json::from_str(text).map_err(|e| UpstreamInvalid::NotJson(e.to_string()))
}

/// The human message of an upstream `error` value (object or string).
pub(crate) fn error_message(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("message") {
            Some(Value::String(m)) => m.clone(),
            _ => error.to_string(),
        },
        other => other.to_string(),
    }
}

/// Keeps an upstream id that is already `toolu_…`, else makes one.
pub(crate) fn tool_use_id(upstream: Option<&str>, rng: &mut impl rand::Rng) -> String {
    match upstream {
        Some(id) if id.starts_with("toolu_") => id.to_owned(),
        _ => random_id("toolu_", rng),
    }
}

/// Tool-call `arguments` string → Anthropic `input` object (see module doc).
pub fn parse_arguments(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => {
            let mut raw = Map::new();
            raw.insert("_raw".to_owned(), Value::String(arguments.to_owned()));
            Value::Object(raw)
        }
    }
}

/// `finish_reason` → (`stop_reason`, `stop_sequence`), see module doc.
pub(crate) fn map_stop_reason(
    finish_reason: Option<&str>,
    vllm_stop_reason: Option<&Value>,
    text: &str,
    stop_sequences: &[String],
    has_tool_calls: bool,
) -> (StopReason, Option<String>) {
    match finish_reason {
        Some("length") => (StopReason::MaxTokens, None),
        Some("tool_calls" | "function_call") => (StopReason::ToolUse, None),
        Some("content_filter") => (StopReason::Refusal, None),
        _ if has_tool_calls => (StopReason::ToolUse, None),
        Some("stop") => match matched_stop_sequence(vllm_stop_reason, text, stop_sequences) {
            Some(seq) => (StopReason::StopSequence, Some(seq)),
            None => (StopReason::EndTurn, None),
        },
        _ => (StopReason::EndTurn, None),
    }
}

fn matched_stop_sequence(
    vllm_stop_reason: Option<&Value>,
    text: &str,
    stop_sequences: &[String],
) -> Option<String> {
    if let Some(Value::String(matched)) = vllm_stop_reason
        && stop_sequences.contains(matched)
    {
        return Some(matched.clone());
    }
    stop_sequences
        .iter()
        .filter(|s| !s.is_empty())
        .find(|s| text.ends_with(s.as_str()))
        .cloned()
}

/// OpenAI usage → Anthropic usage. Anthropic's `input_tokens` excludes cache
/// reads, so cached prompt tokens are moved to `cache_read_input_tokens`.
pub fn map_usage(usage: &ChatUsage) -> Usage {
    let cached = usage.cached_tokens();
    Usage {
        input_tokens: usage.prompt_tokens.saturating_sub(cached.unwrap_or(0)),
        output_tokens: usage.completion_tokens,
        cache_creation_input_tokens: None,
        cache_read_input_tokens: cached,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CTX: ResponseContext = ResponseContext {
        model: "claude-sonnet-4",
        stop_sequences: &[],
    };

    fn convert_ctx(body: Value, ctx: &ResponseContext) -> Value {
        match from_openai(body.to_string().as_bytes(), ctx).map(serde_json::to_value) {
            Ok(Ok(v)) => v,
            other => panic!("conversion failed: {other:?}"),
        }
    }

    fn convert(body: Value) -> Value {
        convert_ctx(body, &CTX)
    }

    fn choice(message: Value, finish: Value) -> Value {
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "message": message, "finish_reason": finish}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
    }

    #[test]
    fn text_response_shape() {
        let out = convert(choice(
            json!({"role": "assistant", "content": "Hello"}),
            json!("stop"),
        ));
        assert!(out["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
        let mut out = out;
        out["id"] = json!("msg_X");
        assert_eq!(
            out,
            json!({"id": "msg_X", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
                   "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
                   "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 5}})
        );
    }

    #[test]
    fn reasoning_text_and_tool_calls_in_order() {
        let out = convert(choice(
            json!({"content": "Let me look.", "reasoning_content": "think first", "tool_calls": [
                {"id": "toolu_keep", "type": "function", "function": {"name": "Read", "arguments": "{\"p\":\"a\"}"}},
                {"id": "call_123", "type": "function", "function": {"name": "Ls", "arguments": ""}}
            ]}),
            json!("tool_calls"),
        ));
        let content = &out["content"];
        assert_eq!(
            content[0],
            json!({"type": "thinking", "thinking": "think first", "signature": ""})
        );
        assert_eq!(content[1], json!({"type": "text", "text": "Let me look."}));
        assert_eq!(
            content[2],
            json!({"type": "tool_use", "id": "toolu_keep", "name": "Read", "input": {"p": "a"}})
        );
        assert_eq!(content[3]["input"], json!({}));
        let id = content[3]["id"].as_str().unwrap_or_default();
        assert!(id.starts_with("toolu_") && id.len() == 30, "{id}");
        assert_eq!(out["stop_reason"], "tool_use");
    }

    #[test]
    fn invalid_arguments_kept_raw() {
        assert_eq!(parse_arguments("{\"a\":"), json!({"_raw": "{\"a\":"}));
        assert_eq!(parse_arguments("[1]"), json!({"_raw": "[1]"}));
        assert_eq!(parse_arguments("  "), json!({}));
    }

    #[test]
    fn finish_reason_mapping() {
        let reason =
            |finish: Value| convert(choice(json!({"content": "x"}), finish))["stop_reason"].clone();
        assert_eq!(reason(json!("stop")), "end_turn");
        assert_eq!(reason(json!("length")), "max_tokens");
        assert_eq!(reason(json!("tool_calls")), "tool_use");
        assert_eq!(reason(json!("function_call")), "tool_use");
        assert_eq!(reason(json!("content_filter")), "refusal");
        assert_eq!(reason(json!(null)), "end_turn");
        let out = convert(choice(
            json!({"content": null, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}),
            json!("stop"),
        ));
        assert_eq!(out["stop_reason"], "tool_use");
    }

    #[test]
    fn stop_sequence_heuristics() {
        let stops = ["END".to_owned(), "###".to_owned()];
        let ctx = ResponseContext {
            model: "m",
            stop_sequences: &stops,
        };
        let out = convert_ctx(choice(json!({"content": "done ###"}), json!("stop")), &ctx);
        assert_eq!(out["stop_reason"], "stop_sequence");
        assert_eq!(out["stop_sequence"], "###");
        let mut body = choice(json!({"content": "done"}), json!("stop"));
        body["choices"][0]["stop_reason"] = json!("END");
        let out = convert_ctx(body, &ctx);
        assert_eq!(
            (out["stop_reason"].clone(), out["stop_sequence"].clone()),
            (json!("stop_sequence"), json!("END"))
        );
        let out = convert_ctx(choice(json!({"content": "done"}), json!("stop")), &ctx);
        assert_eq!(out["stop_reason"], "end_turn");
        assert_eq!(out["stop_sequence"], Value::Null);
    }

    #[test]
    fn usage_moves_cached_tokens_out_of_input() {
        let mut body = choice(json!({"content": "x"}), json!("stop"));
        body["usage"] = json!({"prompt_tokens": 100, "completion_tokens": 7,
                               "prompt_tokens_details": {"cached_tokens": 60}});
        assert_eq!(
            convert(body)["usage"],
            json!({"input_tokens": 40, "output_tokens": 7, "cache_read_input_tokens": 60})
        );
        let mut body = choice(json!({"content": "x"}), json!("stop"));
        body.as_object_mut().map(|o| o.remove("usage"));
        assert_eq!(
            convert(body)["usage"],
            json!({"input_tokens": 0, "output_tokens": 0})
        );
    }

    #[test]
    fn empty_message_gives_one_empty_text_block() {
        let out = convert(choice(json!({"content": null}), json!("stop")));
        assert_eq!(out["content"], json!([{"type": "text", "text": ""}]));
    }

    #[test]
    fn invalid_upstream_bodies_are_errors() {
        let err = |body: &str| from_openai(body.as_bytes(), &CTX).err();
        assert_eq!(
            err("<html><body>502 Bad Gateway</body></html>"),
            Some(UpstreamInvalid::Html)
        );
        assert!(matches!(
            err("upstream down"),
            Some(UpstreamInvalid::NotJson(_))
        ));
        assert!(matches!(
            err("{\"choices\": [}"),
            Some(UpstreamInvalid::NotJson(_))
        ));
        assert_eq!(err("{}"), Some(UpstreamInvalid::NoChoices));
        assert_eq!(err("{\"choices\": []}"), Some(UpstreamInvalid::NoChoices));
        assert_eq!(err("{\"choices\": null}"), Some(UpstreamInvalid::NoChoices));
        assert_eq!(
            err(r#"{"error": {"message": "quota exceeded", "type": "insufficient_quota"}}"#),
            Some(UpstreamInvalid::Error("quota exceeded".to_owned()))
        );
        assert_eq!(
            err("[]").map(|e| e.to_string()),
            Some("upstream returned invalid JSON: expected a JSON object, got \"[]\"".to_owned())
        );
    }

    #[test]
    fn fixture_snapshot() {
        let body = include_bytes!("fixtures/openai_response_tool_calls.json");
        let resp = from_openai(body, &CTX).map(serde_json::to_value);
        let Ok(Ok(value)) = resp else {
            panic!("fixture failed: {resp:?}")
        };
        insta::with_settings!({prepend_module_to_snapshot => false}, {
            insta::assert_json_snapshot!("openai_response_tool_calls_to_anthropic", value, {
                ".id" => "[msg_id]",
                ".content[].id" => insta::dynamic_redaction(|value, _| {
                    match value.as_str() {
                        Some(id) if id.starts_with("toolu_") && id.len() == 30 => "[toolu_id]".into(),
                        _ => value,
                    }
                }),
            });
        });
    }
}
