//! Anthropic's request rules that the serde types cannot express: value
//! ranges, tool definitions, `tool_use` / `tool_result` pairing, thinking
//! budgets, image media types. Pure; never does I/O.
//!
//! Each error is an [`InvalidRequest`] whose path names the field the way
//! Anthropic does (`messages.2.content.0.tool_use_id`). The checks run in
//! one pass over the parsed request and allocate only on failure, for a
//! tool-name set when a request has many tools, and for the ids of one
//! assistant turn's tool calls.
//!
//! Lenient where Anthropic itself decides what is valid, so passthrough
//! stays faithful: unknown block types and fields, server tools (a `type`
//! other than `custom`: `web_search_20250305`, `bash_20250124`, …) keep
//! their own rules, an unknown `thinking.type` passes, `output_config` is
//! left to the provider (or to `to_openai`, which refuses what it cannot
//! map).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::InvalidRequest;
use super::anthropic::{
    Content, ContentBlock, CountTokensRequest, ImageSource, Message, MessagesRequest, Role, Tool,
    ToolChoice,
};

/// Image media types Anthropic accepts.
pub const IMAGE_MEDIA_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];
/// Smallest `thinking.budget_tokens` Anthropic accepts.
pub const MIN_THINKING_BUDGET: u64 = 1024;
/// Longest client tool name.
const MAX_TOOL_NAME: usize = 64;

/// What the client's `anthropic-beta` header changes in the rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Betas {
    /// `interleaved-thinking-*`: the thinking budget covers a whole turn
    /// and may exceed `max_tokens`.
    pub interleaved_thinking: bool,
}

impl Betas {
    /// Reads `anthropic-beta` header values (each a comma-separated list).
    pub fn from_headers<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut betas = Betas::default();
        for beta in values.into_iter().flat_map(|v| v.split(',')) {
            if beta.trim().starts_with("interleaved-thinking-") {
                betas.interleaved_thinking = true;
            }
        }
        betas
    }
}

/// Rules for a `/v1/messages` body.
pub fn messages_request(req: &MessagesRequest, betas: Betas) -> Result<(), InvalidRequest> {
    model(&req.model)?;
    if req.max_tokens == 0 {
        return Err(InvalidRequest::new("max_tokens", "must be at least 1"));
    }
    unit_interval("temperature", req.temperature)?;
    unit_interval("top_p", req.top_p)?;
    let limit = (!betas.interleaved_thinking).then_some(req.max_tokens);
    thinking(req.thinking.as_ref(), limit)?;
    tools(req.tools.as_deref(), req.tool_choice.as_ref())?;
    messages(&req.messages)
}

/// Rules for a `/v1/messages/count_tokens` body (no `max_tokens`, no
/// sampling parameters).
pub fn count_tokens_request(req: &CountTokensRequest) -> Result<(), InvalidRequest> {
    model(&req.model)?;
    thinking(req.thinking.as_ref(), None)?;
    tools(req.tools.as_deref(), req.tool_choice.as_ref())?;
    messages(&req.messages)
}

fn model(model: &str) -> Result<(), InvalidRequest> {
    if model.trim().is_empty() {
        return Err(InvalidRequest::new("model", "must not be empty"));
    }
    Ok(())
}

fn unit_interval(field: &str, value: Option<f64>) -> Result<(), InvalidRequest> {
    match value {
        Some(v) if !(0.0..=1.0).contains(&v) => Err(InvalidRequest::new(
            field,
            format!("must be between 0 and 1, got {v}"),
        )),
        _ => Ok(()),
    }
}

/// `thinking`: for `type: "enabled"`, `budget_tokens` is an integer of at
/// least [`MIN_THINKING_BUDGET`] and below `max_tokens` (when given).
fn thinking(thinking: Option<&Value>, max_tokens: Option<u32>) -> Result<(), InvalidRequest> {
    let Some(thinking) = thinking.filter(|t| !t.is_null()) else {
        return Ok(());
    };
    let Some(object) = thinking.as_object() else {
        return Err(InvalidRequest::new("thinking", "must be an object"));
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(InvalidRequest::new("thinking.type", "must be a string")),
        None => return Err(InvalidRequest::new("thinking.type", "is required")),
    };
    if kind != "enabled" {
        return Ok(());
    }
    let budget = match object.get("budget_tokens") {
        Some(budget) => budget.as_u64().ok_or_else(|| {
            InvalidRequest::new("thinking.budget_tokens", "must be a non-negative integer")
        })?,
        None => return Err(InvalidRequest::new("thinking.budget_tokens", "is required")),
    };
    if budget < MIN_THINKING_BUDGET {
        return Err(InvalidRequest::new(
            "thinking.budget_tokens",
            format!("must be at least {MIN_THINKING_BUDGET}, got {budget}"),
        ));
    }
    if let Some(max) = max_tokens
        && budget >= u64::from(max)
    {
        return Err(InvalidRequest::new(
            "thinking.budget_tokens",
            format!("must be less than max_tokens ({max}), got {budget}"),
        ));
    }
    Ok(())
}

/// A client tool (as opposed to a server tool, which has its own `type`).
pub(crate) fn is_client_tool(tool: &Tool) -> bool {
    matches!(tool.kind.as_deref(), None | Some("custom"))
}

fn valid_tool_name(name: &str) -> bool {
    (1..=MAX_TOOL_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn tools(tools: Option<&[Tool]>, choice: Option<&ToolChoice>) -> Result<(), InvalidRequest> {
    let tools = tools.unwrap_or_default();
    for (i, tool) in tools.iter().enumerate() {
        if !is_client_tool(tool) {
            continue;
        }
        if !valid_tool_name(&tool.name) {
            return Err(InvalidRequest::new(
                format!("tools.{i}.name"),
                format!(
                    "must match ^[a-zA-Z0-9_-]{{1,{MAX_TOOL_NAME}}}$, got {:?}",
                    tool.name
                ),
            ));
        }
        match &tool.input_schema {
            None => {
                return Err(InvalidRequest::new(
                    format!("tools.{i}.input_schema"),
                    "is required",
                ));
            }
            Some(Value::Object(schema)) => {
                if schema.get("type").and_then(Value::as_str) != Some("object") {
                    return Err(InvalidRequest::new(
                        format!("tools.{i}.input_schema.type"),
                        "must be \"object\"",
                    ));
                }
            }
            Some(_) => {
                return Err(InvalidRequest::new(
                    format!("tools.{i}.input_schema"),
                    "must be a JSON object",
                ));
            }
        }
    }
    if let Some((i, tool)) = first_duplicate(tools) {
        return Err(InvalidRequest::new(
            format!("tools.{i}.name"),
            format!(
                "duplicate tool name {:?}; tool names must be unique",
                tool.name
            ),
        ));
    }
    if let Some(ToolChoice::Tool { name, .. }) = choice
        && !tools.iter().any(|t| &t.name == name)
    {
        return Err(InvalidRequest::new(
            "tool_choice.name",
            format!("no tool named {name:?} in tools"),
        ));
    }
    Ok(())
}

/// Tools up to which duplicate names are found by comparing pairs (no
/// allocation); above, with a set.
const PAIRWISE_TOOLS: usize = 16;

/// The first tool whose name an earlier tool already has.
fn first_duplicate(tools: &[Tool]) -> Option<(usize, &Tool)> {
    if tools.len() <= PAIRWISE_TOOLS {
        return tools
            .iter()
            .enumerate()
            .find(|(i, tool)| tools.iter().take(*i).any(|t| t.name == tool.name));
    }
    let mut seen = HashSet::with_capacity(tools.len());
    tools
        .iter()
        .enumerate()
        .find(|(_, tool)| !seen.insert(tool.name.as_str()))
}

/// The `tool_use` ids of one assistant turn and whether each was answered.
#[derive(Default)]
struct ToolUses<'a> {
    /// (id, index of its message, answered).
    uses: Vec<(&'a str, usize, bool)>,
    /// Where the next answer is expected (answers usually come in order).
    cursor: usize,
    /// id → position, built only when a turn has many calls.
    index: Option<HashMap<&'a str, usize>>,
}

/// Calls in one turn above which answers are looked up in a map.
const LINEAR_LOOKUP: usize = 32;

impl<'a> ToolUses<'a> {
    fn clear(&mut self) {
        self.uses.clear();
        self.cursor = 0;
        self.index = None;
    }

    fn push(&mut self, id: &'a str, message: usize) {
        self.uses.push((id, message, false));
    }

    /// Marks `id` answered; `false` when the turn has no such call.
    fn answer(&mut self, id: &str) -> bool {
        let found = if self.uses.get(self.cursor).is_some_and(|u| u.0 == id) {
            Some(self.cursor)
        } else if self.uses.len() <= LINEAR_LOOKUP {
            self.uses.iter().position(|u| u.0 == id)
        } else {
            let uses = &self.uses;
            self.index
                .get_or_insert_with(|| uses.iter().enumerate().map(|(i, u)| (u.0, i)).collect())
                .get(id)
                .copied()
        };
        let Some((i, used)) = found.and_then(|i| Some(i).zip(self.uses.get_mut(i))) else {
            return false;
        };
        used.2 = true;
        self.cursor = i + 1;
        true
    }

    /// The error for calls left unanswered by the user turn that followed.
    fn check_answered(&self) -> Result<(), InvalidRequest> {
        let mut missing = self.uses.iter().filter(|u| !u.2).peekable();
        let Some(&(_, message, _)) = missing.peek() else {
            return Ok(());
        };
        let ids: Vec<&str> = missing.map(|u| u.0).collect();
        Err(InvalidRequest::new(
            format!("messages.{message}"),
            format!(
                "`tool_use` ids were found without `tool_result` blocks immediately after: {}. \
                 Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                ids.join(", ")
            ),
        ))
    }
}

/// Pairing of `tool_use` and `tool_result` across turns (consecutive
/// messages of one role form one turn, as Anthropic combines them), and
/// image media types.
fn messages(messages: &[Message]) -> Result<(), InvalidRequest> {
    let mut calls = ToolUses::default();
    let mut previous: Option<Role> = None;
    for (i, message) in messages.iter().enumerate() {
        if previous != Some(message.role) && message.role == Role::Assistant {
            // A new assistant turn: the user turn before it had its chance.
            calls.check_answered()?;
            calls.clear();
        }
        previous = Some(message.role);
        let Content::Blocks(blocks) = &message.content else {
            continue;
        };
        for (j, block) in blocks.iter().enumerate() {
            match block {
                ContentBlock::ToolUse(call) if message.role == Role::Assistant => {
                    calls.push(&call.id, i);
                }
                ContentBlock::ToolResult(result) if message.role == Role::User => {
                    if !calls.answer(&result.tool_use_id) {
                        return Err(InvalidRequest::new(
                            format!("messages.{i}.content.{j}.tool_use_id"),
                            format!(
                                "unexpected `tool_use_id` found in `tool_result` blocks: {}. \
                                 Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
                                result.tool_use_id
                            ),
                        ));
                    }
                    if let Some(Content::Blocks(inner)) = &result.content {
                        for (k, block) in inner.iter().enumerate() {
                            image(block, || format!("messages.{i}.content.{j}.content.{k}"))?;
                        }
                    }
                }
                other => image(other, || format!("messages.{i}.content.{j}"))?,
            }
        }
    }
    if previous == Some(Role::User) {
        calls.check_answered()?;
    }
    Ok(())
}

/// An image block's base64 `media_type` must be one Anthropic accepts.
fn image(block: &ContentBlock, path: impl FnOnce() -> String) -> Result<(), InvalidRequest> {
    if let ContentBlock::Image(image) = block
        && let ImageSource::Base64 { media_type, .. } = &image.source
        && !IMAGE_MEDIA_TYPES.contains(&media_type.as_str())
    {
        return Err(InvalidRequest::new(
            format!("{}.source.media_type", path()),
            format!(
                "must be one of {}, got {media_type:?}",
                IMAGE_MEDIA_TYPES.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
