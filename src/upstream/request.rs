//! Building the HTTP request one candidate gets: the body in the provider's
//! format (converted by `protocol::to_openai` for OpenAI-format providers;
//! the client's own body for Anthropic-format ones, with the model renamed,
//! `max_tokens` capped at the provider's `max_tokens_limit` and thinking
//! blocks signed by another provider family removed), the key (`Bearer` or
//! `x-api-key`), the provider's custom headers with `${API_KEY}` replaced,
//! and `anthropic-version` / `anthropic-beta` from the client. The proxy
//! and `abridge providers test` build requests here alike. Never sends.

use std::sync::OnceLock;

use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

use super::provider::ApiFormat;
use super::router::Candidate;
use super::signatures::SignatureBook;
use crate::config::Secret;
use crate::protocol::{self, anthropic};

/// Anthropic API version sent upstream when the client sends none.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Everything needed to build the upstream request for any candidate.
pub struct Outgoing<'a> {
    /// The validated request; needed to convert for OpenAI-format providers
    /// (`None` for endpoints only Anthropic-format providers serve).
    pub typed: Option<&'a anthropic::MessagesRequest>,
    /// The body as sent, passed on to Anthropic-format providers.
    pub raw: &'a [u8],
    /// `raw` parsed, on first use only: OpenAI-format candidates never need it.
    parsed: OnceLock<Map<String, Value>>,
    /// The client's headers, for `anthropic-version` and `anthropic-beta`.
    pub client_headers: &'a HeaderMap,
    /// Anthropic path: `/messages` or `/messages/count_tokens`.
    pub path: &'static str,
    pub stream: bool,
    /// Signature issuers, to keep foreign signed thinking away from a provider.
    pub signatures: &'a SignatureBook,
}

impl<'a> Outgoing<'a> {
    pub fn new(
        typed: Option<&'a anthropic::MessagesRequest>,
        raw: &'a [u8],
        client_headers: &'a HeaderMap,
        path: &'static str,
        stream: bool,
        signatures: &'a SignatureBook,
    ) -> Self {
        Self {
            typed,
            raw,
            parsed: OnceLock::new(),
            client_headers,
            path,
            stream,
            signatures,
        }
    }

    /// Builds the upstream request for one candidate and key.
    pub fn build(
        &self,
        http: &reqwest::Client,
        candidate: &Candidate,
        key: Option<&Secret>,
    ) -> Result<reqwest::RequestBuilder, String> {
        let spec = &candidate.upstream.spec;
        let mut builder = match spec.api_format {
            ApiFormat::Openai => {
                let target = protocol::to_openai::Target {
                    model: &candidate.model,
                    max_tokens_limit: spec.max_tokens_limit,
                    stream: self.stream,
                    reasoning_efforts: &spec.reasoning_efforts,
                };
                let request = self
                    .typed
                    .ok_or("this endpoint is not available on OpenAI-format providers")?;
                let chat =
                    protocol::to_openai::to_openai(request, &target).map_err(|e| e.to_string())?;
                let body = serde_json::to_vec(&chat).map_err(|e| e.to_string())?;
                let mut b = http
                    .post(candidate.upstream.url("/chat/completions")?)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body);
                if let Some(key) = key {
                    b = b.bearer_auth(key.expose());
                }
                b
            }
            ApiFormat::Anthropic => {
                let body = self.passthrough_body(candidate)?;
                let version = self
                    .client_headers
                    .get("anthropic-version")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(DEFAULT_ANTHROPIC_VERSION);
                let mut b = http
                    .post(candidate.upstream.url(self.path)?)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("anthropic-version", version)
                    .body(body);
                for value in self.client_headers.get_all("anthropic-beta") {
                    b = b.header("anthropic-beta", value.as_bytes());
                }
                if let Some(key) = key
                    && !spec
                        .custom_headers
                        .keys()
                        .any(|h| h.eq_ignore_ascii_case("authorization"))
                {
                    b = b.header("x-api-key", key.expose());
                }
                b
            }
        };
        for (name, value) in &spec.custom_headers {
            let value = match key {
                Some(key) => value.replace("${API_KEY}", key.expose()),
                None => value.clone(),
            };
            builder = builder.header(name.as_str(), value);
        }
        Ok(builder)
    }

    /// The client's body for an Anthropic-format candidate (see module doc).
    fn passthrough_body(&self, candidate: &Candidate) -> Result<Vec<u8>, String> {
        let spec = &candidate.upstream.spec;
        let mut body = self.parsed.get_or_init(|| raw_object(self.raw)).clone();
        if protocol::thinking::has_thinking(&body) {
            let family = &candidate.upstream.family;
            let removed = protocol::thinking::strip_unaccepted(&mut body, |sig| {
                self.signatures.accepts(sig, family)
            });
            if removed > 0 {
                tracing::debug!(provider = %spec.name, removed, "dropped thinking blocks signed elsewhere");
            }
        }
        body.insert("model".into(), Value::String(candidate.model.clone()));
        if let Some(limit) = spec.max_tokens_limit
            && body
                .get("max_tokens")
                .and_then(Value::as_u64)
                .is_some_and(|asked| asked > u64::from(limit))
        {
            body.insert("max_tokens".into(), Value::from(limit));
        }
        serde_json::to_vec(&body).map_err(|e| e.to_string())
    }
}

/// The request body as a JSON object, kept whole for passthrough.
fn raw_object(body: &[u8]) -> Map<String, Value> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::RoutingSettings;
    use crate::upstream::provider::ProviderSpec;
    use crate::upstream::router::{Source, Upstream};

    fn candidate(format: &str, limit: Option<u32>) -> Candidate {
        let spec: ProviderSpec = serde_json::from_value(serde_json::json!({
            "name": "p", "api_format": format, "base_url": "http://127.0.0.1:1",
            "max_tokens_limit": limit,
            "custom_headers": {"x-org": "org-1", "x-key-copy": "k=${API_KEY}"}
        }))
        .unwrap();
        Candidate {
            upstream: Arc::new(Upstream::new(
                spec,
                Source::File,
                &RoutingSettings::default(),
            )),
            model: "up-model".into(),
        }
    }

    fn built(outgoing: &Outgoing, candidate: &Candidate) -> (reqwest::Request, Value) {
        let http = reqwest::Client::new();
        let request = outgoing
            .build(&http, candidate, Some(&Secret::new("sk-1")))
            .unwrap()
            .build()
            .unwrap();
        let body = serde_json::from_slice(request.body().unwrap().as_bytes().unwrap()).unwrap();
        (request, body)
    }

    #[test]
    fn passthrough_renames_caps_and_sets_the_headers() {
        let raw = br#"{"model":"opus","max_tokens":9000,"messages":[{"role":"user","content":"x"}],"extra":1}"#;
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-beta", "tools-2024".parse().unwrap());
        let book = SignatureBook::default();
        let outgoing = Outgoing::new(None, raw, &headers, "/messages", false, &book);
        let (request, body) = built(&outgoing, &candidate("anthropic", Some(4096)));
        assert_eq!(request.url().as_str(), "http://127.0.0.1:1/v1/messages");
        assert_eq!(body["model"], "up-model");
        assert_eq!(body["max_tokens"], 4096, "capped at max_tokens_limit");
        assert_eq!(body["extra"], 1);
        let h = request.headers();
        assert_eq!(h["x-api-key"], "sk-1");
        assert_eq!(h["anthropic-version"], DEFAULT_ANTHROPIC_VERSION);
        assert_eq!(h["anthropic-beta"], "tools-2024");
        assert_eq!(h["x-org"], "org-1");
        assert_eq!(h["x-key-copy"], "k=sk-1");

        let (_, body) = built(&outgoing, &candidate("anthropic", Some(100_000)));
        assert_eq!(body["max_tokens"], 9000, "under the limit: unchanged");
    }

    #[test]
    fn openai_format_is_converted_with_a_bearer_key() {
        let raw =
            br#"{"model":"opus","max_tokens":9000,"messages":[{"role":"user","content":"x"}]}"#;
        let typed = protocol::parse_messages_request(raw).unwrap();
        let headers = HeaderMap::new();
        let book = SignatureBook::default();
        let outgoing = Outgoing::new(Some(&typed), raw, &headers, "/messages", true, &book);
        let (request, body) = built(&outgoing, &candidate("openai", Some(4096)));
        assert_eq!(
            request.url().as_str(),
            "http://127.0.0.1:1/chat/completions"
        );
        assert_eq!(request.headers()["authorization"], "Bearer sk-1");
        assert_eq!(request.headers()["x-key-copy"], "k=sk-1");
        assert_eq!(body["model"], "up-model");
        assert_eq!(body["max_tokens"], 4096);
        assert_eq!(body["stream"], true);
    }
}
