//! Counting output tokens in a streamed response, chunk by chunk, without
//! building events: the load generator must stay cheaper than what it
//! measures, so this looks at lines, not JSON, except for the one line that
//! carries the final usage.
//!
//! Anthropic streams: one `event: content_block_delta` per delta, and the
//! final `message_delta` carries `usage.output_tokens`. OpenAI streams (for
//! `--endpoint raw --stream`): one `data:` chunk with `"delta":{"content"`
//! per delta, and a usage chunk with `completion_tokens` when asked for. The
//! usage figure wins when present; otherwise the delta count stands in.
//! Real parsing lives in `upstream/sse.rs` and `protocol/`; this never does.

/// Scans SSE bytes for token counts; reused across requests by one worker.
#[derive(Debug, Default)]
pub struct TokenCounter {
    /// The current, incomplete line (chunks split lines anywhere).
    line: Vec<u8>,
    deltas: u64,
    usage: Option<u64>,
}

impl TokenCounter {
    pub fn reset(&mut self) {
        self.line.clear();
        self.deltas = 0;
        self.usage = None;
    }

    pub fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                self.scan_line(&chunk[..end]);
            } else {
                self.line.extend_from_slice(&chunk[..end]);
                let line = std::mem::take(&mut self.line);
                self.scan_line(&line);
                self.line = line;
                self.line.clear();
            }
            chunk = &chunk[end + 1..];
        }
        self.line.extend_from_slice(chunk);
    }

    /// Output tokens: the usage figure if the stream carried one, else the
    /// number of content deltas.
    pub fn total(&self) -> u64 {
        self.usage.unwrap_or(self.deltas)
    }

    fn scan_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(event) = line.strip_prefix(b"event:") {
            if event.trim_ascii() == b"content_block_delta" {
                self.deltas += 1;
            }
        } else if let Some(data) = line.strip_prefix(b"data:") {
            if contains(data, b"\"delta\":{\"content\"") {
                self.deltas += 1;
            }
            if contains(data, b"\"output_tokens\"") || contains(data, b"\"completion_tokens\"") {
                self.usage = usage_tokens(data).or(self.usage);
            }
        }
    }
}

/// Reads `usage.output_tokens` (Anthropic) or `usage.completion_tokens`
/// (OpenAI) from one `data:` payload. `message_start` also carries an
/// `output_tokens` (usually 1); the later `message_delta` overrides it.
fn usage_tokens(data: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Payload {
        usage: Option<Usage>,
        message: Option<Message>,
    }
    #[derive(serde::Deserialize)]
    struct Message {
        usage: Option<Usage>,
    }
    #[derive(serde::Deserialize)]
    struct Usage {
        output_tokens: Option<u64>,
        completion_tokens: Option<u64>,
    }
    let payload: Payload = serde_json::from_slice(data.trim_ascii()).ok()?;
    let usage = payload
        .usage
        .or_else(|| payload.message.and_then(|m| m.usage))?;
    usage.output_tokens.or(usage.completion_tokens)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANTHROPIC: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"b\"}}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn anthropic_usage_wins_over_delta_count_at_any_split() {
        for split in 0..ANTHROPIC.len() {
            let mut c = TokenCounter::default();
            c.feed(&ANTHROPIC.as_bytes()[..split]);
            c.feed(&ANTHROPIC.as_bytes()[split..]);
            assert_eq!(c.deltas, 2, "split at {split}");
            assert_eq!(c.total(), 7, "split at {split}");
        }
    }

    #[test]
    fn openai_deltas_are_counted_and_usage_read() {
        let mut c = TokenCounter::default();
        c.feed(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n");
        c.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\r\n\r\n");
        c.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"y\"}}]}\n\n");
        assert_eq!(c.total(), 2);
        c.feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n");
        assert_eq!(c.total(), 9);
        c.reset();
        assert_eq!(c.total(), 0);
    }
}
