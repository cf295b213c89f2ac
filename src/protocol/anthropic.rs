//! Serde types for the Anthropic Messages API: the request we accept on
//! `/v1/messages` and `/v1/messages/count_tokens`, and the response we send
//! back. Pure data plus id helpers; this module never does I/O.
//!
//! Leniency rules: unknown top-level request fields are kept in `extra`
//! (passthrough must be faithful), and unknown content-block types become
//! [`ContentBlock::Other`] instead of failing, because Anthropic keeps adding
//! block types (`server_tool_use`, `web_search_tool_result`, …). A *known*
//! block type with a malformed body is still an error, and that error names
//! the field inside the block (see `nested_error`).

use rand::Rng;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// `POST /v1/messages` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// Every top-level field we do not model (`container`, `service_tier`,
    /// the beta's `output_format`, the non-standard `provider`, …). Never an
    /// error.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `output_config`: how much effort the answer gets and what shape it has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputConfig {
    /// `low`, `medium`, `high`, `xhigh` or `max`; kept as text so a new
    /// level still passes through to Anthropic-format providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// Structured output: `{"type": "json_schema", "schema": {…}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/messages/count_tokens` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountTokensRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Content,
}

/// A message's `content` (and `system`, and a `tool_result`'s `content`):
/// a plain string or a list of blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

/// `system` has the same shape as message content (string or text blocks).
pub type System = Content;

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of content blocks")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(block) = seq.next_element::<ContentBlock>()? {
                    blocks.push(block);
                }
                Ok(Content::Blocks(blocks))
            }
        }
        deserializer.deserialize_any(ContentVisitor)
    }
}

/// One content block, tagged by `type`. Known types carry typed bodies;
/// `document` and every unknown type are kept verbatim as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text(TextBlock),
    Image(ImageBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    Thinking(ThinkingBlock),
    RedactedThinking(RedactedThinkingBlock),
    /// `document` blocks (PDF, plain text, …), kept whole, `type` included.
    #[serde(untagged)]
    Document(Value),
    /// Any other block type (`server_tool_use`, `web_search_tool_result`, …),
    /// kept whole, `type` included.
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextBlock {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBlock {
    pub source: ImageSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUseBlock {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThinkingBlock {
    pub thinking: String,
    #[serde(default)]
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedactedThinkingBlock {
    pub data: String,
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let Some(object) = value.as_object() else {
            return Err(de::Error::invalid_type(
                unexpected(&value),
                &"a content block object",
            ));
        };
        let kind = match object.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            Some(other) => {
                return Err(nested_error(
                    "type",
                    format!("invalid type: {}, expected a string", unexpected(other)),
                ));
            }
            None => return Err(de::Error::missing_field("type")),
        };
        Ok(match kind.as_str() {
            "text" => ContentBlock::Text(typed(value)?),
            "image" => ContentBlock::Image(typed(value)?),
            "tool_use" => ContentBlock::ToolUse(typed(value)?),
            "tool_result" => ContentBlock::ToolResult(typed(value)?),
            "thinking" => ContentBlock::Thinking(typed(value)?),
            "redacted_thinking" => ContentBlock::RedactedThinking(typed(value)?),
            "document" => ContentBlock::Document(value),
            _ => ContentBlock::Other(value),
        })
    }
}

/// Deserializes a block body from an already-parsed value, keeping the
/// inner field path for the error message.
fn typed<T: de::DeserializeOwned, E: de::Error>(value: Value) -> Result<T, E> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = dotted_path(err.path());
        nested_error(&path, err.into_inner())
    })
}

/// Marks an error raised *inside* an already-buffered value, so that
/// [`super::InvalidRequest`] can splice the inner path onto the outer one.
/// Format: `\u{0}inner.path\u{0}message` (nested markers are merged).
pub(crate) fn nested_error<E: de::Error>(path: &str, msg: impl fmt::Display) -> E {
    let msg = msg.to_string();
    let (path, msg) = match split_nested(&msg) {
        Some((inner, rest)) if path == "." || path.is_empty() => (inner.to_owned(), rest),
        Some((inner, rest)) => (format!("{path}.{inner}"), rest),
        None => (path.to_owned(), msg.as_str()),
    };
    E::custom(format!("\u{0}{path}\u{0}{msg}"))
}

/// Splits a message made by [`nested_error`] into (inner path, message).
pub(crate) fn split_nested(msg: &str) -> Option<(&str, &str)> {
    msg.strip_prefix('\u{0}')?.split_once('\u{0}')
}

/// `messages.0.content` style path (serde_path_to_error writes `[0]`).
pub(crate) fn dotted_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let parts: Vec<String> = path
        .iter()
        .map(|segment| match segment {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => key.clone(),
            Segment::Enum { variant } => variant.clone(),
            _ => "?".to_owned(),
        })
        .collect();
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join(".")
    }
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => de::Unexpected::Unsigned(u),
            (_, Some(i), _) => de::Unexpected::Signed(i),
            (_, _, Some(f)) => de::Unexpected::Float(f),
            _ => de::Unexpected::Other("number"),
        },
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

/// A tool definition. Client tools have `input_schema`; server tools such as
/// `{"type":"web_search_20250305","name":"web_search"}` have a `type` and no
/// schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Strict tool use: the input is guaranteed to match the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    None {},
}

impl ToolChoice {
    pub fn disable_parallel_tool_use(&self) -> bool {
        match self {
            ToolChoice::Auto {
                disable_parallel_tool_use,
            }
            | ToolChoice::Any {
                disable_parallel_tool_use,
            }
            | ToolChoice::Tool {
                disable_parallel_tool_use,
                ..
            } => disable_parallel_tool_use.unwrap_or(false),
            ToolChoice::None {} => false,
        }
    }
}

/// Non-streaming `/v1/messages` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    pub id: String,
    /// Always `"message"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub role: Role,
    pub model: String,
    pub content: Vec<ResponseBlock>,
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBlock {
    Text {
        text: String,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    PauseTurn,
    Refusal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

const ID_ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ID_LEN: usize = 24;

/// `prefix` + 24 base62 characters drawn from `rng`.
pub fn random_id(prefix: &str, rng: &mut impl Rng) -> String {
    let mut id = String::with_capacity(prefix.len() + ID_LEN);
    id.push_str(prefix);
    for _ in 0..ID_LEN {
        let i = rng.gen_range(0..ID_ALPHABET.len());
        id.push(char::from(ID_ALPHABET[i]));
    }
    id
}

/// `msg_` + 24 random base62 characters.
pub fn new_message_id() -> String {
    random_id("msg_", &mut rand::thread_rng())
}

/// `toolu_` + 24 random base62 characters.
pub fn new_tool_use_id() -> String {
    random_id("toolu_", &mut rand::thread_rng())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_have_prefix_and_length() {
        let m = new_message_id();
        assert!(m.starts_with("msg_") && m.len() == 28, "{m}");
        let t = new_tool_use_id();
        assert!(t.starts_with("toolu_") && t.len() == 30, "{t}");
        assert!(t[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(new_message_id(), m);
    }

    #[test]
    fn unknown_block_types_are_kept_verbatim() -> Result<(), serde_json::Error> {
        let raw = json!([
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hi"}}
        ]);
        let content: Content = serde_json::from_value(raw.clone())?;
        let Content::Blocks(blocks) = &content else {
            panic!("expected blocks")
        };
        assert!(matches!(blocks[0], ContentBlock::Other(_)));
        assert!(matches!(blocks[1], ContentBlock::Other(_)));
        assert!(matches!(blocks[2], ContentBlock::Document(_)));
        assert_eq!(serde_json::to_value(&content)?, raw);
        Ok(())
    }

    #[test]
    fn known_blocks_round_trip() -> Result<(), serde_json::Error> {
        let raw = json!([
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a"}},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok", "is_error": false},
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xyz"}
        ]);
        let content: Content = serde_json::from_value(raw.clone())?;
        assert_eq!(serde_json::to_value(&content)?, raw);
        Ok(())
    }

    #[test]
    fn tool_choice_and_server_tools_parse() -> Result<(), serde_json::Error> {
        let tc: ToolChoice =
            serde_json::from_value(json!({"type": "any", "disable_parallel_tool_use": true}))?;
        assert!(tc.disable_parallel_tool_use());
        let tc: ToolChoice = serde_json::from_value(json!({"type": "none"}))?;
        assert_eq!(tc, ToolChoice::None {});
        let tool: Tool = serde_json::from_value(
            json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 5}),
        )?;
        assert_eq!(tool.kind.as_deref(), Some("web_search_20250305"));
        assert!(tool.input_schema.is_none());
        assert_eq!(tool.extra.get("max_uses"), Some(&json!(5)));
        Ok(())
    }

    #[test]
    fn response_serializes_in_anthropic_shape() -> Result<(), serde_json::Error> {
        let resp = MessagesResponse {
            id: "msg_1".into(),
            kind: "message".into(),
            role: Role::Assistant,
            model: "claude".into(),
            content: vec![ResponseBlock::Text { text: "hi".into() }],
            stop_reason: Some(StopReason::EndTurn),
            stop_sequence: None,
            usage: Usage {
                input_tokens: 3,
                output_tokens: 1,
                ..Usage::default()
            },
        };
        assert_eq!(
            serde_json::to_value(&resp)?,
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
                   "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                   "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 1}})
        );
        Ok(())
    }
}
