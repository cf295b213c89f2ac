//! Anthropic `MessagesRequest` → OpenAI `ChatRequest`. Pure; never does I/O.
//!
//! Choices where the Anthropic and OpenAI models do not line up:
//! - Several text blocks of one assistant turn are concatenated with `""`
//!   (they are one utterance); `system` text blocks are joined with `"\n"`.
//! - A user turn's `tool_result` blocks become `role:"tool"` messages first,
//!   in order; the turn's other blocks (text, images) follow as one `user`
//!   message. Images *inside* a `tool_result` cannot live in a `tool`
//!   message, so they are moved into that following `user` message too.
//! - `document` blocks: plain-text sources become text parts, base64 sources
//!   (PDF) become OpenAI `file` parts; other sources are dropped.
//! - `thinking` → assistant `reasoning_content` (the signature is dropped),
//!   `redacted_thinking`, `server_tool_use`, `web_search_tool_result` and any
//!   unknown block are dropped: OpenAI providers have no place for them.
//! - Server tools (a `type` other than `custom`: web search, bash, …) are
//!   dropped; a client tool's `strict` is kept. When no tool is left,
//!   `tool_choice` and `parallel_tool_calls` are omitted too, since
//!   providers reject them without `tools`.
//! - `thinking` and `output_config.effort` become `reasoning_effort`, in
//!   the provider's vocabulary ([`Target::reasoning_efforts`], see
//!   [`super::effort`]); a provider with none gets none.
//! - `output_config.format` (or the beta's top-level `output_format`) of
//!   type `json_schema` becomes `response_format: {type: "json_schema",
//!   json_schema: {name: "output", schema, strict: true}}` (strict, as
//!   Anthropic's guarantee is); any other type is refused, not dropped.
//! - `top_k` has no chat-completions equivalent: dropped. The README's
//!   conversion table lists everything else a provider does not get.

use super::InvalidRequest;
use super::anthropic::{
    Content, ContentBlock, ImageSource, MessagesRequest, Role, Tool, ToolChoice, ToolResultBlock,
};
use super::effort::{self, Effort};
use super::openai::{
    ChatMessage, ChatRequest, ChatTool, ChatToolChoice, ContentPart, FileData, FunctionCall,
    FunctionDef, ImageUrl, JsonSchemaFormat, NamedFunction, NamedToolChoice, ResponseFormat,
    StreamOptions, ToolCall, UserContent,
};
use serde_json::Value;

/// Where the converted request is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The upstream model name (after alias mapping).
    pub model: &'a str,
    /// The provider's output cap; `max_tokens` is clamped to it.
    pub max_tokens_limit: Option<u32>,
    /// Ask for a stream (adds `stream_options.include_usage`).
    pub stream: bool,
    /// The `reasoning_effort` values the provider accepts; empty: it gets
    /// none.
    pub reasoning_efforts: &'a [Effort],
}

/// `json_schema.name` of the `response_format` sent for structured output
/// (Anthropic's format has no name; OpenAI requires one).
pub const RESPONSE_FORMAT_NAME: &str = "output";

/// Placeholder for a `tool_result` without any text.
pub const EMPTY_TOOL_RESULT: &str = "No content provided";

/// Converts a validated Anthropic request for an OpenAI-compatible upstream.
pub fn to_openai(req: &MessagesRequest, target: &Target) -> Result<ChatRequest, InvalidRequest> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        let text = system_text(system);
        if !text.is_empty() {
            messages.push(ChatMessage::System { content: text });
        }
    }
    for (i, message) in req.messages.iter().enumerate() {
        match message.role {
            Role::User => convert_user(&message.content, &mut messages),
            Role::Assistant => messages.push(convert_assistant(&message.content, i)?),
        }
    }

    let tools: Vec<ChatTool> = req
        .tools
        .iter()
        .flatten()
        .filter_map(convert_tool)
        .collect();
    let has_tools = !tools.is_empty();
    let max_tokens = match target.max_tokens_limit {
        Some(limit) => req.max_tokens.min(limit),
        None => req.max_tokens,
    };
    Ok(ChatRequest {
        model: target.model.to_owned(),
        messages,
        max_tokens: Some(max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        stop: req.stop_sequences.clone().filter(|s| !s.is_empty()),
        stream: target.stream.then_some(true),
        stream_options: target.stream.then_some(StreamOptions {
            include_usage: true,
        }),
        tool_choice: req
            .tool_choice
            .as_ref()
            .filter(|_| has_tools)
            .map(convert_tool_choice),
        parallel_tool_calls: req
            .tool_choice
            .as_ref()
            .filter(|tc| has_tools && tc.disable_parallel_tool_use())
            .map(|_| false),
        tools: has_tools.then_some(tools),
        reasoning_effort: effort::requested(req)?
            .and_then(|wanted| effort::pick(wanted, target.reasoning_efforts)),
        response_format: response_format(req)?,
        user: req.metadata.as_ref().and_then(|m| m.user_id.clone()),
    })
}

/// Structured output, from `output_config.format` or the beta's
/// `output_format`.
fn response_format(req: &MessagesRequest) -> Result<Option<ResponseFormat>, InvalidRequest> {
    let configured = req.output_config.as_ref().and_then(|c| c.format.as_ref());
    let (path, format) = match (configured, req.extra.get("output_format")) {
        (Some(format), _) => ("output_config.format", format),
        (None, Some(format)) => ("output_format", format),
        (None, None) => return Ok(None),
    };
    if format.is_null() {
        return Ok(None);
    }
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => {}
        other => {
            return Err(InvalidRequest::new(
                format!("{path}.type"),
                format!(
                    "{} cannot be sent to an OpenAI-format provider; only \"json_schema\" can",
                    other.map_or_else(|| "a format without type".to_owned(), |t| format!("{t:?}"))
                ),
            ));
        }
    }
    let schema = format
        .get("schema")
        .filter(|s| s.is_object())
        .ok_or_else(|| InvalidRequest::new(format!("{path}.schema"), "must be a JSON object"))?;
    Ok(Some(ResponseFormat::JsonSchema {
        json_schema: JsonSchemaFormat {
            name: RESPONSE_FORMAT_NAME.to_owned(),
            schema: schema.clone(),
            strict: true,
        },
    }))
}

fn system_text(system: &Content) -> String {
    match system {
        Content::Text(text) => text.clone(),
        Content::Blocks(blocks) => blocks
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text(t) => Some(t.text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn convert_user(content: &Content, out: &mut Vec<ChatMessage>) {
    let blocks = match content {
        Content::Text(text) => {
            out.push(ChatMessage::User {
                content: UserContent::Text(text.clone()),
            });
            return;
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    let mut saw_tool_result = false;
    for block in blocks {
        match block {
            ContentBlock::ToolResult(result) => {
                saw_tool_result = true;
                out.push(tool_message(result, &mut parts));
            }
            other => push_part(other, &mut parts),
        }
    }
    if parts.is_empty() && saw_tool_result {
        return;
    }
    let content = match parts.as_slice() {
        [ContentPart::Text { text }] => UserContent::Text(text.clone()),
        [] => UserContent::Text(String::new()),
        _ => UserContent::Parts(parts),
    };
    out.push(ChatMessage::User { content });
}

/// Converts one non-tool-result user block to a content part, if it has an
/// OpenAI equivalent.
fn push_part(block: &ContentBlock, parts: &mut Vec<ContentPart>) {
    match block {
        ContentBlock::Text(t) => parts.push(ContentPart::Text {
            text: t.text.clone(),
        }),
        ContentBlock::Image(image) => parts.push(ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: match &image.source {
                    ImageSource::Base64 { media_type, data } => {
                        format!("data:{media_type};base64,{data}")
                    }
                    ImageSource::Url { url } => url.clone(),
                },
            },
        }),
        ContentBlock::Document(doc) => {
            if let Some(part) = document_part(doc) {
                parts.push(part);
            }
        }
        _ => {}
    }
}

fn document_part(doc: &Value) -> Option<ContentPart> {
    let source = doc.get("source")?;
    let data = source.get("data").and_then(Value::as_str);
    match source.get("type").and_then(Value::as_str)? {
        "text" => Some(ContentPart::Text {
            text: data?.to_owned(),
        }),
        "base64" => {
            let media_type = source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("application/pdf");
            Some(ContentPart::File {
                file: FileData {
                    filename: doc.get("title").and_then(Value::as_str).map(str::to_owned),
                    file_data: format!("data:{media_type};base64,{}", data?),
                },
            })
        }
        _ => None,
    }
}

/// A `tool_result` → `role:"tool"` message. Images inside it are appended to
/// `carry` (they go to the user message that follows).
fn tool_message(result: &ToolResultBlock, carry: &mut Vec<ContentPart>) -> ChatMessage {
    let text = match &result.content {
        None => String::new(),
        Some(Content::Text(text)) => text.clone(),
        Some(Content::Blocks(blocks)) => {
            let mut texts = Vec::new();
            for block in blocks {
                match block {
                    ContentBlock::Text(t) => texts.push(t.text.as_str()),
                    other => push_part(other, carry),
                }
            }
            texts.join("\n")
        }
    };
    let text = if text.trim().is_empty() {
        EMPTY_TOOL_RESULT.to_owned()
    } else {
        text
    };
    let content = if result.is_error == Some(true) {
        format!("Error: {text}")
    } else {
        text
    };
    ChatMessage::Tool {
        tool_call_id: result.tool_use_id.clone(),
        content,
    }
}

fn convert_assistant(content: &Content, index: usize) -> Result<ChatMessage, InvalidRequest> {
    let blocks = match content {
        Content::Text(text) => {
            return Ok(ChatMessage::Assistant {
                content: Some(text.clone()),
                tool_calls: None,
                reasoning_content: None,
            });
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut text = String::new();
    let mut has_text = false;
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::Text(t) => {
                has_text = true;
                text.push_str(&t.text);
            }
            ContentBlock::Thinking(t) => reasoning.push_str(&t.thinking),
            ContentBlock::ToolUse(tool) => {
                let arguments = serde_json::to_string(&tool.input).map_err(|e| {
                    InvalidRequest::new(format!("messages.{index}.content"), e.to_string())
                })?;
                calls.push(ToolCall {
                    id: tool.id.clone(),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: tool.name.clone(),
                        arguments,
                    },
                });
            }
            _ => {}
        }
    }
    Ok(ChatMessage::Assistant {
        content: has_text.then_some(text),
        tool_calls: (!calls.is_empty()).then_some(calls),
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
    })
}

/// A client tool as a function; server tools (web search, bash, …) have
/// no chat-completions equivalent. Validation made sure a client tool has
/// its schema.
fn convert_tool(tool: &Tool) -> Option<ChatTool> {
    if !super::validate::is_client_tool(tool) {
        return None;
    }
    let parameters = tool.input_schema.clone()?;
    Some(ChatTool {
        kind: "function".to_owned(),
        function: FunctionDef {
            name: tool.name.clone(),
            description: tool.description.clone(),
            parameters,
            strict: tool.strict,
        },
    })
}

fn convert_tool_choice(choice: &ToolChoice) -> ChatToolChoice {
    match choice {
        ToolChoice::Auto { .. } => ChatToolChoice::Mode("auto".to_owned()),
        ToolChoice::Any { .. } => ChatToolChoice::Mode("required".to_owned()),
        ToolChoice::None {} => ChatToolChoice::Mode("none".to_owned()),
        ToolChoice::Tool { name, .. } => ChatToolChoice::Named(NamedToolChoice {
            kind: "function".to_owned(),
            function: NamedFunction { name: name.clone() },
        }),
    }
}

#[cfg(test)]
#[path = "to_openai_tests.rs"]
mod tests;
