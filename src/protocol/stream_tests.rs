//! Tests for `StreamConverter`: exact event sequences, invariants, the
//! fixture snapshot and a no-panic property. No I/O beyond `include_str!`.

use super::*;
use crate::protocol::json_scan::split_at_points;
use proptest::prelude::*;
use serde_json::json;

fn ctx() -> StreamContext {
    StreamContext {
        model: "claude-sonnet-4".into(),
        stop_sequences: vec![],
        input_tokens: 42,
        id_seed: Some(7),
    }
}

fn run(ctx: StreamContext, payloads: &[String]) -> Vec<Event> {
    let mut conv = StreamConverter::new(ctx);
    let mut events = Vec::new();
    for p in payloads {
        match conv.push(p) {
            Ok(evs) => events.extend(evs),
            Err(e) => panic!("push({p}) failed: {e}"),
        }
    }
    events.extend(conv.finish());
    assert_invariants(&events);
    events
}

/// Short names: `start:text@0`, `delta:text_delta@0`, `stop@0`, …
fn names(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let idx = &e.data["index"];
            match e.name {
                "content_block_start" => {
                    format!(
                        "start:{}@{idx}",
                        e.data["content_block"]["type"].as_str().unwrap_or("?")
                    )
                }
                "content_block_delta" => {
                    format!(
                        "delta:{}@{idx}",
                        e.data["delta"]["type"].as_str().unwrap_or("?")
                    )
                }
                "content_block_stop" => format!("stop@{idx}"),
                other => other.to_owned(),
            }
        })
        .collect()
}

/// message_start first, message_stop last, indices contiguous from 0, one
/// block open at a time, deltas only for the open block.
pub(crate) fn assert_invariants(events: &[Event]) {
    assert_eq!(events.first().map(|e| e.name), Some("message_start"));
    assert_eq!(events.last().map(|e| e.name), Some("message_stop"));
    assert_eq!(
        events.iter().filter(|e| e.name == "message_stop").count(),
        1
    );
    let mut open: Option<u64> = None;
    let mut next = 0u64;
    for e in events {
        assert_eq!(e.data["type"], e.name, "type field of {e:?}");
        let idx = e.data["index"].as_u64();
        match e.name {
            "content_block_start" => {
                assert_eq!(open, None, "overlapping blocks at {e:?}");
                assert_eq!(idx, Some(next), "index gap at {e:?}");
                open = idx;
                next += 1;
            }
            "content_block_delta" => assert_eq!(idx, open, "delta outside its block {e:?}"),
            "content_block_stop" => {
                assert_eq!(idx, open, "stop of a closed block {e:?}");
                open = None;
            }
            "message_delta" | "message_stop" => assert_eq!(open, None, "block left open"),
            _ => {}
        }
    }
}

fn text(t: &str) -> String {
    json!({"choices": [{"index": 0, "delta": {"content": t}}]}).to_string()
}
fn reasoning(t: &str) -> String {
    json!({"choices": [{"index": 0, "delta": {"reasoning_content": t}}]}).to_string()
}
fn tool(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> String {
    let mut function = json!({"arguments": args});
    if let Some(name) = name {
        function["name"] = json!(name);
    }
    let mut call = json!({"index": index, "function": function});
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    json!({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}).to_string()
}
fn finish(reason: &str) -> String {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}).to_string()
}
fn usage_only(prompt: u64, completion: u64) -> String {
    json!({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}})
        .to_string()
}
fn done() -> String {
    "[DONE]".to_owned()
}

fn message_delta(events: &[Event]) -> Value {
    events
        .iter()
        .find(|e| e.name == "message_delta")
        .map(|e| e.data.clone())
        .unwrap_or_default()
}

fn tool_args(events: &[Event], index: u64) -> String {
    events
        .iter()
        .filter(|e| e.data["index"] == index && e.data["delta"]["type"] == "input_json_delta")
        .filter_map(|e| e.data["delta"]["partial_json"].as_str())
        .collect()
}

#[test]
fn text_only_exact_sequence() {
    let events = run(
        ctx(),
        &[
            text("Hel"),
            text("lo"),
            finish("stop"),
            usage_only(11, 2),
            done(),
        ],
    );
    assert_eq!(
        names(&events),
        [
            "message_start",
            "start:text@0",
            "delta:text_delta@0",
            "delta:text_delta@0",
            "stop@0",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &events[0].data["message"];
    assert_eq!(start["model"], "claude-sonnet-4");
    assert_eq!(
        start["usage"],
        json!({"input_tokens": 42, "output_tokens": 0})
    );
    assert_eq!(start["content"], json!([]));
    assert!(
        start["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_"))
    );
    assert_eq!(
        events[1].data,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(
        events[3].data,
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}})
    );
    assert_eq!(
        message_delta(&events),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": 2, "input_tokens": 11}})
    );
    assert_eq!(
        events[6].to_sse(),
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );
}

#[test]
fn thinking_then_text_without_fabricated_signature() {
    let events = run(
        ctx(),
        &[
            reasoning("Let me"),
            reasoning(" think"),
            text("Answer"),
            finish("stop"),
        ],
    );
    assert_eq!(
        names(&events),
        [
            "message_start",
            "start:thinking@0",
            "delta:thinking_delta@0",
            "delta:thinking_delta@0",
            "stop@0",
            "start:text@1",
            "delta:text_delta@1",
            "stop@1",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[1].data["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    assert_eq!(
        events[2].data["delta"],
        json!({"type": "thinking_delta", "thinking": "Let me"})
    );
}

#[test]
fn known_signature_is_sent_before_thinking_stop() {
    let signed = json!({"choices": [{"index": 0, "delta": {"reasoning_content": "", "signature": "sig=="}}]});
    let events = run(ctx(), &[reasoning("hm"), signed.to_string(), text("A")]);
    assert_eq!(
        names(&events)[1..5],
        [
            "start:thinking@0",
            "delta:thinking_delta@0",
            "delta:signature_delta@0",
            "stop@0"
        ]
    );
    assert_eq!(
        events[3].data["delta"],
        json!({"type": "signature_delta", "signature": "sig=="})
    );
}

#[test]
fn text_then_tool_call_streams_arguments_and_stops_with_tool_use() {
    let events = run(
        ctx(),
        &[
            text("I'll read it."),
            tool(0, Some("call_abc"), Some("Read"), ""),
            tool(0, None, None, "{\"path\":"),
            tool(0, None, None, "\"a.rs\"}"),
            finish("tool_calls"),
            done(),
        ],
    );
    assert_eq!(
        names(&events),
        [
            "message_start",
            "start:text@0",
            "delta:text_delta@0",
            "stop@0",
            "start:tool_use@1",
            "delta:input_json_delta@1",
            "delta:input_json_delta@1",
            "stop@1",
            "message_delta",
            "message_stop"
        ]
    );
    let block = &events[4].data["content_block"];
    assert_eq!(block["name"], "Read");
    assert_eq!(block["input"], json!({}));
    let id = block["id"].as_str().unwrap_or_default();
    assert!(id.starts_with("toolu_") && id.len() == 30, "{id}");
    assert_eq!(tool_args(&events, 1), "{\"path\":\"a.rs\"}");
    assert_eq!(events[5].data["delta"]["partial_json"], "{\"path\":");
    assert_eq!(message_delta(&events)["delta"]["stop_reason"], "tool_use");
}

#[test]
fn upstream_toolu_ids_are_kept() {
    let events = run(ctx(), &[tool(0, Some("toolu_up"), Some("f"), "{}")]);
    assert_eq!(events[1].data["content_block"]["id"], "toolu_up");
}

#[test]
fn two_interleaved_tool_calls_never_overlap_and_keep_their_arguments() {
    let events = run(
        ctx(),
        &[
            tool(0, Some("call_a"), Some("Read"), ""),
            tool(1, Some("call_b"), Some("Grep"), ""),
            tool(0, None, None, "{\"path\":"),
            tool(1, None, None, "{\"q\":"),
            tool(0, None, None, "\"x\"}"),
            tool(1, None, None, "\"y\"}"),
            finish("tool_calls"),
        ],
    );
    assert_eq!(
        names(&events),
        [
            "message_start",
            "start:tool_use@0",
            "delta:input_json_delta@0",
            "delta:input_json_delta@0",
            "stop@0",
            "start:tool_use@1",
            "delta:input_json_delta@1",
            "delta:input_json_delta@1",
            "stop@1",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[1].data["content_block"]["name"], "Read");
    assert_eq!(events[5].data["content_block"]["name"], "Grep");
    assert_eq!(tool_args(&events, 0), "{\"path\":\"x\"}");
    assert_eq!(tool_args(&events, 1), "{\"q\":\"y\"}");
}

/// 20,000 argument fragments of two interleaved calls (and some text):
/// the open call's completeness used to be re-parsed from scratch after
/// each of its fragments, O(n²) (seconds here); now each byte is scanned
/// once. Nothing may be lost or reordered on the way.
#[test]
fn long_interleaved_arguments_convert_in_linear_time() {
    const PAIRS: usize = 10_000;
    let mut payloads = vec![
        tool(0, Some("call_a"), Some("Sum"), "{\"n\":["),
        tool(1, Some("call_b"), Some("Sum"), "{\"n\":["),
    ];
    for i in 0..PAIRS {
        payloads.push(tool(0, None, None, "1,2,3,4,5,6,7,8,"));
        payloads.push(tool(1, None, None, "9,8,7,6,5,4,3,2,"));
        if i % 1_000 == 0 {
            payloads.push(text("t"));
        }
    }
    payloads.push(tool(0, None, None, "0]}"));
    payloads.push(tool(1, None, None, "0]}"));
    payloads.push(finish("tool_calls"));
    let started = std::time::Instant::now();
    let events = run(ctx(), &payloads);
    let elapsed = started.elapsed();
    assert!(
        elapsed < std::time::Duration::from_secs(3),
        "{elapsed:?} for {} payloads",
        payloads.len()
    );
    // Call 0 was open first: call 1 and the text waited, in order.
    let starts: Vec<String> = names(&events)
        .into_iter()
        .filter(|n| n.starts_with("start:"))
        .collect();
    assert_eq!(
        starts[..3],
        ["start:tool_use@0", "start:tool_use@1", "start:text@2"]
    );
    for (index, numbers) in [(0, "1,2,3,4,5,6,7,8,"), (1, "9,8,7,6,5,4,3,2,")] {
        let args = tool_args(&events, index);
        let expected = format!("{{\"n\":[{}0]}}", numbers.repeat(PAIRS));
        assert!(args == expected, "call {index}: {} bytes", args.len());
    }
}

#[test]
fn sequential_tool_calls_stream_live() {
    let mut conv = StreamConverter::new(ctx());
    let mut live = Vec::new();
    for p in [
        tool(0, Some("call_a"), Some("A"), "{\"x\":1}"),
        tool(1, Some("call_b"), Some("B"), "{\"y\":"),
    ] {
        live.extend(conv.push(&p).unwrap_or_default());
    }
    // The second call started as soon as it arrived, since the first was complete.
    assert_eq!(
        names(&live),
        [
            "message_start",
            "start:tool_use@0",
            "delta:input_json_delta@0",
            "stop@0",
            "start:tool_use@1",
            "delta:input_json_delta@1"
        ]
    );
}

#[test]
fn text_after_tools_gets_its_own_block() {
    let events = run(
        ctx(),
        &[
            tool(0, Some("call_a"), Some("A"), "{}"),
            text("done"),
            finish("tool_calls"),
        ],
    );
    assert_eq!(
        names(&events)[1..7],
        [
            "start:tool_use@0",
            "delta:input_json_delta@0",
            "stop@0",
            "start:text@1",
            "delta:text_delta@1",
            "stop@1"
        ]
    );
}

#[test]
fn missing_done_is_closed_by_finish_and_finish_is_idempotent() {
    let mut conv = StreamConverter::new(ctx());
    let mut events = conv.push(&text("partial")).unwrap_or_default();
    events.extend(conv.finish());
    assert_invariants(&events);
    assert_eq!(message_delta(&events)["delta"]["stop_reason"], "end_turn");
    assert_eq!(message_delta(&events)["usage"], json!({"output_tokens": 0}));
    assert!(conv.finish().is_empty());
    assert_eq!(conv.push(&text("late")), Ok(vec![]));
    assert_eq!(conv.push("[DONE]"), Ok(vec![]));
}

#[test]
fn done_finishes_immediately() {
    let mut conv = StreamConverter::new(ctx());
    let _ = conv.push(&text("x"));
    let events = conv.push("[DONE]").unwrap_or_default();
    assert_eq!(events.last().map(|e| e.name), Some("message_stop"));
    assert!(conv.finish().is_empty());
}

#[test]
fn usage_only_final_chunk_updates_usage() {
    let cached = json!({"choices": [], "usage": {"prompt_tokens": 120, "completion_tokens": 9,
                        "prompt_tokens_details": {"cached_tokens": 100}}});
    let events = run(
        ctx(),
        &[text("hi"), finish("length"), cached.to_string(), done()],
    );
    assert_eq!(
        message_delta(&events),
        json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
               "usage": {"output_tokens": 9, "input_tokens": 20, "cache_read_input_tokens": 100}})
    );
}

#[test]
fn usage_in_first_chunk_goes_into_message_start() {
    let first = json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                       "usage": {"prompt_tokens": 77, "completion_tokens": 0}});
    let events = run(ctx(), &[first.to_string(), text("x")]);
    assert_eq!(events[0].data["message"]["usage"]["input_tokens"], 77);
}

#[test]
fn finish_reason_mapping_and_stop_sequence() {
    let reason = |r: &str| message_delta(&run(ctx(), &[text("x"), finish(r)]))["delta"].clone();
    assert_eq!(reason("content_filter")["stop_reason"], "refusal");
    assert_eq!(reason("function_call")["stop_reason"], "tool_use");
    let c = StreamContext {
        stop_sequences: vec!["STOP".into()],
        ..ctx()
    };
    let events = run(c, &[text("abc ST"), text("OP"), finish("stop")]);
    assert_eq!(
        message_delta(&events)["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "STOP"})
    );
}

#[test]
fn calls_without_index_are_told_apart_by_id() {
    let call = |id: &str, name: &str| {
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"id": id, "type": "function", "function": {"name": name, "arguments": "{}"}}
        ]}}]})
        .to_string()
    };
    let events = run(ctx(), &[call("c1", "A"), call("c2", "B")]);
    assert_eq!(events[1].data["content_block"]["name"], "A");
    assert_eq!(events[4].data["content_block"]["name"], "B");
}

#[test]
fn bad_chunks_are_errors_and_error_event_shape() {
    let mut conv = StreamConverter::new(ctx());
    assert!(matches!(
        conv.push("{not json"),
        Err(UpstreamInvalid::NotJson(_))
    ));
    assert_eq!(
        conv.push(r#"{"error": {"message": "overloaded"}}"#),
        Err(UpstreamInvalid::Error("overloaded".into()))
    );
    let e = StreamConverter::error_event("overloaded_error", "Overloaded");
    assert_eq!(
        e.to_sse(),
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
    );
    assert_eq!(
        Event::ping().to_sse(),
        "event: ping\ndata: {\"type\":\"ping\"}\n\n"
    );
}

/// The `data:` payloads of the SSE fixture (one per line, no multi-line data).
pub(crate) fn fixture_payloads() -> Vec<String> {
    include_str!("fixtures/openai_stream_text_tools.sse")
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn fixture_stream_snapshot() {
    let events = run(ctx(), &fixture_payloads());
    let rendered: Vec<Value> = events
        .iter()
        .map(|e| json!({"event": e.name, "data": e.data}))
        .collect();
    insta::with_settings!({prepend_module_to_snapshot => false}, {
        insta::assert_json_snapshot!("openai_stream_text_tools_to_anthropic", rendered, {
            "[].data.message.id" => "[msg_id]",
            "[].data.content_block.id" => "[toolu_id]",
        });
    });
}

fn json_ish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z{}\":]{0,8}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "choices",
                        "delta",
                        "index",
                        "content",
                        "reasoning_content",
                        "tool_calls",
                        "function",
                        "name",
                        "arguments",
                        "id",
                        "finish_reason",
                        "usage",
                        "prompt_tokens",
                        "signature"
                    ]),
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    });
    prop_oneof![
        value.prop_map(|v| v.to_string()),
        Just(fixture_payloads()[1].clone()),
        "\\PC{0,20}",
    ]
}

proptest! {
    /// Two calls whose fragments interleave in any order: each tool block
    /// carries exactly its own arguments, and the blocks never overlap.
    #[test]
    fn interleaved_calls_keep_their_arguments(
        a in prop::collection::btree_map("[a-z\"\\\\{}]{1,6}", any::<i32>(), 0..5),
        b in prop::collection::vec(".{0,6}", 0..5),
        cuts_a in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        cuts_b in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        order in prop::collection::vec(any::<bool>(), 0..40),
    ) {
        let args_a = serde_json::to_string(&a).unwrap_or_default();
        let args_b = serde_json::to_string(&json!({"list": b})).unwrap_or_default();
        let mut pieces_a = split_at_points(&args_a, &cuts_a).into_iter();
        let mut pieces_b = split_at_points(&args_b, &cuts_b).into_iter();
        let mut payloads = vec![
            tool(0, Some("call_a"), Some("A"), ""),
            tool(1, Some("call_b"), Some("B"), ""),
        ];
        for take_a in order.into_iter().chain(std::iter::repeat_n(true, 10)).chain(std::iter::repeat_n(false, 10)) {
            let next = if take_a { pieces_a.next().map(|p| (0, p)) } else { pieces_b.next().map(|p| (1, p)) };
            if let Some((index, piece)) = next {
                payloads.push(tool(index, None, None, piece));
            }
        }
        let events = run(ctx(), &payloads);
        prop_assert_eq!(tool_args(&events, 0), args_a);
        prop_assert_eq!(tool_args(&events, 1), args_b);
    }

    #[test]
    fn never_panics_and_always_ends_with_message_stop(payloads in prop::collection::vec(json_ish(), 0..12)) {
        let mut conv = StreamConverter::new(ctx());
        let mut events = Vec::new();
        for p in &payloads {
            if let Ok(evs) = conv.push(p) {
                events.extend(evs);
            }
        }
        events.extend(conv.finish());
        assert_invariants(&events);
    }
}

#[test]
fn a_stream_without_an_answer_is_an_error_not_an_empty_message() {
    let mut conv = StreamConverter::new(ctx());
    assert_eq!(
        conv.push(&usage_only(5, 0)),
        Err(UpstreamInvalid::NoChoices)
    );
    let mut conv = StreamConverter::new(ctx());
    assert_eq!(conv.push(&done()), Err(UpstreamInvalid::NoChoices));
    let mut conv = StreamConverter::new(ctx());
    let azure = json!({"choices": [], "prompt_filter_results": [{"prompt_index": 0}]});
    assert_eq!(
        conv.push(&azure.to_string()),
        Ok(vec![]),
        "skipped, not started"
    );
    assert_eq!(conv.push(&text("hi")).map(|e| e.is_empty()), Ok(false));
    assert!(
        conv.push(&usage_only(5, 1)).is_ok(),
        "usage after content is normal"
    );
}

#[test]
fn an_end_without_done_or_finish_reason_is_truncated() {
    let mut conv = StreamConverter::new(ctx());
    let _ = conv.push(&text("partial"));
    assert_eq!(conv.end(), Err(UpstreamInvalid::Truncated));
    let mut conv = StreamConverter::new(ctx());
    let _ = conv.push(&text("whole"));
    let _ = conv.push(&finish("stop"));
    let events = conv.end().unwrap();
    assert_eq!(events.last().map(|e| e.name), Some("message_stop"));
    assert_eq!(conv.end(), Ok(vec![]), "idempotent");
    let mut conv = StreamConverter::new(ctx());
    let _ = conv.push(&text("x"));
    let _ = conv.push(&done());
    assert_eq!(conv.end(), Ok(vec![]), "[DONE] already finished it");
}

#[test]
fn openings_follow_the_same_rules() {
    use super::Opening::{NeedMore, Ready};
    let azure = json!({"choices": [], "prompt_filter_results": []}).to_string();
    let error = json!({"error": {"message": "boom"}}).to_string();
    let cases: &[(&str, Result<Opening, UpstreamInvalid>)] = &[
        (&text("hi"), Ok(Ready)),
        (&finish("stop"), Ok(Ready)),
        (&azure, Ok(NeedMore)),
        ("", Ok(NeedMore)),
        (&usage_only(1, 0), Err(UpstreamInvalid::NoChoices)),
        (r#"{"choices": null}"#, Err(UpstreamInvalid::NoChoices)),
        ("[DONE]", Err(UpstreamInvalid::NoChoices)),
        (&error, Err(UpstreamInvalid::Error("boom".into()))),
        ("<html>", Err(UpstreamInvalid::Html)),
    ];
    for (data, expected) in cases {
        assert_eq!(&opening(data), expected, "{data}");
    }
    assert!(matches!(opening("{nope"), Err(UpstreamInvalid::NotJson(_))));
}
