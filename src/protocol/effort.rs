//! Reasoning effort across the two APIs: what an Anthropic request asks for
//! (`output_config.effort`, `thinking`) and which OpenAI `reasoning_effort`
//! value a provider gets. Pure; never does I/O.
//!
//! The request's wish, strongest signal first:
//! 1. `thinking: {type: "disabled"}` → `none`;
//! 2. `output_config.effort` (`low`, `medium`, `high`, `xhigh`, `max`);
//! 3. `thinking: {type: "enabled", budget_tokens}` by thresholds:
//!    up to 4,096 → `low`, up to 16,384 → `medium`, up to 32,768 → `high`,
//!    more → `xhigh` (Claude Code's "think", "think hard" and "ultrathink"
//!    budgets of 4,000, 10,000 and 31,999 land on low, medium and high);
//! 4. `thinking: {type: "adaptive"}` → `high` (Anthropic's default effort);
//! 5. none of these: no wish, nothing is sent.
//!
//! A provider lists the values it accepts (`reasoning_efforts` in its
//! settings, e.g. OpenAI's `minimal, low, medium, high`). The wish becomes
//! the highest of those not above it, or the lowest when all are above;
//! a provider that lists none gets no `reasoning_effort` at all.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::InvalidRequest;
use super::anthropic::MessagesRequest;

/// One reasoning level, in increasing order; the names are the wire values
/// (OpenAI's `none`/`minimal`, both APIs' `low`/`medium`/`high`,
/// `xhigh`, Anthropic's `max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
    Max,
}

/// Budgets up to these many tokens map to low, medium and high.
pub const BUDGET_THRESHOLDS: [(u64, Effort); 3] = [
    (4_096, Effort::Low),
    (16_384, Effort::Medium),
    (32_768, Effort::High),
];

/// The effort a `thinking.budget_tokens` stands for.
pub fn from_budget(budget: u64) -> Effort {
    BUDGET_THRESHOLDS
        .iter()
        .find(|(limit, _)| budget <= *limit)
        .map_or(Effort::Xhigh, |&(_, effort)| effort)
}

/// The effort `req` asks for, if any (see the module doc). An
/// `output_config.effort` value Anthropic does not define is refused:
/// there is nothing to map it to.
pub fn requested(req: &MessagesRequest) -> Result<Option<Effort>, InvalidRequest> {
    let thinking = req.thinking.as_ref();
    let kind = thinking.and_then(|t| t.get("type")).and_then(Value::as_str);
    if kind == Some("disabled") {
        return Ok(Some(Effort::None));
    }
    let asked = req.output_config.as_ref().and_then(|c| c.effort.as_deref());
    if let Some(asked) = asked {
        return match asked {
            "low" => Ok(Some(Effort::Low)),
            "medium" => Ok(Some(Effort::Medium)),
            "high" => Ok(Some(Effort::High)),
            "xhigh" => Ok(Some(Effort::Xhigh)),
            "max" => Ok(Some(Effort::Max)),
            other => Err(InvalidRequest::new(
                "output_config.effort",
                format!("unknown effort {other:?}; expected low, medium, high, xhigh or max"),
            )),
        };
    }
    Ok(match kind {
        Some("enabled") => thinking
            .and_then(|t| t.get("budget_tokens"))
            .and_then(Value::as_u64)
            .map(from_budget),
        Some("adaptive") => Some(Effort::High),
        _ => None,
    })
}

/// The value of `supported` to send for `wanted`: the highest not above
/// it, else the lowest; `None` when the provider supports none.
pub fn pick(wanted: Effort, supported: &[Effort]) -> Option<Effort> {
    supported
        .iter()
        .copied()
        .filter(|&e| e <= wanted)
        .max()
        .or_else(|| supported.iter().copied().min())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_messages_request;
    use serde_json::json;

    fn wish(extra: Value) -> Result<Option<Effort>, String> {
        let mut body = json!({"model": "m", "max_tokens": 64000,
            "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let req = parse_messages_request(body.to_string().as_bytes()).map_err(|e| e.to_string())?;
        requested(&req).map_err(|e| e.to_string())
    }

    #[test]
    fn what_a_request_asks_for() {
        let enabled = |b: u64| json!({"thinking": {"type": "enabled", "budget_tokens": b}});
        let cases: Vec<(Value, Result<Option<Effort>, String>)> = vec![
            (json!({}), Ok(None)),
            (enabled(1024), Ok(Some(Effort::Low))),
            (enabled(4_000), Ok(Some(Effort::Low))),
            (enabled(4_097), Ok(Some(Effort::Medium))),
            (enabled(10_000), Ok(Some(Effort::Medium))),
            (enabled(31_999), Ok(Some(Effort::High))),
            (enabled(32_769), Ok(Some(Effort::Xhigh))),
            (json!({"thinking": {"type": "adaptive"}}), Ok(Some(Effort::High))),
            (json!({"thinking": {"type": "disabled"}}), Ok(Some(Effort::None))),
            (json!({"output_config": {"effort": "low"}}), Ok(Some(Effort::Low))),
            (json!({"output_config": {"effort": "medium"}}), Ok(Some(Effort::Medium))),
            (json!({"output_config": {"effort": "xhigh"}}), Ok(Some(Effort::Xhigh))),
            (json!({"output_config": {"effort": "max"}}), Ok(Some(Effort::Max))),
            (
                json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}),
                Ok(Some(Effort::Low)),
            ),
            (
                json!({"thinking": {"type": "enabled", "budget_tokens": 2000}, "output_config": {"effort": "max"}}),
                Ok(Some(Effort::Max)),
            ),
            (
                json!({"thinking": {"type": "disabled"}, "output_config": {"effort": "max"}}),
                Ok(Some(Effort::None)),
            ),
            (
                json!({"output_config": {"effort": "huge"}}),
                Err("output_config.effort: unknown effort \"huge\"; expected low, medium, high, xhigh or max".into()),
            ),
        ];
        for (extra, expected) in cases {
            assert_eq!(wish(extra.clone()), expected, "{extra}");
        }
    }

    #[test]
    fn what_a_provider_gets() {
        use Effort::*;
        let openai = [Minimal, Low, Medium, High];
        let gpt52 = [None, Minimal, Low, Medium, High, Xhigh];
        let two = [Low, High];
        let cases = [
            (Low, &openai[..], Some(Low)),
            (Max, &openai[..], Some(High)),
            (Xhigh, &openai[..], Some(High)),
            (None, &openai[..], Some(Minimal)),
            (None, &gpt52[..], Some(None)),
            (Xhigh, &gpt52[..], Some(Xhigh)),
            (Max, &gpt52[..], Some(Xhigh)),
            (Medium, &two[..], Some(Low)),
            (Minimal, &two[..], Some(Low)),
            (High, &[][..], Option::None),
        ];
        for (wanted, supported, expected) in cases {
            assert_eq!(
                pick(wanted, supported),
                expected,
                "{wanted:?} on {supported:?}"
            );
        }
    }

    #[test]
    fn wire_names() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_value(Effort::Xhigh)?, json!("xhigh"));
        let parsed: Vec<Effort> = serde_json::from_value(json!(["none", "minimal", "max"]))?;
        assert_eq!(parsed, [Effort::None, Effort::Minimal, Effort::Max]);
        assert!(serde_json::from_value::<Effort>(json!("extreme")).is_err());
        Ok(())
    }
}
