//! Serde types for OpenAI-compatible `/v1/chat/completions`: the request we
//! emit, the non-streaming response and the stream chunk we read. Pure
//! data; this module never does I/O.
//!
//! The request side serializes only what we set (`None` is skipped). The
//! response side is lenient because "OpenAI-compatible" providers differ:
//! missing fields and `null` take defaults, tool-call `arguments` may come as
//! a JSON string (standard) or as a raw JSON value (seen from some local
//! servers; re-serialized to a string), and reasoning may be named
//! `reasoning_content` (DeepSeek, Qwen) or `reasoning` (vLLM ≥ 0.10,
//! OpenRouter).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::effort::Effort;

/// Request body for `POST /v1/chat/completions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ChatTool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ChatToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<Effort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `response_format`; only the structured-output form is ever sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    pub schema: Value,
    pub strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    pub include_usage: bool,
}

/// One chat message, tagged by `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: UserContent,
    },
    Assistant {
        /// `null` (not omitted) when the turn is only tool calls.
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<ToolCall>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reasoning_content: Option<String>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: ImageUrl,
    },
    /// OpenAI's file input (used for base64 PDF documents).
    File {
        file: FileData,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    pub file_data: String,
}

/// A complete tool call (request history and non-streaming response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(
        rename = "type",
        default = "function_type",
        deserialize_with = "null_function"
    )]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "arguments_string")]
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTool {
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub parameters: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `"auto" | "none" | "required"` or `{type:"function",function:{name}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChatToolChoice {
    Mode(String),
    Named(NamedToolChoice),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: NamedFunction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedFunction {
    pub name: String,
}

/// Non-streaming response body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<ChatUsage>,
    /// Some providers answer HTTP 200 with `{"error":{…}}`.
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default, deserialize_with = "null_default")]
    pub index: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub message: ResponseMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// vLLM extension: the stop string (or token id) that ended the turn.
    #[serde(default)]
    pub stop_reason: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
    #[serde(default)]
    pub reasoning: Option<String>,
}

impl ResponseMessage {
    /// The reasoning text under whichever name the provider used.
    pub fn reasoning_text(&self) -> Option<&str> {
        first_non_empty(&self.reasoning_content, &self.reasoning)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatUsage {
    #[serde(default, deserialize_with = "null_default")]
    pub prompt_tokens: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub completion_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

impl ChatUsage {
    /// Cached prompt tokens, when the provider reports them.
    pub fn cached_tokens(&self) -> Option<u64> {
        self.prompt_tokens_details.as_ref()?.cached_tokens
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

/// One streamed `chat.completion.chunk`. `choices` is empty on the final
/// usage-only chunk sent when `stream_options.include_usage` is set, and on
/// Azure OpenAI's first chunk, which carries `prompt_filter_results`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub choices: Vec<ChunkChoice>,
    #[serde(default)]
    pub usage: Option<ChatUsage>,
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_filter_results: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default, deserialize_with = "null_default")]
    pub index: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// vLLM extension, see [`Choice::stop_reason`].
    #[serde(default)]
    pub stop_reason: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
    #[serde(default)]
    pub reasoning: Option<String>,
    /// Thinking signature, forwarded by gateways that front Anthropic models.
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub tool_calls: Vec<ToolCallDelta>,
}

impl Delta {
    pub fn reasoning_text(&self) -> Option<&str> {
        first_non_empty(&self.reasoning_content, &self.reasoning)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Missing on some providers (Gemini) that send each call whole.
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionDelta>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDelta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "optional_arguments")]
    pub arguments: Option<String>,
}

fn first_non_empty<'a>(a: &'a Option<String>, b: &'a Option<String>) -> Option<&'a str> {
    [a, b]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .find(|s| !s.is_empty())
}

fn function_type() -> String {
    "function".to_owned()
}

/// `null` → `T::default()`.
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn null_function<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_else(function_type))
}

/// Arguments as a string; a non-string JSON value is re-serialized.
fn arguments_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(optional_arguments(deserializer)?.unwrap_or_default())
}

fn optional_arguments<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_response_parsing() -> Result<(), serde_json::Error> {
        let resp: ChatResponse = serde_json::from_value(json!({
            "choices": [{"message": {"content": null, "tool_calls": [
                {"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}},
                {"id": null, "type": null, "function": {"name": "g", "arguments": null}}
            ]}, "finish_reason": null}],
            "usage": {"prompt_tokens": 7, "completion_tokens": null}
        }))?;
        let msg = &resp.choices[0].message;
        assert_eq!(msg.content, None);
        assert_eq!(msg.tool_calls[0].function.arguments, r#"{"a":1}"#);
        assert_eq!(msg.tool_calls[0].kind, "function");
        assert_eq!(msg.tool_calls[1].function.arguments, "");
        assert_eq!(msg.tool_calls[1].id, "");
        assert_eq!(resp.usage.map(|u| u.completion_tokens), Some(0));
        Ok(())
    }

    #[test]
    fn chunk_parsing_with_null_delta_and_empty_choices() -> Result<(), serde_json::Error> {
        let chunk: ChatChunk = serde_json::from_value(json!({
            "choices": [{"index": 0, "delta": null, "finish_reason": "stop"}]
        }))?;
        assert_eq!(chunk.choices[0].delta, Delta::default());
        let chunk: ChatChunk = serde_json::from_value(json!({
            "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 2}}
        }))?;
        assert_eq!(chunk.usage.and_then(|u| u.cached_tokens()), Some(2));
        let chunk: ChatChunk =
            serde_json::from_value(json!({"choices": [{"delta": {"reasoning": "r"}}]}))?;
        assert_eq!(chunk.choices[0].delta.reasoning_text(), Some("r"));
        Ok(())
    }

    #[test]
    fn request_skips_unset_fields_but_keeps_null_assistant_content() -> Result<(), serde_json::Error>
    {
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![ChatMessage::Assistant {
                content: None,
                tool_calls: None,
                reasoning_content: None,
            }],
            ..ChatRequest::default()
        };
        assert_eq!(
            serde_json::to_value(&req)?,
            json!({"model": "m", "messages": [{"role": "assistant", "content": null}]})
        );
        Ok(())
    }
}
