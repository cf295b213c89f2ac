//! OpenAI chat-completion stream → Anthropic Messages stream events. Pure
//! state machine; never does I/O. SSE framing is `upstream/sse.rs`'s job:
//! [`StreamConverter::push`] takes one `data:` payload at a time.
//!
//! Guarantees: block indices are contiguous from 0; exactly one block is
//! open at a time (switching kind closes the previous one); tool arguments
//! are streamed as `input_json_delta` fragments as they arrive, not
//! buffered; after [`StreamConverter::finish`] every opened block is stopped
//! and the last event is `message_stop`. No input makes it panic.
//!
//! Interleaved tool calls. OpenAI keys tool-call fragments by `index` and
//! may interleave them; Anthropic blocks cannot be reopened. So the tool
//! block that is open stays open until its arguments form a complete JSON
//! value. Anything arriving meanwhile (another call's fragments, text,
//! thinking) is queued in arrival order, and flushed as soon as the open
//! call is complete, or at the end of the stream. Sequential calls (the
//! usual case) therefore stream live; only genuinely interleaved ones wait.
//! Completeness is tracked incrementally (`json_scan::JsonScan`) and a
//! queued call is marked on the call itself, so a stream costs time linear
//! in its size however its calls interleave.
//! Argument fragments for a call whose block was already closed could only
//! follow a complete JSON value; they are dropped.
//!
//! Broken streams are never reported as complete answers: a chunk that is
//! not JSON or carries `error` is an error ([`StreamConverter::push`]); so
//! is a chunk without choices before the first chunk with one (usage-only
//! chunks after it are normal, and Azure's `prompt_filter_results` opening
//! chunk is skipped), and `[DONE]` before any choice. At the end of the
//! upstream body, [`StreamConverter::end`] refuses a stream that had
//! neither `[DONE]` nor a `finish_reason`. The caller then sends an `error`
//! event instead of `message_delta` + `message_stop`. [`opening`] applies
//! the same rules to a stream's first chunks, so dispatch can fail over
//! before anything reached the client.
//!
//! Not emitted here: `ping` (the server sends [`Event::ping`] after
//! `message_start` and as keep-alive). Thinking signatures are never
//! fabricated: a `signature_delta` is sent only when the upstream delta
//! carried a `signature`. Only choice 0 is read. A tool call without an
//! `index` (Gemini) is keyed by its position in the chunk, and an `id` that
//! differs from the one known for that key starts a new call.

use super::UpstreamInvalid;
use super::anthropic::{Usage, random_id};
use super::from_openai::{error_message, map_stop_reason, map_usage, tool_use_id};
use super::json_scan::JsonScan;
use super::openai::{ChatChunk, ChatUsage, ToolCallDelta};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};

/// One Anthropic SSE event. `data` always carries `"type": name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: &'static str,
    pub data: Value,
}

impl Event {
    /// `data` gets `"type": name` as its first key.
    fn new(name: &'static str, data: Value) -> Self {
        let mut map = match data {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        map.shift_insert(0, "type".to_owned(), Value::String(name.to_owned()));
        Event {
            name,
            data: Value::Object(map),
        }
    }

    /// Appends `event: NAME\ndata: {json}\n\n` to `out`, serializing
    /// straight into it.
    pub fn write_sse(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Writing a `Value` (string keys only) into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, &self.data);
        out.extend_from_slice(b"\n\n");
    }

    /// [`Event::write_sse`] into a new string, for tests to compare.
    #[cfg(test)]
    pub fn to_sse(&self) -> String {
        let mut out = Vec::with_capacity(64);
        self.write_sse(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn ping() -> Self {
        Event::new("ping", json!({}))
    }
}

/// What the stream converter needs to know about the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamContext {
    /// The model alias the client asked for, echoed in `message_start`.
    pub model: String,
    /// The request's `stop_sequences`, for the `stop_sequence` heuristic.
    pub stop_sequences: Vec<String>,
    /// Estimated input tokens, shown in `message_start` until the upstream
    /// reports real usage.
    pub input_tokens: u64,
    /// Seed for the message and tool ids; `None` means random. Tests set it
    /// to get reproducible output.
    pub id_seed: Option<u64>,
}

/// The block currently open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking,
    Tool(usize),
}

/// Work held back while an incomplete tool block is open.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Text(String),
    Thinking(String),
    Tool(usize),
}

#[derive(Debug, Default)]
struct ToolCall {
    upstream_id: Option<String>,
    name: Option<String>,
    /// Our block index once `content_block_start` was sent.
    block: Option<u32>,
    closed: bool,
    /// Whether a `Pending::Tool` for this call waits in the queue (its
    /// later fragments join `unsent` instead of queueing again).
    queued: bool,
    /// The arguments sent so far, to tell when they form a complete value.
    sent: JsonScan,
    /// Arguments received but not sent yet.
    unsent: String,
}

/// Whether a stream's chunks so far open a valid answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// A chunk with a choice: the answer has begun.
    Ready,
    /// A chunk that may precede the first choice (Azure's filter results).
    NeedMore,
}

/// Checks one `data:` payload seen before any chunk with a choice (see the
/// module doc): dispatch commits to a stream only once this says `Ready`.
pub fn opening(data: &str) -> Result<Opening, UpstreamInvalid> {
    let data = data.trim();
    if data.is_empty() {
        return Ok(Opening::NeedMore);
    }
    if data == "[DONE]" {
        return Err(UpstreamInvalid::NoChoices);
    }
    /// Only what the check needs, read without allocating.
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        choices: Option<Vec<serde::de::IgnoredAny>>,
        #[serde(default)]
        error: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        prompt_filter_results: Option<serde::de::IgnoredAny>,
    }
    let head: Head = super::from_openai::parse_json(data.as_bytes())?;
    if head.error.is_some() {
        // Rare: parse again for the message.
        let chunk: ChatChunk = super::from_openai::parse_json(data.as_bytes())?;
        return chunk_opening(&chunk);
    }
    match (
        head.choices.is_some_and(|c| !c.is_empty()),
        head.prompt_filter_results,
    ) {
        (true, _) => Ok(Opening::Ready),
        (false, Some(_)) => Ok(Opening::NeedMore),
        (false, None) => Err(UpstreamInvalid::NoChoices),
    }
}

fn chunk_opening(chunk: &ChatChunk) -> Result<Opening, UpstreamInvalid> {
    if let Some(error) = &chunk.error {
        return Err(UpstreamInvalid::Error(error_message(error)));
    }
    match (chunk.choices.is_empty(), &chunk.prompt_filter_results) {
        (false, _) => Ok(Opening::Ready),
        (true, Some(_)) => Ok(Opening::NeedMore),
        (true, None) => Err(UpstreamInvalid::NoChoices),
    }
}

/// Converts one upstream stream. Create one per response.
#[derive(Debug)]
pub struct StreamConverter {
    ctx: StreamContext,
    rng: StdRng,
    message_id: String,
    started: bool,
    finished: bool,
    /// A chunk with a choice has arrived (see [`opening`]).
    opened: bool,
    next_index: u32,
    open: Open,
    tools: Vec<ToolCall>,
    /// Upstream tool-call key → position in `tools`.
    by_key: HashMap<u32, usize>,
    queue: VecDeque<Pending>,
    signature: Option<String>,
    usage: Option<ChatUsage>,
    finish_reason: Option<String>,
    vllm_stop_reason: Option<Value>,
    /// End of the text so far, long enough to match any stop sequence.
    text_tail: String,
}

impl StreamConverter {
    pub fn new(ctx: StreamContext) -> Self {
        let mut rng = match ctx.id_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let message_id = random_id("msg_", &mut rng);
        StreamConverter {
            ctx,
            rng,
            message_id,
            started: false,
            finished: false,
            opened: false,
            next_index: 0,
            open: Open::None,
            tools: Vec::new(),
            by_key: HashMap::new(),
            queue: VecDeque::new(),
            signature: None,
            usage: None,
            finish_reason: None,
            vllm_stop_reason: None,
            text_tail: String::new(),
        }
    }

    /// Usage reported by the upstream so far, in Anthropic terms (zero when
    /// none was reported).
    pub fn usage(&self) -> Usage {
        self.usage.as_ref().map(map_usage).unwrap_or_default()
    }

    /// Whether `message_stop` has been emitted (after `[DONE]` or `finish`).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The `id` sent in `message_start`.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// Feeds one SSE `data:` payload (a JSON chunk or `[DONE]`).
    pub fn push(&mut self, data: &str) -> Result<Vec<Event>, UpstreamInvalid> {
        let data = data.trim();
        if self.finished || data.is_empty() {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            if !self.opened {
                return Err(UpstreamInvalid::NoChoices);
            }
            return Ok(self.finish());
        }
        let chunk: ChatChunk = super::from_openai::parse_json(data.as_bytes())?;
        if let Some(error) = &chunk.error {
            return Err(UpstreamInvalid::Error(error_message(error)));
        }
        if !self.opened {
            match chunk_opening(&chunk)? {
                Opening::NeedMore => return Ok(Vec::new()),
                Opening::Ready => self.opened = true,
            }
        }
        let mut out = Vec::new();
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        self.start(&mut out);
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta;
            if let Some(signature) = delta.signature.as_ref().filter(|s| !s.is_empty()) {
                self.signature = Some(signature.clone());
            }
            if let Some(reasoning) = delta.reasoning_text() {
                let item = Pending::Thinking(reasoning.to_owned());
                self.route(item, &mut out);
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.route(Pending::Text(text), &mut out);
            }
            for (position, call) in delta.tool_calls.into_iter().enumerate() {
                let slot = self.tool_slot(&call, position);
                self.record_fragment(slot, call);
                self.route(Pending::Tool(slot), &mut out);
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
            if choice.stop_reason.is_some() {
                self.vllm_stop_reason = choice.stop_reason;
            }
        }
        Ok(out)
    }

    /// The upstream body ended. A stream that sent `[DONE]` or a
    /// `finish_reason` is complete ([`StreamConverter::finish`]); any other
    /// was cut off, and is an error rather than a complete-looking answer.
    pub fn end(&mut self) -> Result<Vec<Event>, UpstreamInvalid> {
        if self.finished {
            return Ok(Vec::new());
        }
        if self.finish_reason.is_none() {
            return Err(UpstreamInvalid::Truncated);
        }
        Ok(self.finish())
    }

    /// Ends the stream: flushes queued work, closes the open block and sends
    /// `message_delta` + `message_stop`. Idempotent.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.start(&mut out);
        while let Some(item) = self.dequeue() {
            self.emit(item, &mut out);
        }
        // Calls that never got a name were never started: start them now
        // rather than lose their arguments.
        for slot in 0..self.tools.len() {
            let idle = self
                .tools
                .get(slot)
                .is_some_and(|t| t.block.is_none() && !t.closed);
            if idle {
                self.open_tool(slot, &mut out);
            }
        }
        self.close(&mut out);
        let has_tools = self.tools.iter().any(|t| t.block.is_some());
        let (stop_reason, stop_sequence) = map_stop_reason(
            self.finish_reason.as_deref(),
            self.vllm_stop_reason.as_ref(),
            &self.text_tail,
            &self.ctx.stop_sequences,
            has_tools,
        );
        let mut usage = json!({
            "output_tokens": self.usage.as_ref().map_or(0, |u| u.completion_tokens)
        });
        if let (Some(upstream), Value::Object(map)) = (&self.usage, &mut usage) {
            let mapped = map_usage(upstream);
            map.insert("input_tokens".to_owned(), mapped.input_tokens.into());
            if let Some(cached) = mapped.cache_read_input_tokens {
                map.insert("cache_read_input_tokens".to_owned(), cached.into());
            }
        }
        out.push(Event::new(
            "message_delta",
            json!({"delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence}, "usage": usage}),
        ));
        out.push(Event::new("message_stop", json!({})));
        self.finished = true;
        out
    }

    /// An Anthropic `error` event (`overloaded_error`, `api_error`, …).
    pub fn error_event(kind: &str, message: &str) -> Event {
        Event::new(
            "error",
            json!({"error": {"type": kind, "message": message}}),
        )
    }

    fn start(&mut self, out: &mut Vec<Event>) {
        if self.started {
            return;
        }
        self.started = true;
        let mut usage = json!({"input_tokens": self.ctx.input_tokens, "output_tokens": 0});
        if let (Some(upstream), Value::Object(map)) = (&self.usage, &mut usage) {
            let mapped = map_usage(upstream);
            map.insert("input_tokens".to_owned(), mapped.input_tokens.into());
            if let Some(cached) = mapped.cache_read_input_tokens {
                map.insert("cache_read_input_tokens".to_owned(), cached.into());
            }
        }
        out.push(Event::new(
            "message_start",
            json!({"message": {
                "id": self.message_id, "type": "message", "role": "assistant",
                "model": self.ctx.model, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": usage
            }}),
        ));
    }

    fn tool_slot(&mut self, call: &ToolCallDelta, position: usize) -> usize {
        let key = call
            .index
            .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
        if let Some(&slot) = self.by_key.get(&key) {
            let known = self.tools.get(slot).and_then(|t| t.upstream_id.as_deref());
            let same = match (known, call.id.as_deref()) {
                (Some(known), Some(new)) if !new.is_empty() => known == new,
                _ => true,
            };
            if same {
                return slot;
            }
        }
        self.tools.push(ToolCall::default());
        let slot = self.tools.len() - 1;
        self.by_key.insert(key, slot);
        slot
    }

    fn record_fragment(&mut self, slot: usize, call: ToolCallDelta) {
        let Some(tool) = self.tools.get_mut(slot) else {
            return;
        };
        if tool.upstream_id.is_none() {
            tool.upstream_id = call.id.filter(|id| !id.is_empty());
        }
        if let Some(function) = call.function {
            if tool.name.is_none() {
                tool.name = function.name.filter(|n| !n.is_empty());
            }
            if let Some(args) = function.arguments {
                tool.unsent.push_str(&args);
            }
        }
    }

    /// True while an open tool block must not be interrupted.
    fn blocked(&self) -> bool {
        let Open::Tool(slot) = self.open else {
            return false;
        };
        self.tools
            .get(slot)
            .is_some_and(|tool| !tool.sent.is_complete())
    }

    fn route(&mut self, item: Pending, out: &mut Vec<Event>) {
        if let (Pending::Tool(slot), Open::Tool(open)) = (&item, self.open)
            && *slot == open
        {
            self.emit(item, out);
            self.drain(out);
            return;
        }
        self.drain(out);
        if self.blocked() {
            self.enqueue(item);
        } else {
            self.emit(item, out);
        }
    }

    fn drain(&mut self, out: &mut Vec<Event>) {
        while !self.queue.is_empty() && !self.blocked() {
            if let Some(item) = self.dequeue() {
                self.emit(item, out);
            }
        }
    }

    fn enqueue(&mut self, item: Pending) {
        if let Pending::Tool(slot) = &item
            && let Some(tool) = self.tools.get_mut(*slot)
        {
            if tool.queued {
                return; // Its arguments accumulate in the tool's `unsent`.
            }
            tool.queued = true;
        }
        match (self.queue.back_mut(), item) {
            (Some(Pending::Text(queued)), Pending::Text(more))
            | (Some(Pending::Thinking(queued)), Pending::Thinking(more)) => queued.push_str(&more),
            (_, item) => self.queue.push_back(item),
        }
    }

    fn dequeue(&mut self) -> Option<Pending> {
        let item = self.queue.pop_front()?;
        if let Pending::Tool(slot) = &item
            && let Some(tool) = self.tools.get_mut(*slot)
        {
            tool.queued = false;
        }
        Some(item)
    }

    fn emit(&mut self, item: Pending, out: &mut Vec<Event>) {
        match item {
            Pending::Text(text) => {
                if self.open != Open::Text {
                    self.close(out);
                    self.open_block(Open::Text, json!({"type": "text", "text": ""}), out);
                }
                self.remember_text(&text);
                let index = self.next_index.saturating_sub(1);
                out.push(delta(index, json!({"type": "text_delta", "text": text})));
            }
            Pending::Thinking(thinking) => {
                if self.open != Open::Thinking {
                    self.close(out);
                    let block = json!({"type": "thinking", "thinking": "", "signature": ""});
                    self.open_block(Open::Thinking, block, out);
                }
                let index = self.next_index.saturating_sub(1);
                out.push(delta(
                    index,
                    json!({"type": "thinking_delta", "thinking": thinking}),
                ));
            }
            Pending::Tool(slot) => {
                let Some(tool) = self.tools.get_mut(slot) else {
                    return;
                };
                if tool.closed {
                    tool.unsent.clear();
                    return;
                }
                if self.open != Open::Tool(slot) {
                    if tool.name.is_none() {
                        return; // Started once its name is known (or at the end).
                    }
                    self.open_tool(slot, out);
                }
                self.flush_args(slot, out);
            }
        }
    }

    fn open_tool(&mut self, slot: usize, out: &mut Vec<Event>) {
        self.close(out);
        let Some(tool) = self.tools.get(slot) else {
            return;
        };
        let name = tool.name.clone().unwrap_or_default();
        let id = tool_use_id(tool.upstream_id.as_deref(), &mut self.rng);
        let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
        self.open_block(Open::Tool(slot), block, out);
        if let Some(tool) = self.tools.get_mut(slot) {
            tool.block = Some(self.next_index.saturating_sub(1));
        }
        self.flush_args(slot, out);
    }

    fn flush_args(&mut self, slot: usize, out: &mut Vec<Event>) {
        let Some(tool) = self.tools.get_mut(slot) else {
            return;
        };
        let (Some(index), false) = (tool.block, tool.unsent.is_empty()) else {
            return;
        };
        let fragment = std::mem::take(&mut tool.unsent);
        tool.sent.feed(&fragment);
        out.push(delta(
            index,
            json!({"type": "input_json_delta", "partial_json": fragment}),
        ));
    }

    fn open_block(&mut self, kind: Open, block: Value, out: &mut Vec<Event>) {
        out.push(Event::new(
            "content_block_start",
            json!({"index": self.next_index, "content_block": block}),
        ));
        self.next_index += 1;
        self.open = kind;
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        let index = self.next_index.saturating_sub(1);
        match self.open {
            Open::None => return,
            Open::Thinking => {
                if let Some(signature) = self.signature.take() {
                    out.push(delta(
                        index,
                        json!({"type": "signature_delta", "signature": signature}),
                    ));
                }
            }
            Open::Tool(slot) => {
                if let Some(tool) = self.tools.get_mut(slot) {
                    tool.closed = true;
                }
            }
            Open::Text => {}
        }
        out.push(Event::new("content_block_stop", json!({"index": index})));
        self.open = Open::None;
    }

    fn remember_text(&mut self, text: &str) {
        let keep = self
            .ctx
            .stop_sequences
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0);
        if keep == 0 {
            return;
        }
        self.text_tail.push_str(text);
        if self.text_tail.len() > keep * 2 {
            let mut cut = self.text_tail.len() - keep;
            while !self.text_tail.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text_tail.drain(..cut);
        }
    }
}

fn delta(index: u32, delta: Value) -> Event {
    Event::new(
        "content_block_delta",
        json!({"index": index, "delta": delta}),
    )
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
