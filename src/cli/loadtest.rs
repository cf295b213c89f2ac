//! `abridge loadtest`: flags → a validated [`loadtest::Config`], one run, the
//! report on stdout, and an exit code from the SLO flags.
//!
//! Flags are checked here, before anything starts, so every mistake (qps 0,
//! an unreadable or non-JSON body, a malformed URL) is one clear line; the
//! generator itself (`crate::loadtest`) never sees raw flags.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::loadtest::{self, Config, Target, render, slo::Slo};
use crate::upstream::client::{HttpClient, HttpSettings};

/// Most workers the default `--concurrency` picks.
const MAX_DEFAULT_CONCURRENCY: u64 = 1024;
const ANTHROPIC_VERSION: &str = "2023-06-01";

const LONG_ABOUT: &str = "\
Sends an open-loop load to an abridge gateway (or any HTTP endpoint) and \
reports latency percentiles, achieved QPS, status codes and errors.

Request i is sent at start + i/qps whatever earlier requests did, and latency \
is measured from that due time, so a slow server shows up as latency instead \
of as a lower request rate (no coordinated omission). Requests sent during \
--warmup follow the same schedule but are not recorded.

Example:
  abridge loadtest --url http://127.0.0.1:8080 --key sk-ab-... \\
      --qps 2000 --duration 30s --stream --max-p99 50ms --min-success 99.9

Exit status: 0, or 1 when --max-p99 or --min-success fails (the reason is \
printed on one line).";

/// Which request to send.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// POST {url}/v1/messages with a small Anthropic request.
    Messages,
    /// POST {url}/v1/messages/count_tokens.
    CountTokens,
    /// GET {url}/health.
    Health,
    /// POST --body to {url} itself, unchanged.
    Raw,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::CountTokens => "count-tokens",
            Self::Health => "health",
            Self::Raw => "raw",
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(
    about = "Load-test a gateway with an open-loop schedule (e.g. abridge loadtest --qps 2000 --duration 30s)",
    long_about = LONG_ABOUT
)]
pub struct Args {
    /// Base URL of the target; with --endpoint raw, the exact URL to POST to.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Requests per second to send, whatever the responses do.
    #[arg(long, default_value_t = 1000)]
    pub qps: u64,

    /// How long to measure, after the warmup (e.g. 30s, 2m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Most requests in flight (one worker each); due requests beyond it wait
    /// and that wait counts as latency. [default: qps/4, enough for 250 ms
    /// responses, at least min(qps, 64), at most 1024]
    #[arg(long)]
    pub concurrency: Option<usize>,

    /// Which request to send.
    #[arg(long, value_enum, default_value_t = Endpoint::Messages)]
    pub endpoint: Endpoint,

    /// Ask for a streamed response ("stream": true) and also report time to
    /// first byte and output tokens per second.
    #[arg(long)]
    pub stream: bool,

    /// Client API key, sent as the x-api-key header.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,

    /// Model to ask for in the generated body (also replaces the model of a
    /// --body for messages and count-tokens). [default: claude-3-5-haiku-latest]
    #[arg(long)]
    pub model: Option<String>,

    /// JSON file to send as the request body instead of the built-in one
    /// (required with --endpoint raw).
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,

    /// Send on the same schedule for this long first without recording, to
    /// open connections and warm caches (0s to skip).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// Print the report as one JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Fail (exit 1) if the p99 latency, measured from due time, is above
    /// this (e.g. 50ms).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_p99: Option<Duration>,

    /// Fail (exit 1) if the share of 2xx responses, in percent, is below
    /// this (e.g. 99.9).
    #[arg(long, value_name = "PERCENT")]
    pub min_success: Option<f64>,

    /// Sample this process's CPU time and memory from /proc (Linux) and report
    /// the server's CPU per request and its peak and final RSS.
    #[arg(long, value_name = "PID")]
    pub watch_pid: Option<u32>,

    /// Give up on one request after this long, body included.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs the load test: prints the report (table or `--json`) on stdout and
/// warnings on stderr. Returns exit code 1 when an SLO failed, 0 otherwise;
/// an `Err` means the flags were wrong or the run could not start.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let (config, slo) = resolve(args)?;
    let concurrency = config.concurrency;
    let client = HttpClient::new(&HttpSettings {
        max_keepalive_connections: concurrency,
        max_connections: concurrency,
        keepalive_expiry: Duration::from_secs(90),
        ..HttpSettings::default()
    })
    .context("cannot build the HTTP client")?;

    let mut report = loadtest::run(config, client).await?;
    if !slo.is_empty() {
        report.slo = Some(slo.check(&report));
    }

    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render::text(&report));
    }
    if let Some(warning) = report.lag_warning() {
        eprintln!("{warning}");
    }
    match report.slo.and_then(|v| v.reason) {
        Some(reason) => {
            eprintln!("{reason}");
            Ok(ExitCode::from(1))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Checks the flags and prepares the request once for the whole run.
fn resolve(args: Args) -> anyhow::Result<(Config, Slo)> {
    ensure!(args.qps >= 1, "--qps must be at least 1");
    ensure!(
        !args.duration.is_zero(),
        "--duration must be longer than 0s"
    );
    ensure!(!args.timeout.is_zero(), "--timeout must be longer than 0s");
    if let Some(min) = args.min_success {
        ensure!(
            (0.0..=100.0).contains(&min),
            "--min-success is a percentage between 0 and 100, got {min}"
        );
    }
    let concurrency = match args.concurrency {
        Some(0) => bail!("--concurrency must be at least 1"),
        Some(n) => n,
        None => default_concurrency(args.qps),
    };
    if args.stream {
        ensure!(
            matches!(args.endpoint, Endpoint::Messages | Endpoint::Raw),
            "--stream only applies to --endpoint messages or raw"
        );
    }

    let base = parse_url(&args.url)?;
    let body = args.body.as_deref().map(read_body).transpose()?;
    let model = args.model.as_deref();
    let (method, url, body) = match args.endpoint {
        Endpoint::Messages => (
            reqwest::Method::POST,
            join(&base, "/v1/messages")?,
            Some(anthropic_body(body, model, true, args.stream)?),
        ),
        Endpoint::CountTokens => (
            reqwest::Method::POST,
            join(&base, "/v1/messages/count_tokens")?,
            Some(anthropic_body(body, model, false, false)?),
        ),
        Endpoint::Health => {
            ensure!(
                body.is_none(),
                "--body does not apply to --endpoint health (a GET)"
            );
            (reqwest::Method::GET, join(&base, "/health")?, None)
        }
        Endpoint::Raw => {
            let body = body.context("--endpoint raw needs --body FILE (the exact JSON to POST)")?;
            (reqwest::Method::POST, base, Some(body))
        }
    };

    let mut headers = Vec::new();
    if body.is_some() {
        headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    }
    if matches!(args.endpoint, Endpoint::Messages | Endpoint::CountTokens) {
        headers.push((
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        ));
    }
    if let Some(key) = &args.key {
        let mut value = HeaderValue::from_str(key)
            .map_err(|_| anyhow::anyhow!("--key contains characters not allowed in a header"))?;
        value.set_sensitive(true);
        headers.push((HeaderName::from_static("x-api-key"), value));
    }

    let config = Config {
        target: Target {
            method,
            url,
            headers,
            body: body.map(|b| Bytes::from(serde_json::to_vec(&b).unwrap_or_default())),
            stream: args.stream,
            timeout: args.timeout,
        },
        endpoint: args.endpoint.name(),
        qps: args.qps,
        duration: args.duration,
        warmup: args.warmup,
        concurrency,
        watch_pid: args.watch_pid,
        progress: true,
    };
    let slo = Slo {
        max_p99: args.max_p99,
        min_success_pct: args.min_success,
    };
    Ok((config, slo))
}

/// Enough workers for 250 ms responses at the target rate, within bounds
/// that keep a low-rate run small and a high-rate run's memory in check.
fn default_concurrency(qps: u64) -> usize {
    let n = (qps / 4).clamp(qps.min(64), MAX_DEFAULT_CONCURRENCY);
    usize::try_from(n).unwrap_or(1).max(1)
}

fn parse_url(text: &str) -> anyhow::Result<reqwest::Url> {
    let url =
        reqwest::Url::parse(text).with_context(|| format!("--url {text:?} is not a valid URL"))?;
    ensure!(
        matches!(url.scheme(), "http" | "https") && url.host().is_some(),
        "--url {text:?} must be an http:// or https:// URL with a host"
    );
    Ok(url)
}

/// `base` + `path`, keeping any path prefix of the base
/// (`http://h/prefix` + `/v1/messages` = `http://h/prefix/v1/messages`).
fn join(base: &reqwest::Url, path: &str) -> anyhow::Result<reqwest::Url> {
    let joined = format!("{}{path}", base.as_str().trim_end_matches('/'));
    reqwest::Url::parse(&joined).with_context(|| format!("cannot build the URL {joined:?}"))
}

fn read_body(path: &std::path::Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read(path).with_context(|| format!("cannot read --body {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("--body {} is not JSON", path.display()))
}

/// The request body for `messages` / `count-tokens`: the `--body` file or a
/// small default, with `--model` applied; `max_tokens` and `stream` only
/// belong to `messages`.
fn anthropic_body(
    custom: Option<Value>,
    model: Option<&str>,
    messages: bool,
    stream: bool,
) -> anyhow::Result<Value> {
    let mut body = match custom {
        Some(body) => body,
        None => json!({
            "model": DEFAULT_MODEL,
            "messages": [{"role": "user", "content": "Reply with one short sentence."}],
        }),
    };
    let endpoint = if messages { "messages" } else { "count-tokens" };
    let object = body
        .as_object_mut()
        .with_context(|| format!("--body for --endpoint {endpoint} must be a JSON object"))?;
    if let Some(model) = model {
        object.insert("model".into(), model.into());
    }
    if messages {
        object.entry("max_tokens").or_insert(64.into());
        if stream {
            object.insert("stream".into(), true.into());
        }
    }
    Ok(body)
}

const DEFAULT_MODEL: &str = "claude-3-5-haiku-latest";

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(flags: &[&str]) -> Args {
        let argv = std::iter::once("loadtest").chain(flags.iter().copied());
        Cli::try_parse_from(argv).unwrap().args
    }

    fn error(flags: &[&str]) -> String {
        format!("{:#}", resolve(args(flags)).unwrap_err())
    }

    #[test]
    fn defaults_build_an_anthropic_messages_request() {
        let (config, slo) = resolve(args(&[])).unwrap();
        assert!(slo.is_empty());
        assert_eq!(
            config.target.url.as_str(),
            "http://127.0.0.1:8080/v1/messages"
        );
        assert_eq!(config.target.method, reqwest::Method::POST);
        assert_eq!((config.qps, config.concurrency), (1000, 250));
        assert_eq!(config.duration, Duration::from_secs(60));
        let body: Value = serde_json::from_slice(config.target.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["model"], DEFAULT_MODEL);
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn stream_model_and_key_shape_the_request() {
        let flags = [
            "--url",
            "http://h:1/pre/",
            "--stream",
            "--model",
            "m",
            "--key",
            "sk-1",
        ];
        let (config, _) = resolve(args(&flags)).unwrap();
        assert_eq!(config.target.url.as_str(), "http://h:1/pre/v1/messages");
        let body: Value = serde_json::from_slice(config.target.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            (body["model"].as_str(), body["stream"].as_bool()),
            (Some("m"), Some(true))
        );
        assert!(
            config
                .target
                .headers
                .iter()
                .any(|(n, v)| n == "x-api-key" && v == "sk-1")
        );
    }

    #[test]
    fn health_is_a_get_without_body() {
        let (config, _) = resolve(args(&["--endpoint", "health"])).unwrap();
        assert_eq!(config.target.method, reqwest::Method::GET);
        assert_eq!(config.target.url.as_str(), "http://127.0.0.1:8080/health");
        assert!(config.target.body.is_none());
    }

    #[test]
    fn default_concurrency_scales_with_qps() {
        assert_eq!(default_concurrency(1), 1);
        assert_eq!(default_concurrency(100), 64);
        assert_eq!(default_concurrency(2000), 500);
        assert_eq!(default_concurrency(1_000_000), 1024);
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        assert_eq!(error(&["--qps", "0"]), "--qps must be at least 1");
        assert!(
            error(&["--url", "not a url"]).starts_with("--url \"not a url\" is not a valid URL")
        );
        assert!(error(&["--url", "ftp://h"]).contains("must be an http:// or https:// URL"));
        assert!(error(&["--endpoint", "raw"]).contains("needs --body"));
        assert!(
            error(&["--body", "/nonexistent/body.json"])
                .starts_with("cannot read --body /nonexistent/body.json")
        );
        assert!(error(&["--endpoint", "health", "--stream"]).contains("--stream only applies"));
        assert!(error(&["--min-success", "120"]).contains("between 0 and 100"));

        let dir = std::env::temp_dir().join(format!("abridge-loadtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_json = dir.join("body.txt");
        std::fs::write(&not_json, "hello").unwrap();
        let not_json = not_json.to_str().unwrap();
        assert!(error(&["--body", not_json]).contains("is not JSON"));
        let array = dir.join("array.json");
        std::fs::write(&array, "[1]").unwrap();
        assert!(error(&["--body", array.to_str().unwrap()]).contains("must be a JSON object"));
        // raw takes any JSON, unchanged.
        let (config, _) = resolve(args(&[
            "--endpoint",
            "raw",
            "--url",
            "http://h/x",
            "--body",
            array.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(config.target.body.as_deref(), Some(&b"[1]"[..]));
        assert_eq!(config.target.url.as_str(), "http://h/x");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
