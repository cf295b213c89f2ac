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
//!
//! Linear time. BPE merging is quadratic in the length of one regex piece,
//! and the tokenizer's regex keeps a long run of letters, punctuation or
//! space in one piece: a 1 MB "word" took minutes. So text is encoded in
//! segments (see `segments`), cut only where the regex starts a new piece
//! anyway, which keeps the count exact, except that a stretch of more than
//! [`MAX_STRETCH`] bytes with no such place (no digit, no space before a
//! word, no line start: not prose or code) is cut every [`MAX_STRETCH`]
//! bytes, which can shift its count by about a token per cut. Between
//! segments the caller's cancel flag is checked, so an abandoned count stops
//! within one segment.

use super::anthropic::{Content, ContentBlock, CountTokensRequest, Message, System, Tool};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use tiktoken_rs::CoreBPE;

/// Tokens added once per request.
pub const REQUEST_OVERHEAD: u64 = 3;
/// Tokens added per message.
pub const MESSAGE_OVERHEAD: u64 = 4;
/// Tokens added per tool definition.
pub const TOOL_OVERHEAD: u64 = 8;
/// Tokens charged per image (and per base64 document).
pub const IMAGE_TOKENS: u64 = 1_600;
/// Longest stretch of text without a piece boundary encoded in one go
/// (bytes). BPE cost grows with its square; 128 keeps a 1 MB word well
/// under a second even in a debug build.
pub const MAX_STRETCH: usize = 128;
/// Size from which a segment ends at the next piece boundary (bytes): how
/// much work happens between two looks at the cancel flag.
const SEGMENT: usize = 16 * 1024;

/// The count was abandoned: the cancel flag was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

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
    Counter::new(&AtomicBool::new(false))
        .text(text)
        .unwrap_or_default()
}

/// Estimated input tokens of a `count_tokens` request; `Err` as soon as
/// `cancel` is seen set.
pub fn count_input_tokens(req: &CountTokensRequest, cancel: &AtomicBool) -> Result<u64, Cancelled> {
    Counter::new(cancel).parts(req.system.as_ref(), &req.messages, req.tools.as_deref())
}

/// One count, with the flag that abandons it.
struct Counter<'a> {
    bpe: Option<&'static CoreBPE>,
    cancel: &'a AtomicBool,
}

impl<'a> Counter<'a> {
    fn new(cancel: &'a AtomicBool) -> Self {
        Counter { bpe: bpe(), cancel }
    }

    fn parts(
        &self,
        system: Option<&System>,
        messages: &[Message],
        tools: Option<&[Tool]>,
    ) -> Result<u64, Cancelled> {
        let mut total = REQUEST_OVERHEAD;
        if let Some(system) = system {
            total += MESSAGE_OVERHEAD + self.content(system)?;
        }
        for message in messages {
            total += MESSAGE_OVERHEAD + self.content(&message.content)?;
        }
        for tool in tools.unwrap_or_default() {
            total += TOOL_OVERHEAD + self.text(&tool.name)?;
            if let Some(description) = &tool.description {
                total += self.text(description)?;
            }
            if let Some(schema) = &tool.input_schema {
                total += self.text(&schema.to_string())?;
            }
        }
        Ok(total)
    }

    fn content(&self, content: &Content) -> Result<u64, Cancelled> {
        match content {
            Content::Text(text) => self.text(text),
            Content::Blocks(blocks) => blocks.iter().map(|b| self.block(b)).sum(),
        }
    }

    fn block(&self, block: &ContentBlock) -> Result<u64, Cancelled> {
        match block {
            ContentBlock::Text(t) => self.text(&t.text),
            ContentBlock::Image(_) => Ok(IMAGE_TOKENS),
            ContentBlock::ToolUse(t) => Ok(self.text(&t.name)? + self.text(&t.input.to_string())?),
            ContentBlock::ToolResult(r) => r.content.as_ref().map_or(Ok(0), |c| self.content(c)),
            ContentBlock::Thinking(t) => self.text(&t.thinking),
            ContentBlock::RedactedThinking(_) => Ok(0),
            ContentBlock::Document(doc) => {
                let source = &doc["source"];
                match (source["type"].as_str(), source["data"].as_str()) {
                    (Some("text"), Some(data)) => self.text(data),
                    _ => Ok(IMAGE_TOKENS),
                }
            }
            // Server tool calls/results and future types: count their JSON.
            ContentBlock::Other(value) => self.text(&value.to_string()),
        }
    }

    fn text(&self, text: &str) -> Result<u64, Cancelled> {
        let Some(bpe) = self.bpe else {
            return Ok((text.chars().count() as u64).div_ceil(4));
        };
        let mut total = 0;
        for segment in segments(text, SEGMENT) {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Cancelled);
            }
            total += bpe.encode_ordinary(segment).len() as u64;
        }
        Ok(total)
    }
}

/// Cuts `text` into segments the BPE can encode one after another with the
/// same result as the whole: a segment ends, once it has `soft` bytes, at
/// the next position where the `o200k_base` regex always starts a new
/// piece. Those are: before a space or tab (not a line break) followed by
/// something other than space; after a line break, before something other
/// than space or `/` (a punctuation piece swallows `[\r\n/]*`); and at
/// each edge of a run of digits (digits are pieces of their own). A
/// stretch of [`MAX_STRETCH`] bytes without such a position is cut where
/// it stands, so no piece the BPE sees is longer.
fn segments(text: &str, soft: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut chars = rest.char_indices().peekable();
        let mut prev: Option<char> = None;
        let mut last_boundary = 0;
        while let Some((i, c)) = chars.next() {
            let next = chars.peek().map(|&(_, n)| n);
            if let Some(prev) = prev {
                if piece_starts(prev, c, next) {
                    last_boundary = i;
                    if i >= soft {
                        return Some(take(&mut rest, i));
                    }
                } else if i - last_boundary >= MAX_STRETCH {
                    return Some(take(&mut rest, i));
                }
            }
            prev = Some(c);
        }
        let all = rest.len();
        Some(take(&mut rest, all))
    })
}

/// Whether the `o200k_base` regex starts a piece at `c`, whatever came
/// before `prev` (see [`segments`]).
fn piece_starts(prev: char, c: char, next: Option<char>) -> bool {
    let newline = |c: char| c == '\n' || c == '\r';
    (c.is_whitespace() && !newline(c) && next.is_some_and(|n| !n.is_whitespace()))
        || (newline(prev) && !c.is_whitespace() && c != '/')
        || prev.is_numeric() != c.is_numeric()
}

/// Splits `rest` at `at`, returning the head.
fn take<'t>(rest: &mut &'t str, at: usize) -> &'t str {
    let (head, tail) = rest.split_at(at);
    *rest = tail;
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_count_tokens_request;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn whole(text: &str) -> u64 {
        bpe().map_or(0, |bpe| bpe.encode_ordinary(text).len() as u64)
    }

    fn segmented(text: &str, soft: usize) -> u64 {
        let bpe = bpe().expect("o200k_base loads");
        segments(text, soft)
            .map(|s| bpe.encode_ordinary(s).len() as u64)
            .sum()
    }

    fn count(body: Value) -> u64 {
        match parse_count_tokens_request(body.to_string().as_bytes()) {
            Ok(req) => count_input_tokens(&req, &AtomicBool::new(false)).unwrap_or_default(),
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

    #[test]
    fn segments_cover_the_text_and_cut_long_stretches() {
        let text = format!("ab {} 12", "x".repeat(300));
        let pieces: Vec<&str> = segments(&text, 0).collect();
        assert_eq!(pieces.concat(), text);
        let x = |n: usize| "x".repeat(n);
        assert_eq!(
            pieces,
            ["ab", &format!(" {}", x(127)), &x(128), &x(45), " ", "12"]
        );
        assert_eq!(segments("", 0).count(), 0);
    }

    #[test]
    fn a_megabyte_word_counts_in_linear_time_and_can_be_cancelled() {
        warm_up();
        let word = "abcdefghijklmnopqrstuvwxyz".repeat(40_330);
        let started = std::time::Instant::now();
        let tokens = count_text(&word);
        let elapsed = started.elapsed();
        assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
        // What the tokenizer makes of such text: 2 to 32 bytes a token.
        let bytes = word.len() as u64;
        assert!((bytes / 32..bytes / 2).contains(&tokens), "{tokens}");
        let body = json!({"model": "m", "messages": [{"role": "user", "content": word}]});
        let req = parse_count_tokens_request(body.to_string().as_bytes()).expect("valid");
        assert_eq!(
            count_input_tokens(&req, &AtomicBool::new(true)),
            Err(Cancelled)
        );
    }

    #[test]
    fn segmenting_normal_text_changes_nothing() {
        let fixture = include_str!("fixtures/claude_code_request.json");
        let prose = "It's 10:30 -- the quick brown fox (aged 3) jumps over the lazy dog.\n\n";
        let code = "fn main() {\n    let x = vec![1, 2, 3];\n\tprintln!(\"{x:?}\");\n}\n// done: https://example.com/a/b?q=1\n";
        for text in [fixture, prose, code, &prose.repeat(2_000)] {
            assert_eq!(
                segmented(text, 0),
                whole(text),
                "{}",
                &text[..40.min(text.len())]
            );
            assert_eq!(segmented(text, 64), whole(text));
            assert_eq!(count_text(text), whole(text));
        }
    }

    proptest! {
        /// Cutting at every boundary `segments` may use gives the
        /// tokenizer's own count (texts shorter than MAX_STRETCH: no forced cut).
        #[test]
        fn boundaries_are_where_the_tokenizer_starts_pieces(
            parts in prop::collection::vec(prop::sample::select(vec![
                "a", "Bc", "é", "e\u{301}", "中文", "1", "23", "\u{663}", " ", "  ", "\t", "\n",
                "\r\n", "/", "=", "'s", "'", ".", "\u{a0}", "_", "-", "(", "Ⅻ", "!?", "\u{1F600}",
            ]), 0..40)
        ) {
            let text = parts.concat();
            prop_assume!(text.len() < MAX_STRETCH);
            prop_assert_eq!(segmented(&text, 0), whole(&text), "{:?}", text);
        }
    }
}
