//! The provider model: what an operator configures for one upstream, and how
//! provider files (`providers.toml`, or the original's `provider.json` with
//! `${ENV}` substitution) are read. Plain data; no I/O beyond reading a file.
//!
//! Besides `providers`, a file may set the original's routing keys
//! `fallback_strategy` and `circuit_breaker { failure_threshold,
//! recovery_timeout, enabled }` (see `config::Settings::routing_with` for
//! how they combine with `abridge.toml` and the environment). Any other
//! top-level key, a provider's `api_version` and model categories other
//! than big/middle/small are accepted and named in a warning: the original
//! wrote them, abridge does not use them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{FileRouting, Secret, Strategy, duration};

/// Which wire protocol the upstream speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiFormat {
    #[default]
    Openai,
    Anthropic,
}

impl ApiFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiFormat::Openai => "openai",
            ApiFormat::Anthropic => "anthropic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "openai" => Some(ApiFormat::Openai),
            "anthropic" => Some(ApiFormat::Anthropic),
            _ => None,
        }
    }
}

/// The model tiers a Claude family name maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Big,
    Middle,
    Small,
}

/// Upstream model ids per tier, in preference order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Models {
    pub big: Vec<String>,
    pub middle: Vec<String>,
    pub small: Vec<String>,
    /// Free-form categories of the original's `models` map; kept so imports
    /// do not fail, reported as ignored.
    #[serde(flatten, skip_serializing)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Models {
    pub fn tier(&self, tier: Tier) -> &[String] {
        match tier {
            Tier::Big => &self.big,
            Tier::Middle => &self.middle,
            Tier::Small => &self.small,
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.big.iter().chain(&self.middle).chain(&self.small)
    }
}

fn default_one<T: From<u8>>() -> T {
    T::from(1)
}
fn default_true() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(180)
}
fn default_retries() -> u32 {
    2
}

/// One provider as configured. Every field survives the store round trip,
/// and `PartialEq` compares them all, so a reload sees any change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    pub name: String,
    #[serde(default)]
    pub api_format: ApiFormat,
    /// OpenAI: the base ending in `/v1`; Anthropic: the root (…/v1 is added).
    pub base_url: String,
    /// One key (the original's field); merged into `api_keys` by `normalize`.
    #[serde(default, skip_serializing)]
    pub api_key: Option<Secret>,
    /// Keys used in turn; see `upstream::keys` for quarantine and cool-down.
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// Lower is tried first.
    #[serde(default = "default_one")]
    pub priority: i64,
    /// Share of traffic under the `weighted` strategy.
    #[serde(default = "default_one")]
    pub weight: u32,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Total time for a non-streaming request.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Time to the first byte of a stream (default: `timeout`).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub first_byte_timeout: Option<Duration>,
    /// Attempts beyond the first on retryable failures.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Extra headers; `${API_KEY}` in a value is replaced by the key in use.
    /// Sealed in the store like the keys: values often carry credentials.
    #[serde(default)]
    pub custom_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub models: Models,
    /// Cap on `max_tokens` sent to this provider (both formats).
    #[serde(default)]
    pub max_tokens_limit: Option<u32>,
    /// Whether `name/model` may name a model not listed in `models`.
    #[serde(default)]
    pub allow_any_model: bool,
    /// `reasoning_effort` values an OpenAI-format provider accepts (e.g.
    /// `["minimal", "low", "medium", "high"]`); empty: it gets none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasoning_efforts: Vec<crate::protocol::Effort>,
    /// Written by the original's files; ignored with a warning by `normalize`.
    #[serde(default, skip_serializing)]
    pub api_version: Option<String>,
}

impl ProviderSpec {
    /// Moves `api_key` into `api_keys`, drops what abridge ignores (naming
    /// it in `warnings`) and checks the values.
    pub fn normalize(mut self, warnings: &mut Vec<String>) -> Result<Self, String> {
        if let Some(key) = self.api_key.take()
            && !self.api_keys.contains(&key)
        {
            self.api_keys.insert(0, key);
        }
        self.api_keys.retain(|k| !k.expose().is_empty());
        if self.name.trim().is_empty() {
            return Err("provider name must not be empty".into());
        }
        if self.api_version.take().is_some() {
            warnings.push(format!(
                "provider {}: `api_version` is ignored (abridge forwards the client's anthropic-version)",
                self.name
            ));
        }
        let other = std::mem::take(&mut self.models.other);
        if !other.is_empty() {
            let names: Vec<&str> = other.keys().map(String::as_str).collect();
            warnings.push(format!(
                "provider {}: model categories other than big/middle/small are ignored: {}",
                self.name,
                names.join(", ")
            ));
        }
        if self.timeout.is_zero() {
            return Err(format!(
                "provider {}: timeout must be longer than 0s",
                self.name
            ));
        }
        if self.first_byte_timeout.is_some_and(|t| t.is_zero()) {
            return Err(format!(
                "provider {}: first_byte_timeout must be longer than 0s",
                self.name
            ));
        }
        let url = self.base_url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "provider {}: base_url `{}` must start with http:// or https://",
                self.name, self.base_url
            ));
        }
        self.base_url = url;
        if self.weight == 0 {
            return Err(format!("provider {}: weight must be at least 1", self.name));
        }
        Ok(self)
    }

    /// Endpoint for a request path (`/chat/completions`, `/messages`, `/messages/count_tokens`).
    pub fn endpoint(&self, path: &str) -> String {
        match self.api_format {
            ApiFormat::Openai => format!("{}{path}", self.base_url),
            ApiFormat::Anthropic if self.base_url.ends_with("/v1") => {
                format!("{}{path}", self.base_url)
            }
            ApiFormat::Anthropic => format!("{}/v1{path}", self.base_url),
        }
    }

    pub fn first_byte_timeout(&self) -> Duration {
        self.first_byte_timeout.unwrap_or(self.timeout)
    }
}

/// A providers file as written: `[[providers]]` in TOML, or the original's
/// JSON, each with the original's optional routing keys.
#[derive(Debug, Deserialize)]
struct RawFile {
    #[serde(default)]
    providers: Vec<ProviderSpec>,
    #[serde(default)]
    fallback_strategy: Option<Strategy>,
    #[serde(default)]
    circuit_breaker: Option<CircuitBreaker>,
    /// Anything else: named in a warning.
    #[serde(flatten)]
    other: BTreeMap<String, serde::de::IgnoredAny>,
}

/// The original's `circuit_breaker` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CircuitBreaker {
    #[serde(default)]
    failure_threshold: Option<u32>,
    #[serde(default, with = "duration::option")]
    recovery_timeout: Option<Duration>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// What a providers file says, checked.
#[derive(Debug, Default)]
pub struct ProvidersFile {
    pub providers: Vec<ProviderSpec>,
    /// Routing keys the file sets.
    pub routing: FileRouting,
    /// What the file says that abridge ignores, one line each.
    pub warnings: Vec<String>,
}

/// Replaces `${NAME}` with the environment variable's value. `${API_KEY}` is
/// left for request time when no such variable exists.
pub fn substitute_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match (valid, env(name)) {
            (true, Some(value)) => out.push_str(&value),
            (true, None) if name == "API_KEY" => out.push_str("${API_KEY}"),
            (true, None) => {
                return Err(format!(
                    "environment variable {name} (used as ${{{name}}}) is not set"
                ));
            }
            (false, _) => out.push_str(&rest[start..start + 3 + end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads a providers file; `.json` is the original's schema, anything else TOML.
pub fn load_file(path: &Path) -> Result<ProvidersFile, String> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = substitute_env(&raw, &|name| std::env::var(name).ok())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let file: RawFile = if path.extension().is_some_and(|e| e == "json") {
        let de = &mut serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| format!("{}: key `{}`: {}", path.display(), e.path(), e.inner()))?
    } else {
        let de = toml::Deserializer::parse(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            format!(
                "{}: key `{}`: {}",
                path.display(),
                e.path(),
                e.inner().message()
            )
        })?
    };
    let mut warnings: Vec<String> = file
        .other
        .keys()
        .map(|key| format!("{}: top-level key `{key}` is ignored", path.display()))
        .collect();
    let breaker = file.circuit_breaker;
    let routing = FileRouting {
        strategy: file.fallback_strategy,
        failure_threshold: breaker.as_ref().and_then(|b| b.failure_threshold),
        recovery_timeout: breaker.as_ref().and_then(|b| b.recovery_timeout),
        breaker_enabled: breaker.as_ref().and_then(|b| b.enabled),
    };
    let mut seen = std::collections::HashSet::new();
    let mut providers = Vec::with_capacity(file.providers.len());
    for spec in file.providers {
        let spec = spec
            .normalize(&mut warnings)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !seen.insert(spec.name.clone()) {
            return Err(format!(
                "{}: provider name {} appears twice",
                path.display(),
                spec.name
            ));
        }
        providers.push(spec);
    }
    Ok(ProvidersFile {
        providers,
        routing,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_substitution() {
        let env = |name: &str| (name == "KEY").then(|| "sk-1".to_string());
        assert_eq!(substitute_env("a ${KEY} b", &env).unwrap(), "a sk-1 b");
        assert_eq!(
            substitute_env("Bearer ${API_KEY}", &env).unwrap(),
            "Bearer ${API_KEY}"
        );
        assert!(
            substitute_env("${MISSING}", &env)
                .unwrap_err()
                .contains("MISSING")
        );
        assert_eq!(substitute_env("cost $5 {x}", &env).unwrap(), "cost $5 {x}");
    }

    #[test]
    fn reads_the_originals_json_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider.json");
        std::fs::write(
            &path,
            r#"{"providers":[{"name":"p1","enabled":true,"priority":2,"api_key":"sk-x",
                "base_url":"https://api.example.com/v1/","timeout":60,"max_retries":1,
                "models":{"big":["gpt-4o"],"middle":["gpt-4o-mini"],"small":["gpt-4o-mini"],"gpt-4o":["x"]},
                "api_format":"openai","api_version":null}],
               "fallback_strategy":"random",
               "circuit_breaker":{"failure_threshold":7,"recovery_timeout":90,"enabled":false},
               "cache":{"enabled":true},"retry_on_zero_output_tokens":true}"#,
        )
        .unwrap();
        let file = load_file(&path).unwrap();
        let specs = &file.providers;
        assert_eq!(specs.len(), 1);
        let p = &specs[0];
        assert_eq!(p.base_url, "https://api.example.com/v1");
        assert_eq!(p.api_keys.len(), 1);
        assert_eq!(p.timeout, Duration::from_secs(60));
        assert_eq!(p.models.big, ["gpt-4o"]);
        assert_eq!(
            p.endpoint("/chat/completions"),
            "https://api.example.com/v1/chat/completions"
        );
        assert!(p.models.other.is_empty(), "ignored categories are dropped");
        assert_eq!(
            file.routing,
            FileRouting {
                strategy: Some(Strategy::Random),
                failure_threshold: Some(7),
                recovery_timeout: Some(Duration::from_secs(90)),
                breaker_enabled: Some(false),
            }
        );
        let warnings = file.warnings.join("\n");
        for named in ["`cache`", "`retry_on_zero_output_tokens`", "gpt-4o"] {
            assert!(warnings.contains(named), "{named} not in {warnings}");
        }
        assert!(!warnings.contains("fallback_strategy"), "{warnings}");
    }

    #[test]
    fn durations_read_as_seconds_or_units_and_must_be_positive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("providers.toml");
        let write = |timeouts: &str| {
            std::fs::write(
                &path,
                format!("[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\n{timeouts}\n"),
            )
            .unwrap();
        };
        write("timeout = 45\nfirst_byte_timeout = \"1500ms\"");
        let p = &load_file(&path).unwrap().providers[0];
        assert_eq!(p.timeout, Duration::from_secs(45));
        assert_eq!(p.first_byte_timeout, Some(Duration::from_millis(1500)));
        write("timeout = 0.5");
        assert_eq!(
            load_file(&path).unwrap().providers[0].timeout,
            Duration::from_millis(500)
        );
        write("timeout = \"0s\"");
        assert!(load_file(&path).unwrap_err().contains("timeout"));
    }

    #[test]
    fn reads_toml_and_names_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("providers.toml");
        std::fs::write(
            &path,
            "[[providers]]\nname = \"a\"\napi_format = \"anthropic\"\nbase_url = \"https://api.anthropic.com\"\napi_keys = [\"k1\", \"k2\"]\ntimeout = \"30s\"\n",
        )
        .unwrap();
        let specs = load_file(&path).unwrap().providers;
        assert_eq!(specs[0].api_keys.len(), 2);
        assert_eq!(
            specs[0].endpoint("/messages"),
            "https://api.anthropic.com/v1/messages"
        );
        std::fs::write(
            &path,
            "[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\nbogus = 1\n",
        )
        .unwrap();
        let err = load_file(&path).unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }
}
