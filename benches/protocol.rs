//! What the gateway's own conversion work costs, apart from the network:
//! the pure `protocol` code on the bodies `examples/bench.sh` sends and on
//! the realistic fixtures the tests use.
//!
//! ```text
//! cargo bench --bench protocol
//! ```
//!
//! Each case is reported in µs per operation (the best of several rounds)
//! and as a ratio to the cheapest thing that could touch the same bytes:
//! parsing them into a `serde_json::Value` and writing that back out. Both
//! figures come from the same run; the ratio is the one to compare across
//! machines.

use std::hint::black_box;
use std::time::{Duration, Instant};

use abridge::protocol::{self, Event, ResponseContext, StreamContext, StreamConverter, Target};
use abridge::upstream::sse::SseParser;

#[path = "../examples/support/openai_answer.rs"]
mod openai_answer;

/// What `examples/bench.sh` sends through the gateway.
const BENCH_REQUEST: &str = r#"{"model":"claude-3-5-haiku-latest","max_tokens":64,"messages":[{"role":"user","content":"Reply with one short sentence."}]}"#;
/// A Claude Code turn: system prompt, tools, tool results.
const CLAUDE_CODE_REQUEST: &str = include_str!("../src/protocol/fixtures/claude_code_request.json");
/// An answer with text and two tool calls.
const TOOL_CALLS_RESPONSE: &str =
    include_str!("../src/protocol/fixtures/openai_response_tool_calls.json");
/// A stream with text and interleaved tool calls.
const TOOLS_STREAM: &str = include_str!("../src/protocol/fixtures/openai_stream_text_tools.sse");

/// A case's name, its input, and the conversion it times.
type Case<'a> = (&'a str, &'a str, fn(&str));

/// Measuring rounds per case.
const ROUNDS: u32 = 7;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test` runs this without --bench: keep that quick.
    let budget = if args.iter().any(|a| a == "--bench") {
        Duration::from_millis(1400)
    } else {
        Duration::from_millis(70)
    };
    let answer = mock_answer();
    let bench_response = answer
        .completion(&openai_answer::text(answer.chunks))
        .to_string();
    let bench_stream = mock_stream();
    let cases: [Case; 6] = [
        ("request, bench body", BENCH_REQUEST, convert_request),
        (
            "request, Claude Code turn",
            CLAUDE_CODE_REQUEST,
            convert_request,
        ),
        ("response, bench body", &bench_response, convert_response),
        (
            "response, tool calls",
            TOOL_CALLS_RESPONSE,
            convert_response,
        ),
        ("stream, 10 text chunks", &bench_stream, convert_stream),
        ("stream, text + tools", TOOLS_STREAM, convert_stream),
    ];
    println!(
        "{:<28}{:>8}{:>12}{:>14}{:>9}",
        "case", "bytes", "µs/op", "json µs/op", "ratio"
    );
    for (name, input, convert) in cases {
        // Alternate the two and keep each one's best round, so a burst of
        // other work on the machine spoils a round rather than the ratio.
        let (mut cost, mut json) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..ROUNDS {
            cost = cost.min(time(budget / ROUNDS, || convert(black_box(input))));
            json = json.min(time(budget / ROUNDS, || json_round_trip(black_box(input))));
        }
        println!(
            "{name:<28}{:>8}{:>12.2}{:>14.2}{:>9.2}",
            input.len(),
            cost,
            json,
            cost / json
        );
    }
}

/// Parse, validate and convert an Anthropic request, then write the OpenAI body.
fn convert_request(body: &str) {
    let request = match protocol::parse_messages_request(body.as_bytes()) {
        Ok(request) => request,
        Err(e) => panic!("the request fixture is invalid: {e:?}"),
    };
    let target = Target {
        model: "upstream-model",
        max_tokens_limit: None,
        stream: false,
        reasoning_efforts: &[],
    };
    let chat = protocol::to_openai(&request, &target).expect("converts");
    black_box(serde_json::to_vec(&chat).expect("serializes"));
}

/// Convert an OpenAI answer and write the Anthropic body.
fn convert_response(body: &str) {
    let ctx = ResponseContext {
        model: "claude-3-5-haiku-latest",
        stop_sequences: &[],
    };
    let response = protocol::from_openai(body.as_bytes(), &ctx).expect("converts");
    black_box(serde_json::to_vec(&response).expect("serializes"));
}

/// Split an OpenAI SSE stream into frames, convert each and write the
/// Anthropic events, as the relay does.
fn convert_stream(sse: &str) {
    let mut parser = SseParser::new();
    let mut converter = StreamConverter::new(StreamContext {
        model: "claude-3-5-haiku-latest".to_owned(),
        ..StreamContext::default()
    });
    let mut out = Vec::new();
    let mut frames = parser.push(sse.as_bytes()).expect("parses");
    frames.extend(parser.finish());
    for frame in frames {
        for event in converter.push(&frame.data).expect("converts") {
            event.write_sse(&mut out);
        }
    }
    for event in converter.finish() {
        event.write_sse(&mut out);
    }
    Event::ping().write_sse(&mut out);
    black_box(out);
}

/// The baseline: every JSON document in `input` parsed into a `Value` and
/// written back (SSE frames one by one).
fn json_round_trip(input: &str) {
    let documents: Vec<&str> = if input.trim_start().starts_with('{') {
        vec![input]
    } else {
        input
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter(|data| data.starts_with('{'))
            .collect()
    };
    for document in documents {
        let value: serde_json::Value = serde_json::from_str(document).expect("is JSON");
        black_box(serde_json::to_vec(&value).expect("serializes"));
    }
}

/// Mean µs per call of `f`, over as many calls as fit in `budget` after a
/// warm-up of a tenth of it.
fn time(budget: Duration, mut f: impl FnMut()) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < budget / 10 {
        f();
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        calls += 64;
    }
    start.elapsed().as_secs_f64() * 1e6 / calls as f64
}

/// The bench run's answer: what `examples/mock_upstream.rs` sends for it.
fn mock_answer() -> openai_answer::Answer<'static> {
    openai_answer::Answer {
        id: "chatcmpl-mock1",
        created: 1_735_689_600,
        model: "mock-small",
        chunks: 10,
        prompt_tokens: 30,
    }
}

/// Every frame of the mock's stream for the bench run, usage included.
fn mock_stream() -> String {
    let stream = mock_answer().stream(true);
    (0..).map_while(|step| stream.frame(step)).collect()
}
