//! The OpenAI chat answers `examples/mock_upstream.rs` sends, shared (through
//! `#[path]`) with `benches/protocol.rs`, so the conversion benchmark
//! converts exactly what the end-to-end benchmark relays.

use serde_json::{Value, json};

/// The answer text: one word per chunk, `tok0 tok1 …`.
pub fn text(chunks: u32) -> String {
    (0..chunks).map(|i| format!("tok{i} ")).collect()
}

/// One answer of `chunks` words, as a whole body or as a stream.
pub struct Answer<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
    pub chunks: u32,
    pub prompt_tokens: usize,
}

impl Answer<'_> {
    fn usage(&self) -> Value {
        let completion = self.chunks as usize;
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
               "total_tokens": self.prompt_tokens + completion})
    }

    /// The non-streamed body; `text` is [`text`]`(chunks)`, computed once by
    /// the caller.
    pub fn completion(&self, text: &str) -> Value {
        json!({
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": self.usage(),
        })
    }

    /// The stream; `include_usage` adds the usage-only last chunk.
    pub fn stream(&self, include_usage: bool) -> Stream {
        Stream {
            head: format!(
                r#"{{"id":"{}","object":"chat.completion.chunk","created":{},"model":{}"#,
                self.id,
                self.created,
                Value::from(self.model)
            ),
            chunks: self.chunks,
            usage: include_usage.then(|| self.usage().to_string()),
        }
    }
}

/// The frames of one streamed answer, built one at a time.
pub struct Stream {
    /// The chunk object's opening fields, up to `choices`.
    head: String,
    chunks: u32,
    /// The usage JSON, when the client asked for it.
    usage: Option<String>,
}

impl Stream {
    /// SSE frame number `step`: the role chunk (0), one delta per chunk
    /// (`1..=chunks`), the finish chunk, the usage chunk if asked for, then
    /// `[DONE]`; `None` after that.
    pub fn frame(&self, step: u32) -> Option<String> {
        let (head, n) = (&self.head, self.chunks);
        let usage_null = if self.usage.is_some() {
            r#","usage":null"#
        } else {
            ""
        };
        let done = n + 2 + u32::from(self.usage.is_some());
        let data = match step {
            0 => format!(
                r#"{head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]{usage_null}}}"#
            ),
            s if s <= n => format!(
                r#"{head},"choices":[{{"index":0,"delta":{{"content":"tok{} "}},"finish_reason":null}}]{usage_null}}}"#,
                s - 1
            ),
            s if s == n + 1 => format!(
                r#"{head},"choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}]{usage_null}}}"#
            ),
            s if s < done => format!(
                r#"{head},"choices":[],"usage":{}}}"#,
                self.usage.as_deref()?
            ),
            s if s == done => "[DONE]".to_owned(),
            _ => return None,
        };
        Some(format!("data: {data}\n\n"))
    }
}
