//! Input-token estimate for `/v1/messages/count_tokens` and for the
//! `message_start` usage of a stream. Pure CPU work; never does I/O.
//!
//! Claude's tokenizer is not public, so we count with OpenAI's `o200k_base`
//! (tiktoken-rs ships its vocabulary, nothing is downloaded). It is a close
//! proxy for English and code, and, unlike the original's `chars / 4`, it
//! counts everything the model sees: system, every block's text, tool calls
//! and results, thinking, and tool definitions. Structure the tokenizer
//! cannot see is added as documented constants:
//! - [`REQUEST_OVERHEAD`] once per request (priming of the reply);
//! - [`MESSAGE_OVERHEAD`] per message (role and separators);
//! - [`TOOL_OVERHEAD`] per tool definition (the tool-use preamble wrapper);
//! - [`IMAGE_TOKENS`] per image or base64 document: Anthropic charges
//!   `width * height / 750`, capped near 1,600 for a full-size image; we do
//!   not decode images here, so every image is priced at the cap (an
//!   over-estimate rather than a surprise).
//!
//! Building the BPE takes a noticeable moment: it is built once, lazily, in
//! a `OnceLock`; call [`warm_up`] at startup to pay that before the first
//! request.

use super::anthropic::{
    Content, ContentBlock, CountTokensRequest, Message, MessagesRequest, System, Tool,
};
use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

/// Tokens added once per request.
pub const REQUEST_OVERHEAD: u64 = 3;
/// Tokens added per message.
pub const MESSAGE_OVERHEAD: u64 = 4;
/// Tokens added per tool definition.
pub const TOOL_OVERHEAD: u64 = 8;
/// Tokens charged per image (and per base64 document).
pub const IMAGE_TOKENS: u64 = 1_600;

static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();

fn bpe() -> Option<&'static CoreBPE> {
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// Builds the tokenizer now instead of on the first request.
pub fn warm_up() {
    let _ = bpe();
}

/// Tokens in `text` under `o200k_base` (special-token text counted as plain
/// text). Falls back to `ceil(chars / 4)` if the vocabulary failed to load.
pub fn count_text(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match bpe() {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => (text.chars().count() as u64).div_ceil(4),
    }
}

/// Estimated input tokens of a `count_tokens` request.
pub fn count_input_tokens(req: &CountTokensRequest) -> u64 {
    count_parts(req.system.as_ref(), &req.messages, req.tools.as_deref())
}

/// Estimated input tokens of a `messages` request (for `message_start`).
pub fn estimate_messages_request(req: &MessagesRequest) -> u64 {
    count_parts(req.system.as_ref(), &req.messages, req.tools.as_deref())
}

fn count_parts(system: Option<&System>, messages: &[Message], tools: Option<&[Tool]>) -> u64 {
    let mut total = REQUEST_OVERHEAD;
    if let Some(system) = system {
        total += MESSAGE_OVERHEAD + count_content(system);
    }
    for message in messages {
        total += MESSAGE_OVERHEAD + count_content(&message.content);
    }
    for tool in tools.unwrap_or_default() {
        total += TOOL_OVERHEAD + count_text(&tool.name);
        if let Some(description) = &tool.description {
            total += count_text(description);
        }
        if let Some(schema) = &tool.input_schema {
            total += count_text(&schema.to_string());
        }
    }
    total
}

fn count_content(content: &Content) -> u64 {
    match content {
        Content::Text(text) => count_text(text),
        Content::Blocks(blocks) => blocks.iter().map(count_block).sum(),
    }
}

fn count_block(block: &ContentBlock) -> u64 {
    match block {
        ContentBlock::Text(t) => count_text(&t.text),
        ContentBlock::Image(_) => IMAGE_TOKENS,
        ContentBlock::ToolUse(t) => count_text(&t.name) + count_text(&t.input.to_string()),
        ContentBlock::ToolResult(r) => r.content.as_ref().map_or(0, count_content),
        ContentBlock::Thinking(t) => count_text(&t.thinking),
        ContentBlock::RedactedThinking(_) => 0,
        ContentBlock::Document(doc) => {
            let source = &doc["source"];
            match (source["type"].as_str(), source["data"].as_str()) {
                (Some("text"), Some(data)) => count_text(data),
                _ => IMAGE_TOKENS,
            }
        }
        // Server tool calls/results and future types: count their JSON.
        ContentBlock::Other(value) => count_text(&value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_count_tokens_request;
    use serde_json::{Value, json};

    fn count(body: Value) -> u64 {
        match parse_count_tokens_request(body.to_string().as_bytes()) {
            Ok(req) => count_input_tokens(&req),
            Err(e) => panic!("{e}"),
        }
    }

    fn base() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "Hello, world!"}]})
    }

    #[test]
    fn known_strings_have_their_exact_o200k_count() {
        warm_up();
        assert_eq!(count_text("Hello, world!"), 4);
        assert_eq!(count_text("hello world"), 2);
        assert_eq!(count_text(""), 0);
        // Special-token text must not panic or be treated as special.
        assert!(count_text("<|endoftext|>") > 1);
    }

    #[test]
    fn minimal_request_is_text_plus_overheads() {
        assert_eq!(count(base()), REQUEST_OVERHEAD + MESSAGE_OVERHEAD + 4);
    }

    #[test]
    fn system_and_tools_increase_the_count() {
        let plain = count(base());
        let mut with_system = base();
        with_system["system"] = json!([{"type": "text", "text": "You are a careful assistant."}]);
        let with_system_count = count(with_system.clone());
        assert!(with_system_count > plain + MESSAGE_OVERHEAD);
        let mut with_tools = with_system;
        with_tools["tools"] = json!([{"name": "read_file", "description": "Read a file from disk",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]);
        assert!(count(with_tools) > with_system_count + TOOL_OVERHEAD);
    }

    #[test]
    fn blocks_are_counted() {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "hello world", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hello world", "signature": "s"},
                {"type": "tool_use", "id": "t", "name": "Read", "input": {"p": 1}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "hello world"}]}
        ]});
        let expected = REQUEST_OVERHEAD
            + 3 * MESSAGE_OVERHEAD
            + 2
            + IMAGE_TOKENS
            + 2
            + count_text("Read")
            + count_text("{\"p\":1}")
            + 2;
        assert_eq!(count(body), expected);
    }
}
