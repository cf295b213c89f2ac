//! Signed thinking across providers.
//!
//! An Anthropic-native provider signs its `thinking` blocks (and encrypts
//! `redacted_thinking`); another provider rejects a conversation that carries
//! signatures it did not issue. Before a body goes to an Anthropic-format
//! provider, blocks whose signature that provider would not accept are
//! removed; OpenAI-format providers get thinking as `reasoning_content`
//! (see `to_openai`). Pure functions over the JSON body.

use serde_json::{Map, Value};

/// The signature of a thinking block: `signature`, or `data` for redacted thinking.
fn signature_of(block: &Value) -> Option<&str> {
    match block.get("type")?.as_str()? {
        "thinking" => Some(block.get("signature").and_then(Value::as_str).unwrap_or("")),
        "redacted_thinking" => Some(block.get("data").and_then(Value::as_str).unwrap_or("")),
        _ => None,
    }
}

/// Whether any assistant message carries thinking blocks.
pub fn has_thinking(body: &Map<String, Value>) -> bool {
    messages(body).any(|blocks| blocks.iter().any(|b| signature_of(b).is_some()))
}

fn messages(body: &Map<String, Value>) -> impl Iterator<Item = &Vec<Value>> {
    body.get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
        .filter_map(|m| m.get("content").and_then(Value::as_array))
}

/// Removes thinking blocks whose signature `accept` rejects (an empty
/// signature is never accepted). Returns how many were removed.
pub fn strip_unaccepted(body: &mut Map<String, Value>, accept: impl Fn(&str) -> bool) -> usize {
    let mut removed = 0;
    let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) else {
        return 0;
    };
    for message in messages {
        if message.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        let Some(blocks) = message.get_mut("content").and_then(Value::as_array_mut) else {
            continue;
        };
        let before = blocks.len();
        blocks.retain(|b| match signature_of(b) {
            Some(sig) => !sig.is_empty() && accept(sig),
            None => true,
        });
        removed += before - blocks.len();
    }
    removed
}

/// Signatures carried by an Anthropic message (a response body).
pub fn signatures_in_message(message: &Value) -> Vec<&str> {
    message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(signature_of)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The signature an Anthropic stream event carries, if any.
pub fn signature_in_event(event: &Value) -> Option<&str> {
    match event.get("type")?.as_str()? {
        "content_block_delta" => {
            let delta = event.get("delta")?;
            (delta.get("type")?.as_str()? == "signature_delta")
                .then(|| delta.get("signature")?.as_str())?
        }
        "content_block_start" => {
            let block = event.get("content_block")?;
            (block.get("type")?.as_str()? == "redacted_thinking")
                .then(|| block.get("data")?.as_str())?
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Map<String, Value> {
        json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "a", "signature": "sig-a"},
                {"type": "thinking", "thinking": "b", "signature": ""},
                {"type": "redacted_thinking", "data": "enc-b"},
                {"type": "text", "text": "answer"}
            ]}
        ]})
        .as_object()
        .cloned()
        .unwrap()
    }

    #[test]
    fn strips_rejected_and_unsigned_blocks_only() {
        let mut b = body();
        assert!(has_thinking(&b));
        let removed = strip_unaccepted(&mut b, |sig| sig == "sig-a");
        assert_eq!(removed, 2);
        let content = &b["messages"][1]["content"];
        assert_eq!(content.as_array().unwrap().len(), 2);
        assert_eq!(content[0]["signature"], "sig-a");
        assert_eq!(content[1]["type"], "text");
        assert_eq!(b["messages"][0]["content"], "q");
    }

    #[test]
    fn finds_signatures_in_messages_and_events() {
        let b = body();
        assert_eq!(signatures_in_message(&b["messages"][1]), ["sig-a", "enc-b"]);
        let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s1"}});
        assert_eq!(signature_in_event(&delta), Some("s1"));
        let text = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}});
        assert_eq!(signature_in_event(&text), None);
    }
}
