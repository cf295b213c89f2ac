//! Anthropic Messages ⇄ OpenAI chat-completions conversion, pure and
//! synchronous: this module and its children never do I/O and never await.
//!
//! Entry points: [`parse_messages_request`] / [`parse_count_tokens_request`]
//! (bytes → a request checked by Anthropic's rules, [`validate`], or an
//! [`InvalidRequest`] naming the field),
//! [`to_openai()`] (request), [`from_openai()`] (non-streaming response),
//! [`StreamConverter`] (streaming response, one SSE `data:` payload at a
//! time) and [`count_input_tokens`].

pub mod anthropic;
pub mod effort;
pub mod from_openai;
mod json_scan;
pub mod openai;
pub mod stream;
pub mod thinking;
pub mod to_openai;
pub mod tokens;
pub mod validate;

pub use anthropic::{CountTokensRequest, MessagesRequest, MessagesResponse};
pub use effort::Effort;
pub use from_openai::{ResponseContext, UpstreamInvalid, from_openai};
pub use stream::{Event, StreamContext, StreamConverter};
pub use to_openai::{Target, to_openai};
pub use tokens::{count_input_tokens, warm_up};
pub use validate::Betas;

use serde::de::DeserializeOwned;

/// Deepest JSON nesting we accept (objects and arrays), the same limit
/// serde_json enforces on its own.
pub const MAX_NESTING: usize = 128;

/// A client request we refuse (HTTP 400 `invalid_request_error`).
/// `path` names the offending field (`messages.0.content`), or `body` when
/// the problem is the document as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InvalidRequest {
    pub path: String,
    pub message: String,
}

impl InvalidRequest {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    fn body(message: impl Into<String>) -> Self {
        Self::new("body", message)
    }
}

/// Parses and validates a `/v1/messages` body under Anthropic's rules
/// without beta features (see [`validate`]).
pub fn parse_messages_request(body: &[u8]) -> Result<MessagesRequest, InvalidRequest> {
    parse_messages_request_with(body, Betas::default())
}

/// [`parse_messages_request`] with the rules the client's
/// `anthropic-beta` features change.
pub fn parse_messages_request_with(
    body: &[u8],
    betas: Betas,
) -> Result<MessagesRequest, InvalidRequest> {
    let req: MessagesRequest = parse_object(body)?;
    non_empty(&req.messages)?;
    validate::messages_request(&req, betas)?;
    Ok(req)
}

/// Parses and validates a `/v1/messages/count_tokens` body.
pub fn parse_count_tokens_request(body: &[u8]) -> Result<CountTokensRequest, InvalidRequest> {
    let req: CountTokensRequest = parse_object(body)?;
    non_empty(&req.messages)?;
    validate::count_tokens_request(&req)?;
    Ok(req)
}

fn non_empty(messages: &[anthropic::Message]) -> Result<(), InvalidRequest> {
    if messages.is_empty() {
        return Err(InvalidRequest::new("messages", "must not be empty"));
    }
    Ok(())
}

fn parse_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, InvalidRequest> {
    let text = std::str::from_utf8(body).map_err(|_| InvalidRequest::body("invalid UTF-8"))?;
    let first = text.trim_start().as_bytes().first().copied();
    // Fast path for the common case: a valid object needs no path tracking
    // and no nesting pre-scan; only a failure pays for the precise message.
    // (Objects only: serde would read a struct from a positional array.)
    if first == Some(b'{')
        && let Ok(value) = serde_json::from_str::<T>(text)
    {
        return Ok(value);
    }
    check_nesting(text)?;
    if first != Some(b'{') {
        // Distinguish "valid JSON but not an object" from broken JSON.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => InvalidRequest::body("must be a JSON object"),
            Err(err) => json_error(&err),
        });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = anthropic::dotted_path(err.path());
        let inner = err.into_inner();
        if inner.is_data() {
            data_error(&path, &inner)
        } else {
            json_error(&inner)
        }
    })?;
    de.end().map_err(|err| json_error(&err))?;
    Ok(value)
}

/// Rejects documents nested deeper than [`MAX_NESTING`] before serde sees
/// them, so the message is ours and the same whatever serde would say.
fn check_nesting(text: &str) -> Result<(), InvalidRequest> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(InvalidRequest::body(format!(
                        "nesting deeper than {MAX_NESTING} levels"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn json_error(err: &serde_json::Error) -> InvalidRequest {
    let message = strip_position(&err.to_string());
    if message.contains("recursion limit exceeded") {
        return InvalidRequest::body(format!("nesting deeper than {MAX_NESTING} levels"));
    }
    InvalidRequest::body(format!(
        "invalid JSON at line {} column {}: {message}",
        err.line(),
        err.column()
    ))
}

/// Builds the field-naming error for a type/shape error at `path`.
fn data_error(path: &str, err: &serde_json::Error) -> InvalidRequest {
    let raw = strip_position(&err.to_string());
    let (mut path, message) = match anthropic::split_nested(&raw) {
        Some((inner, msg)) if path == "." => (inner.to_owned(), msg.to_owned()),
        Some((inner, msg)) => (format!("{path}.{inner}"), msg.to_owned()),
        None => (path.to_owned(), raw.clone()),
    };
    let mut message = requote(&message);
    // serde reports a missing field at the parent: move it onto the field.
    if let Some(field) = message
        .strip_prefix("missing field \"")
        .and_then(|rest| rest.strip_suffix('"'))
    {
        path = if path == "." {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
        message = "is required".to_owned();
    }
    if path == "." {
        path = "body".to_owned();
    }
    InvalidRequest::new(path, message)
}

/// serde quotes values with backticks; JSON users expect `"str"` and bare
/// numbers.
fn requote(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    let mut i = 0;
    while i < rest.len() {
        // rest[i] is quoted when a closing backtick follows it.
        if i + 1 < rest.len() {
            let quoted = rest[i];
            if quoted.parse::<f64>().is_ok() {
                out.push_str(quoted);
            } else {
                out.push('"');
                out.push_str(quoted);
                out.push('"');
            }
            out.push_str(rest[i + 1]);
            i += 2;
        } else {
            out.push('`');
            out.push_str(rest[i]);
            i += 1;
        }
    }
    out
}

fn strip_position(message: &str) -> String {
    match message.rsplit_once(" at line ") {
        Some((head, tail)) if tail.contains(" column ") => head.to_owned(),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        match parse_messages_request(body.as_bytes()) {
            Ok(req) => panic!("accepted {body}: {req:?}"),
            Err(e) => e.to_string(),
        }
    }

    const OK_TAIL: &str = r#""model":"m","max_tokens":10"#;

    #[test]
    fn accepts_minimal_request_and_keeps_unknown_fields() -> Result<(), InvalidRequest> {
        let req = parse_messages_request(
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"service_tier":"auto","provider":"p"}"#,
        )?;
        assert_eq!(req.max_tokens, 5);
        assert_eq!(req.extra.len(), 2);
        assert_eq!(req.extra["provider"], "p");
        Ok(())
    }

    #[test]
    fn content_of_wrong_type_names_the_field() {
        assert_eq!(
            err(&format!(
                r#"{{{OK_TAIL},"messages":[{{"role":"user","content":5}}]}}"#
            )),
            "messages.0.content: invalid type: integer 5, expected a string or a list of content blocks"
        );
    }

    #[test]
    fn max_tokens_string_names_the_field() {
        assert_eq!(
            err(r#"{"model":"m","max_tokens":"abc","messages":[{"role":"user","content":"x"}]}"#),
            r#"max_tokens: invalid type: string "abc", expected u32"#
        );
    }

    #[test]
    fn empty_messages_rejected() {
        assert_eq!(
            err(&format!(r#"{{{OK_TAIL},"messages":[]}}"#)),
            "messages: must not be empty"
        );
    }

    #[test]
    fn empty_model_and_zero_max_tokens_rejected() {
        assert_eq!(
            err(r#"{"model":" ","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#),
            "model: must not be empty"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#),
            "max_tokens: must be at least 1"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#),
            r#"max_tokens: invalid value: integer -1, expected u32"#
        );
    }

    #[test]
    fn unknown_role_names_the_field() {
        assert_eq!(
            err(&format!(
                r#"{{{OK_TAIL},"messages":[{{"role":"user","content":"a"}},{{"role":"bot","content":"b"}}]}}"#
            )),
            r#"messages.1.role: unknown variant "bot", expected "user" or "assistant""#
        );
    }

    #[test]
    fn missing_fields_name_the_field() {
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#),
            "max_tokens: is required"
        );
        assert_eq!(
            err(&format!(r#"{{{OK_TAIL},"messages":[{{"content":"x"}}]}}"#)),
            "messages.0.role: is required"
        );
    }

    #[test]
    fn errors_inside_blocks_name_the_inner_field() {
        assert_eq!(
            err(&format!(
                r#"{{{OK_TAIL},"messages":[{{"role":"user","content":[{{"type":"text","text":"ok"}},{{"type":"text","text":7}}]}}]}}"#
            )),
            r#"messages.0.content.1.text: invalid type: integer 7, expected a string"#
        );
        assert_eq!(
            err(&format!(
                r#"{{{OK_TAIL},"messages":[{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t","content":[{{"type":"image","source":{{"type":"base64"}}}}]}}]}}]}}"#
            )),
            "messages.0.content.0.content.0.source.media_type: is required"
        );
        assert_eq!(
            err(&format!(
                r#"{{{OK_TAIL},"messages":[{{"role":"user","content":[{{"text":"x"}}]}}]}}"#
            )),
            "messages.0.content.0.type: is required"
        );
    }

    #[test]
    fn body_level_errors() {
        assert_eq!(err("[1,2]"), "body: must be a JSON object");
        assert_eq!(err("\"x\""), "body: must be a JSON object");
        let bad = parse_messages_request(b"\xff\xfe").map_err(|e| e.to_string());
        assert_eq!(bad, Err("body: invalid UTF-8".to_owned()));
        assert!(
            err("{\"a\" 1}").starts_with("body: invalid JSON at line 1 column 6"),
            "{}",
            err("{\"a\" 1}")
        );
        let trailing = format!(r#"{{{OK_TAIL},"messages":[{{"role":"user","content":"x"}}]}} x"#);
        assert_eq!(
            err(&trailing),
            "body: invalid JSON at line 1 column 74: trailing characters"
        );
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(err(&deep), "body: nesting deeper than 128 levels");
        // Brackets inside strings do not count.
        let quoted = format!(
            r#"{{{OK_TAIL},"messages":[{{"role":"user","content":"{}"}}]}}"#,
            "[".repeat(300)
        );
        assert!(parse_messages_request(quoted.as_bytes()).is_ok());
    }

    #[test]
    fn count_tokens_needs_no_max_tokens() {
        let req = parse_count_tokens_request(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[]}"#,
        );
        assert!(req.is_ok(), "{req:?}");
        let bad = parse_count_tokens_request(br#"{"model":"m","messages":[]}"#);
        assert_eq!(
            bad.map_err(|e| e.to_string()).err().as_deref(),
            Some("messages: must not be empty")
        );
    }
}
