//! `Settings`: every knob of the gateway, layered as
//! defaults < `abridge.toml` < environment < command-line flags.
//!
//! The environment names of the Python original are kept (`DB_POOL_SIZE`,
//! `HTTP_MAX_CONNECTIONS`, ...); new settings use an `ABRIDGE_` prefix. Every
//! setting also has a key in the file, and [`ENV_VARS`] is the one table that
//! ties the two together, so `--print-config`, the README table and the
//! loader cannot drift apart. Errors name the variable or key path and the
//! allowed values. This module reads the config file and the environment and
//! does no other I/O.
//!
//! It also owns the value types shared below it: [`Secret`], durations (one
//! parser, [`parse_duration`], for the environment, `abridge.toml` and the
//! providers file, through the [`duration`] serde glue) and [`HttpSettings`].
//!
//! A providers file may carry routing keys too (the original's
//! `fallback_strategy` and `circuit_breaker`): [`Settings::routing_with`]
//! applies them over the built-in defaults, but a key set in `abridge.toml`
//! or the environment wins, so the operator's deployment config is never
//! overridden by a file carried over from the original.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A configuration error: the process exits with status 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A secret value: printed and serialized as `*****`, never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("*****")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The effective settings of one process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub secrets: SecretSettings,
    pub admin: AdminSettings,
    pub http: HttpSettings,
    pub routing: RoutingSettings,
    pub cache: CacheSettings,
    pub telemetry: TelemetrySettings,
    pub sso: SsoSettings,
    pub catalog: CatalogSettings,
    /// Keys (`routing.strategy`, ...) set in `abridge.toml`, the environment
    /// or a flag rather than left at their defaults; a providers file may
    /// only change the others.
    #[serde(skip)]
    pub explicit: BTreeSet<&'static str>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address `abridge serve` listens on.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes (Claude Code sends several MB).
    pub max_body_bytes: usize,
    /// How long graceful shutdown waits for in-flight requests.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// Optional providers file (`providers.toml` or the original's `provider.json`).
    pub providers_file: Option<PathBuf>,
    /// Log filter, in `RUST_LOG` syntax.
    pub log: String,
    /// Silence on a converted stream after which a `ping` event is sent.
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    // Bounds on what one client can hold (issue 8 §5).
    /// Client connections open at once; beyond it new connections wait in
    /// the listen backlog until one closes.
    pub max_client_connections: usize,
    /// Longest a request body may take to arrive once the handler starts
    /// reading it (a slow or stalled upload gets 408 and the connection is
    /// closed).
    #[serde(with = "duration")]
    pub body_timeout: Duration,
    /// Longest a write to a client may stay blocked (the client stopped
    /// reading); then the connection is closed and its upstream released.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// Whether `/ready` shows provider, key and log-writer detail to callers
    /// with a valid client API key. Anonymous callers only ever get the
    /// status. The admin API (issue 10) replaces this with an operator
    /// credential.
    pub ready_detail: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 32 * 1024 * 1024,
            shutdown_timeout: Duration::from_secs(30),
            providers_file: None,
            log: "info".into(),
            ping_interval: Duration::from_secs(10),
            max_client_connections: 4096,
            body_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(20),
            ready_detail: false,
        }
    }
}

/// The upstream connection pool and the limits on what it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Idle connections kept per host for reuse (`HTTP_MAX_KEEPALIVE_CONNECTIONS`).
    pub max_keepalive_connections: usize,
    /// Connections open at once, across all hosts (`HTTP_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// How long an idle connection is kept (`HTTP_KEEPALIVE_EXPIRY`).
    #[serde(with = "duration")]
    pub keepalive_expiry: Duration,
    /// How long a request waits for one of `max_connections` before the
    /// client gets our own `529 overloaded_error`; never counted against a
    /// provider.
    #[serde(with = "duration")]
    pub connection_wait: Duration,
    /// Largest non-streaming upstream answer read, in bytes.
    pub max_response_bytes: usize,
    /// Largest streamed upstream answer relayed, in bytes, in total.
    pub max_stream_bytes: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_keepalive_connections: 50,
            max_connections: 200,
            keepalive_expiry: Duration::from_secs(60),
            connection_wait: Duration::from_secs(10),
            max_response_bytes: 32 * 1024 * 1024,
            max_stream_bytes: 256 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` (or `sqlite::memory:`).
    pub url: String,
    /// Reader connections; SQLite in WAL mode has one writer besides them.
    pub pool_size: usize,
    /// How long a request waits for a free reader before failing.
    #[serde(with = "duration")]
    pub pool_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://./abridge.db".into(),
            pool_size: 10,
            pool_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretSettings {
    /// Signs admin session tokens; ephemeral when unset.
    pub jwt_secret_key: Option<Secret>,
    /// 32 bytes, base64: seals provider API keys; ephemeral when unset.
    pub encryption_key: Option<Secret>,
    pub jwt_token_expire_minutes: u64,
}

impl Default for SecretSettings {
    fn default() -> Self {
        Self {
            jwt_secret_key: None,
            encryption_key: None,
            jwt_token_expire_minutes: 1440,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Email of the admin created on first start.
    pub email: String,
    /// Password of that admin (≥ 12 characters); generated and printed once when unset.
    pub password: Option<Secret>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            email: "admin@localhost".into(),
            password: None,
        }
    }
}

/// How candidates for a model are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Priority,
    Random,
    Weighted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingSettings {
    pub strategy: Strategy,
    /// Requests in a row that failed on a provider before its breaker opens.
    pub failure_threshold: u32,
    /// How long an open breaker waits before one probe request.
    #[serde(with = "duration")]
    pub recovery_timeout: Duration,
    /// Whether breakers open at all (the original's `circuit_breaker.enabled`).
    pub breaker_enabled: bool,
    /// First backoff delay; doubles per attempt, with jitter.
    #[serde(with = "duration")]
    pub backoff: Duration,
    /// Keep a conversation on the provider that served it while it is healthy.
    pub sticky: bool,
    /// Authentication failures of one key, in different requests and with
    /// no accepted answer in between, that quarantine it.
    pub key_quarantine_threshold: u32,
    /// How long a key's first quarantine lasts; each further one in a row
    /// lasts twice as long as the previous, up to `key_quarantine_max`.
    #[serde(with = "duration")]
    pub key_quarantine: Duration,
    /// The longest a key stays quarantined before it is tried again.
    #[serde(with = "duration")]
    pub key_quarantine_max: Duration,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            strategy: Strategy::Priority,
            failure_threshold: 5,
            recovery_timeout: Duration::from_secs(60),
            breaker_enabled: true,
            backoff: Duration::from_millis(200),
            sticky: false,
            key_quarantine_threshold: 3,
            key_quarantine: Duration::from_secs(30),
            key_quarantine_max: Duration::from_secs(30 * 60),
        }
    }
}

/// Routing keys a providers file may set: the original's `fallback_strategy`
/// and `circuit_breaker { failure_threshold, recovery_timeout, enabled }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileRouting {
    pub strategy: Option<Strategy>,
    pub failure_threshold: Option<u32>,
    pub recovery_timeout: Option<Duration>,
    pub breaker_enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheType {
    Memory,
    Redis,
    Multi,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    pub cache_type: CacheType,
    pub multi_level: bool,
    pub max_size: u64,
    #[serde(with = "duration")]
    pub default_ttl: Duration,
    pub redis_max_conn: usize,
    pub redis_url: Option<Secret>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            cache_type: CacheType::Memory,
            multi_level: false,
            max_size: 1000,
            default_ttl: Duration::from_secs(3600),
            redis_max_conn: 20,
            redis_url: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    pub enabled: bool,
    pub otlp_endpoint: Option<String>,
    pub service_version: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            enabled: false,
            otlp_endpoint: None,
            service_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// One OAuth client registered with a sign-on provider.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OauthClient {
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// This gateway's callback, e.g. `https://gw.example.com/api/auth/sso/google/callback`.
    pub redirect_uri: Option<String>,
}

impl OauthClient {
    pub fn enabled(&self) -> bool {
        self.client_id.as_deref().is_some_and(|id| !id.is_empty())
    }
}

/// Single sign-on: off unless a provider's client id is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsoSettings {
    /// Any OpenID Connect issuer, found through discovery.
    pub oidc: OauthClient,
    /// Issuer URL of the generic provider (discovery at `/.well-known/openid-configuration`).
    pub oidc_issuer: Option<String>,
    /// Scopes asked of the generic provider, space separated.
    pub oidc_scopes: String,
    pub google: OauthClient,
    pub microsoft: OauthClient,
    /// Entra ID tenant (a GUID or domain; `common` cannot be verified).
    pub microsoft_tenant_id: Option<String>,
    pub github: OauthClient,
    /// `https://github.com`, or a GitHub Enterprise Server's URL.
    pub github_url: String,
    /// Email domains whose unknown users get an account on first sign-on.
    pub allowed_domains: Vec<String>,
    /// Role of users created on first sign-on.
    pub default_role: crate::store::Role,
}

impl Default for SsoSettings {
    fn default() -> Self {
        Self {
            oidc: OauthClient::default(),
            oidc_issuer: None,
            oidc_scopes: "openid email profile".into(),
            google: OauthClient::default(),
            microsoft: OauthClient::default(),
            microsoft_tenant_id: None,
            github: OauthClient::default(),
            github_url: "https://github.com".into(),
            allowed_domains: Vec::new(),
            default_role: crate::store::Role::Member,
        }
    }
}

/// Claude model ids `/v1/models` lists besides the built-in table
/// (`upstream::catalog`), for releases newer than this binary. File only:
/// `[[catalog.models]]` entries in `abridge.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    pub models: Vec<CatalogModel>,
}

/// One client-facing Claude model id and the tier it is routed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogModel {
    pub id: String,
    /// Shown as `display_name`; the id when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Release date: `2026-05-28` or RFC 3339.
    #[serde(with = "release_date")]
    pub created_at: std::time::SystemTime,
    /// `big`, `middle` or `small`; unset: the family the id names
    /// (`opus`, `sonnet`, `haiku`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<crate::upstream::provider::Tier>,
}

/// Serde glue for release dates: `YYYY-MM-DD` or RFC 3339 in, RFC 3339 out.
pub mod release_date {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses `2026-05-28` (midnight UTC) or an RFC 3339 timestamp.
    pub fn parse(raw: &str) -> Result<SystemTime, String> {
        let raw = raw.trim();
        let full = if raw.len() == 10 {
            format!("{raw}T00:00:00Z")
        } else {
            raw.to_string()
        };
        humantime::parse_rfc3339(&full)
            .map_err(|_| format!("`{raw}` is not a date like 2026-05-28 or 2026-05-28T00:00:00Z"))
    }

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What one environment variable sets: its file key and a parser into `Settings`.
pub struct EnvVar {
    pub name: &'static str,
    pub key: &'static str,
    pub help: &'static str,
    apply: fn(&mut Settings, &str) -> Result<(), String>,
}

fn parse_num<T: std::str::FromStr>(raw: &str) -> Result<T, String> {
    raw.trim()
        .parse()
        .map_err(|_| format!("`{raw}` is not a whole number"))
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("`{raw}` is not a boolean (true/false)")),
    }
}

/// The one duration parser (environment, `abridge.toml`, providers file):
/// `30s`, `500ms`, `2m`, or a bare number of seconds (`30`, `0.5`), as the
/// original took them.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<f64>() {
        return duration_from_secs(secs);
    }
    humantime::parse_duration(raw)
        .map_err(|_| format!("`{raw}` is not a duration (e.g. 30s, 500ms, 2m, or seconds)"))
}

fn duration_from_secs(secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("`{secs}` is not a duration (a number of seconds ≥ 0)"))
}

/// Serde glue: a duration reads as a number of seconds or a string for
/// [`parse_duration`], and prints as `"1m 30s"`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(secs) => super::duration_from_secs(secs),
            Raw::Text(text) => super::parse_duration(&text),
        }
        .map_err(serde::de::Error::custom)
    }

    /// The same for an optional duration.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

fn parse_enum<T: serde::de::DeserializeOwned>(raw: &str, allowed: &str) -> Result<T, String> {
    T::deserialize(
        serde::de::value::StrDeserializer::<serde::de::value::Error>::new(
            raw.trim().to_ascii_lowercase().as_str(),
        ),
    )
    .map_err(|_| format!("unknown value `{raw}`, allowed: {allowed}"))
}

macro_rules! env_var {
    ($name:literal, $key:literal, $help:literal, |$s:ident, $v:ident| $body:expr) => {
        EnvVar {
            name: $name,
            key: $key,
            help: $help,
            apply: |$s: &mut Settings, $v: &str| {
                $body;
                Ok(())
            },
        }
    };
}

/// Every environment variable, in README order.
pub const ENV_VARS: &[EnvVar] = &[
    env_var!(
        "ABRIDGE_LISTEN",
        "server.listen",
        "address to listen on (127.0.0.1:8080)",
        |s, v| {
            s.server.listen = v
                .trim()
                .parse()
                .map_err(|_| format!("`{v}` is not a socket address like 127.0.0.1:8080"))?
        }
    ),
    env_var!(
        "ABRIDGE_DATABASE",
        "database.url",
        "database URL (sqlite://./abridge.db)",
        |s, v| { s.database.url = v.to_string() }
    ),
    env_var!(
        "ABRIDGE_MAX_BODY_BYTES",
        "server.max_body_bytes",
        "largest request body in bytes (33554432 = 32 MiB)",
        |s, v| { s.server.max_body_bytes = parse_num(v)? }
    ),
    env_var!(
        "ABRIDGE_SHUTDOWN_TIMEOUT",
        "server.shutdown_timeout",
        "graceful-shutdown drain limit (30s)",
        |s, v| { s.server.shutdown_timeout = parse_duration(v)? }
    ),
    env_var!(
        "ABRIDGE_PROVIDERS",
        "server.providers_file",
        "providers file, TOML or the original's provider.json (unset)",
        |s, v| { s.server.providers_file = Some(PathBuf::from(v)) }
    ),
    env_var!(
        "ABRIDGE_LOG",
        "server.log",
        "log filter in RUST_LOG syntax (info)",
        |s, v| { s.server.log = v.to_string() }
    ),
    env_var!(
        "ABRIDGE_PING_INTERVAL",
        "server.ping_interval",
        "silence on a converted stream before a ping event (10s)",
        |s, v| { s.server.ping_interval = parse_duration(v)? }
    ),
    env_var!(
        "ABRIDGE_MAX_CLIENT_CONNECTIONS",
        "server.max_client_connections",
        "client connections open at once; more wait until one closes (4096)",
        |s, v| { s.server.max_client_connections = parse_num(v)? }
    ),
    env_var!(
        "ABRIDGE_BODY_TIMEOUT",
        "server.body_timeout",
        "longest a request body may take to arrive, then 408 (60s)",
        |s, v| { s.server.body_timeout = parse_duration(v)? }
    ),
    env_var!(
        "ABRIDGE_WRITE_TIMEOUT",
        "server.write_timeout",
        "longest a client may leave a response unread before it is disconnected (20s)",
        |s, v| { s.server.write_timeout = parse_duration(v)? }
    ),
    env_var!(
        "ABRIDGE_READY_DETAIL",
        "server.ready_detail",
        "show provider, key and log-writer detail on /ready to callers with a client API key (false)",
        |s, v| { s.server.ready_detail = parse_bool(v)? }
    ),
    env_var!(
        "JWT_SECRET_KEY",
        "secrets.jwt_secret_key",
        "admin token signing key (ephemeral when unset)",
        |s, v| { s.secrets.jwt_secret_key = Some(Secret::new(v)) }
    ),
    env_var!(
        "ENCRYPTION_KEY",
        "secrets.encryption_key",
        "32-byte base64 key sealing provider secrets (ephemeral when unset)",
        |s, v| { s.secrets.encryption_key = Some(Secret::new(v)) }
    ),
    env_var!(
        "JWT_TOKEN_EXPIRE_MINUTES",
        "secrets.jwt_token_expire_minutes",
        "admin token lifetime in minutes (1440)",
        |s, v| { s.secrets.jwt_token_expire_minutes = parse_num(v)? }
    ),
    env_var!(
        "ABRIDGE_ADMIN_EMAIL",
        "admin.email",
        "email of the first admin (admin@localhost)",
        |s, v| { s.admin.email = v.to_string() }
    ),
    env_var!(
        "ADMIN_PASSWORD",
        "admin.password",
        "password of the first admin, ≥ 12 chars (generated when unset)",
        |s, v| { s.admin.password = Some(Secret::new(v)) }
    ),
    env_var!(
        "DB_POOL_SIZE",
        "database.pool_size",
        "SQLite reader connections (10)",
        |s, v| { s.database.pool_size = parse_num(v)? }
    ),
    env_var!(
        "DB_POOL_TIMEOUT",
        "database.pool_timeout",
        "wait for a free reader before failing (30s)",
        |s, v| { s.database.pool_timeout = parse_duration(v)? }
    ),
    env_var!(
        "HTTP_MAX_KEEPALIVE_CONNECTIONS",
        "http.max_keepalive_connections",
        "idle upstream connections kept per host (50)",
        |s, v| { s.http.max_keepalive_connections = parse_num(v)? }
    ),
    env_var!(
        "HTTP_MAX_CONNECTIONS",
        "http.max_connections",
        "upstream connections open at once (200)",
        |s, v| { s.http.max_connections = parse_num(v)? }
    ),
    env_var!(
        "HTTP_KEEPALIVE_EXPIRY",
        "http.keepalive_expiry",
        "idle upstream connection lifetime (60s)",
        |s, v| { s.http.keepalive_expiry = parse_duration(v)? }
    ),
    env_var!(
        "ABRIDGE_CONNECTION_WAIT",
        "http.connection_wait",
        "wait for a free upstream connection before answering 529 (10s)",
        |s, v| { s.http.connection_wait = parse_duration(v)? }
    ),
    env_var!(
        "ABRIDGE_MAX_RESPONSE_BYTES",
        "http.max_response_bytes",
        "largest non-streaming upstream answer in bytes (33554432 = 32 MiB)",
        |s, v| { s.http.max_response_bytes = parse_num(v)? }
    ),
    env_var!(
        "ABRIDGE_MAX_STREAM_BYTES",
        "http.max_stream_bytes",
        "largest streamed upstream answer in bytes (268435456 = 256 MiB)",
        |s, v| { s.http.max_stream_bytes = parse_num(v)? }
    ),
    env_var!(
        "ABRIDGE_STRATEGY",
        "routing.strategy",
        "candidate order: priority, random, weighted (priority)",
        |s, v| { s.routing.strategy = parse_enum(v, "priority, random, weighted")? }
    ),
    env_var!(
        "ABRIDGE_BREAKER_THRESHOLD",
        "routing.failure_threshold",
        "requests in a row failed by a provider that open its breaker (5)",
        |s, v| { s.routing.failure_threshold = parse_num(v)? }
    ),
    env_var!(
        "ABRIDGE_BREAKER_RECOVERY",
        "routing.recovery_timeout",
        "open-breaker wait before a probe (60s)",
        |s, v| { s.routing.recovery_timeout = parse_duration(v)? }
    ),
    env_var!(
        "ABRIDGE_BREAKER_ENABLED",
        "routing.breaker_enabled",
        "whether circuit breakers open at all (true)",
        |s, v| { s.routing.breaker_enabled = parse_bool(v)? }
    ),
    env_var!(
        "ABRIDGE_BACKOFF",
        "routing.backoff",
        "first retry delay, doubled per attempt with jitter (200ms)",
        |s, v| { s.routing.backoff = parse_duration(v)? }
    ),
    env_var!(
        "ABRIDGE_STICKY",
        "routing.sticky",
        "keep a conversation on one provider while healthy (false)",
        |s, v| { s.routing.sticky = parse_bool(v)? }
    ),
    env_var!(
        "ABRIDGE_KEY_QUARANTINE_THRESHOLD",
        "routing.key_quarantine_threshold",
        "auth failures of a key, in different requests, that quarantine it (3)",
        |s, v| { s.routing.key_quarantine_threshold = parse_num(v)? }
    ),
    env_var!(
        "ABRIDGE_KEY_QUARANTINE",
        "routing.key_quarantine",
        "first quarantine of a key, doubled each time in a row (30s)",
        |s, v| { s.routing.key_quarantine = parse_duration(v)? }
    ),
    env_var!(
        "ABRIDGE_KEY_QUARANTINE_MAX",
        "routing.key_quarantine_max",
        "longest quarantine of a key (30m)",
        |s, v| { s.routing.key_quarantine_max = parse_duration(v)? }
    ),
    env_var!(
        "CACHE_TYPE",
        "cache.cache_type",
        "memory, redis or multi (memory)",
        |s, v| { s.cache.cache_type = parse_enum(v, "memory, redis, multi")? }
    ),
    env_var!(
        "CACHE_MULTI_LEVEL",
        "cache.multi_level",
        "memory in front of redis (false)",
        |s, v| { s.cache.multi_level = parse_bool(v)? }
    ),
    env_var!(
        "CACHE_MAX_SIZE",
        "cache.max_size",
        "entries in the memory cache (1000)",
        |s, v| { s.cache.max_size = parse_num(v)? }
    ),
    env_var!(
        "CACHE_DEFAULT_TTL",
        "cache.default_ttl",
        "cache entry lifetime (3600s)",
        |s, v| { s.cache.default_ttl = parse_duration(v)? }
    ),
    env_var!(
        "CACHE_REDIS_MAX_CONN",
        "cache.redis_max_conn",
        "redis connections (20)",
        |s, v| { s.cache.redis_max_conn = parse_num(v)? }
    ),
    env_var!(
        "REDIS_URL",
        "cache.redis_url",
        "redis URL for CACHE_TYPE=redis|multi (unset)",
        |s, v| { s.cache.redis_url = Some(Secret::new(v)) }
    ),
    env_var!(
        "OIDC_CLIENT_ID",
        "sso.oidc.client_id",
        "client id at the generic OpenID Connect issuer; enables it (unset)",
        |s, v| { s.sso.oidc.client_id = Some(v.to_string()) }
    ),
    env_var!(
        "OIDC_CLIENT_SECRET",
        "sso.oidc.client_secret",
        "client secret at the generic OpenID Connect issuer (unset)",
        |s, v| { s.sso.oidc.client_secret = Some(Secret::new(v)) }
    ),
    env_var!(
        "OIDC_REDIRECT_URI",
        "sso.oidc.redirect_uri",
        "this gateway's URL + /api/auth/sso/oidc/callback (unset)",
        |s, v| { s.sso.oidc.redirect_uri = Some(v.to_string()) }
    ),
    env_var!(
        "ABRIDGE_OIDC_ISSUER",
        "sso.oidc_issuer",
        "issuer URL of the generic OpenID Connect provider, found by discovery (unset)",
        |s, v| { s.sso.oidc_issuer = Some(v.to_string()) }
    ),
    env_var!(
        "OIDC_SCOPES",
        "sso.oidc_scopes",
        "scopes asked of the generic issuer (openid email profile)",
        |s, v| { s.sso.oidc_scopes = v.to_string() }
    ),
    env_var!(
        "GOOGLE_CLIENT_ID",
        "sso.google.client_id",
        "Google OAuth client id; enables Google sign-on (unset)",
        |s, v| { s.sso.google.client_id = Some(v.to_string()) }
    ),
    env_var!(
        "GOOGLE_CLIENT_SECRET",
        "sso.google.client_secret",
        "Google OAuth client secret (unset)",
        |s, v| { s.sso.google.client_secret = Some(Secret::new(v)) }
    ),
    env_var!(
        "GOOGLE_REDIRECT_URI",
        "sso.google.redirect_uri",
        "this gateway's URL + /api/auth/sso/google/callback (unset)",
        |s, v| { s.sso.google.redirect_uri = Some(v.to_string()) }
    ),
    env_var!(
        "MICROSOFT_CLIENT_ID",
        "sso.microsoft.client_id",
        "Microsoft Entra ID application id; enables Microsoft sign-on (unset)",
        |s, v| { s.sso.microsoft.client_id = Some(v.to_string()) }
    ),
    env_var!(
        "MICROSOFT_CLIENT_SECRET",
        "sso.microsoft.client_secret",
        "Microsoft Entra ID client secret (unset)",
        |s, v| { s.sso.microsoft.client_secret = Some(Secret::new(v)) }
    ),
    env_var!(
        "MICROSOFT_REDIRECT_URI",
        "sso.microsoft.redirect_uri",
        "this gateway's URL + /api/auth/sso/microsoft/callback (unset)",
        |s, v| { s.sso.microsoft.redirect_uri = Some(v.to_string()) }
    ),
    env_var!(
        "MICROSOFT_TENANT_ID",
        "sso.microsoft_tenant_id",
        "Entra ID tenant id or domain, required with MICROSOFT_CLIENT_ID (unset)",
        |s, v| { s.sso.microsoft_tenant_id = Some(v.to_string()) }
    ),
    env_var!(
        "GITHUB_CLIENT_ID",
        "sso.github.client_id",
        "GitHub OAuth app client id; enables GitHub sign-on (unset)",
        |s, v| { s.sso.github.client_id = Some(v.to_string()) }
    ),
    env_var!(
        "GITHUB_CLIENT_SECRET",
        "sso.github.client_secret",
        "GitHub OAuth app client secret (unset)",
        |s, v| { s.sso.github.client_secret = Some(Secret::new(v)) }
    ),
    env_var!(
        "GITHUB_REDIRECT_URI",
        "sso.github.redirect_uri",
        "this gateway's URL + /api/auth/sso/github/callback (unset)",
        |s, v| { s.sso.github.redirect_uri = Some(v.to_string()) }
    ),
    env_var!(
        "ABRIDGE_GITHUB_URL",
        "sso.github_url",
        "GitHub or a GitHub Enterprise Server URL for GitHub sign-on (https://github.com)",
        |s, v| { s.sso.github_url = v.to_string() }
    ),
    env_var!(
        "ABRIDGE_SSO_ALLOWED_DOMAINS",
        "sso.allowed_domains",
        "comma-separated email domains whose new users get an account on first sign-on (none)",
        |s, v| {
            s.sso.allowed_domains = v
                .split(',')
                .map(|d| d.trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect()
        }
    ),
    env_var!(
        "ABRIDGE_SSO_DEFAULT_ROLE",
        "sso.default_role",
        "role of users created on first sign-on: admin, operator, viewer, member (member)",
        |s, v| { s.sso.default_role = parse_enum(v, "admin, operator, viewer, member")? }
    ),
    env_var!(
        "ENABLE_TELEMETRY",
        "telemetry.enabled",
        "export traces over OTLP (false)",
        |s, v| { s.telemetry.enabled = parse_bool(v)? }
    ),
    env_var!(
        "OTLP_ENDPOINT",
        "telemetry.otlp_endpoint",
        "OTLP collector URL (unset)",
        |s, v| { s.telemetry.otlp_endpoint = Some(v.to_string()) }
    ),
    env_var!(
        "SERVICE_VERSION",
        "telemetry.service_version",
        "version reported in telemetry (crate version)",
        |s, v| { s.telemetry.service_version = v.to_string() }
    ),
];

/// Values given on the command line; they beat everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub database: Option<String>,
    pub listen: Option<SocketAddr>,
    pub providers_file: Option<PathBuf>,
}

/// Default config file, read when present and no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "abridge.toml";

impl Settings {
    /// Loads settings from the real process environment.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::load_from(overrides, &env)
    }

    /// Loads settings with an explicit environment (tests pass their own).
    pub fn load_from(
        overrides: &Overrides,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut settings = match &overrides.config_file {
            Some(path) => Self::from_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                Self::from_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => Self::default(),
        };
        for var in ENV_VARS {
            if let Some(value) = env.get(var.name) {
                (var.apply)(&mut settings, value)
                    .map_err(|e| ConfigError(format!("{}: {e}", var.name)))?;
                settings.explicit.insert(var.key);
            }
        }
        if let Some(db) = &overrides.database {
            settings.database.url = db.clone();
            settings.explicit.insert("database.url");
        }
        if let Some(listen) = overrides.listen {
            settings.server.listen = listen;
            settings.explicit.insert("server.listen");
        }
        if let Some(path) = &overrides.providers_file {
            settings.server.providers_file = Some(path.clone());
            settings.explicit.insert("server.providers_file");
        }
        settings.validate()?;
        Ok(settings)
    }

    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Self::from_toml(&text)
            .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))
    }

    /// Parses a config file's text; errors name the key path. The keys the
    /// file sets are recorded in `explicit`.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let de =
            toml::Deserializer::parse(text).map_err(|e| ConfigError(e.message().to_string()))?;
        let mut settings: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError(format!("key `{path}`: {}", inner.message()))
        })?;
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError(e.message().to_string()))?;
        settings.explicit = ENV_VARS
            .iter()
            .map(|var| var.key)
            .filter(|key| {
                key.split_once('.').is_some_and(|(section, name)| {
                    table
                        .get(section)
                        .and_then(toml::Value::as_table)
                        .is_some_and(|t| t.contains_key(name))
                })
            })
            .collect();
        Ok(settings)
    }

    /// The routing settings with a providers file's routing keys applied
    /// where neither `abridge.toml` nor the environment set them.
    pub fn routing_with(&self, file: &FileRouting) -> RoutingSettings {
        let mut routing = self.routing.clone();
        let free = |key: &str| !self.explicit.contains(key);
        if let Some(strategy) = file.strategy.filter(|_| free("routing.strategy")) {
            routing.strategy = strategy;
        }
        if let Some(n) = file
            .failure_threshold
            .filter(|_| free("routing.failure_threshold"))
        {
            routing.failure_threshold = n.max(1);
        }
        if let Some(d) = file
            .recovery_timeout
            .filter(|_| free("routing.recovery_timeout"))
        {
            routing.recovery_timeout = d;
        }
        if let Some(on) = file
            .breaker_enabled
            .filter(|_| free("routing.breaker_enabled"))
        {
            routing.breaker_enabled = on;
        }
        routing
    }

    /// Checks values whose type alone does not make them valid.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, msg: &str| {
            let var = ENV_VARS.iter().find(|v| v.key == key).map(|v| v.name);
            let named = match var {
                Some(var) => format!("{var} ({key})"),
                None => key.to_string(),
            };
            Err(ConfigError(format!("{named}: {msg}")))
        };
        if self.database.pool_size == 0 {
            return fail("database.pool_size", "must be at least 1, got 0");
        }
        if self.database.pool_timeout.is_zero() {
            return fail("database.pool_timeout", "must be longer than 0s");
        }
        if self.http.max_connections == 0 {
            return fail("http.max_connections", "must be at least 1, got 0");
        }
        if self.server.ping_interval.is_zero() {
            return fail("server.ping_interval", "must be longer than 0s");
        }
        if self.server.max_client_connections == 0 {
            return fail("server.max_client_connections", "must be at least 1, got 0");
        }
        if self.server.body_timeout.is_zero() {
            return fail("server.body_timeout", "must be longer than 0s");
        }
        if self.server.write_timeout.is_zero() {
            return fail("server.write_timeout", "must be longer than 0s");
        }
        crate::upstream::catalog::Catalog::new(&self.catalog)?;
        if self.server.max_body_bytes < 1024 {
            return fail("server.max_body_bytes", "must be at least 1024 bytes");
        }
        if self.routing.failure_threshold == 0 {
            return fail("routing.failure_threshold", "must be at least 1, got 0");
        }
        if self.routing.key_quarantine_threshold == 0 {
            return fail(
                "routing.key_quarantine_threshold",
                "must be at least 1, got 0",
            );
        }
        if self.routing.key_quarantine.is_zero() {
            return fail("routing.key_quarantine", "must be longer than 0s");
        }
        if self.routing.key_quarantine_max < self.routing.key_quarantine {
            return fail(
                "routing.key_quarantine_max",
                "must be at least routing.key_quarantine",
            );
        }
        if self.http.max_response_bytes < 1024 {
            return fail("http.max_response_bytes", "must be at least 1024 bytes");
        }
        if self.http.max_stream_bytes < 1024 {
            return fail("http.max_stream_bytes", "must be at least 1024 bytes");
        }
        if self.secrets.jwt_token_expire_minutes == 0 {
            return fail("secrets.jwt_token_expire_minutes", "must be at least 1");
        }
        if matches!(self.cache.cache_type, CacheType::Redis | CacheType::Multi) {
            return fail(
                "cache.cache_type",
                "redis and multi need the Redis cache, which this version does not have yet; allowed: memory",
            );
        }
        if let Some(password) = &self.admin.password
            && password.expose().chars().count() < crate::secrets::password::MIN_LEN
        {
            return fail(
                "admin.password",
                &format!(
                    "must be at least {} characters",
                    crate::secrets::password::MIN_LEN
                ),
            );
        }
        crate::store::DbUrl::parse(&self.database.url)
            .map_err(|e| ConfigError(format!("ABRIDGE_DATABASE (database.url): {e}")))?;
        self.validate_sso()
    }

    /// An enabled sign-on provider must be completely configured.
    fn validate_sso(&self) -> Result<(), ConfigError> {
        let sso = &self.sso;
        let clients = [
            ("oidc", &sso.oidc),
            ("google", &sso.google),
            ("microsoft", &sso.microsoft),
            ("github", &sso.github),
        ];
        for (name, client) in clients {
            if !client.enabled() {
                continue;
            }
            let var = |field: &str| {
                let key = format!("sso.{name}.{field}");
                let env = ENV_VARS.iter().find(|v| v.key == key).map(|v| v.name);
                format!("{} ({key})", env.unwrap_or_default())
            };
            if client.client_secret.is_none() {
                return Err(ConfigError(format!(
                    "{}: must be set when {} is",
                    var("client_secret"),
                    var("client_id")
                )));
            }
            match client.redirect_uri.as_deref().map(url::Url::parse) {
                Some(Ok(uri)) if matches!(uri.scheme(), "http" | "https") => {}
                Some(_) => {
                    return Err(ConfigError(format!(
                        "{}: not an http(s) URL",
                        var("redirect_uri")
                    )));
                }
                None => {
                    return Err(ConfigError(format!(
                        "{}: must be set when {} is (this gateway's public URL + /api/auth/sso/{name}/callback)",
                        var("redirect_uri"),
                        var("client_id")
                    )));
                }
            }
        }
        if sso.oidc.enabled()
            && sso
                .oidc_issuer
                .as_deref()
                .is_none_or(|u| url::Url::parse(u).is_err())
        {
            return Err(ConfigError(
                "ABRIDGE_OIDC_ISSUER (sso.oidc_issuer): must be the issuer's URL when OIDC_CLIENT_ID is set".into(),
            ));
        }
        if url::Url::parse(&sso.github_url).is_err() {
            return Err(ConfigError(format!(
                "ABRIDGE_GITHUB_URL (sso.github_url): `{}` is not a URL",
                sso.github_url
            )));
        }
        if sso.microsoft.enabled() && sso.microsoft_tenant_id.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError(
                "MICROSOFT_TENANT_ID (sso.microsoft_tenant_id): must be set when MICROSOFT_CLIENT_ID is (a tenant id or domain)".into(),
            ));
        }
        Ok(())
    }

    /// The effective settings as TOML, every secret masked (a password in
    /// the database URL too).
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = crate::store::redact_url(&self.database.url);
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from(&Overrides::default(), &env(pairs))
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let s = load(&[]).unwrap();
        assert_eq!(s.database.pool_size, 10);
        assert_eq!(s.database.pool_timeout, Duration::from_secs(30));
        assert_eq!(s.http.max_keepalive_connections, 50);
        assert_eq!(s.http.max_connections, 200);
        assert_eq!(s.http.keepalive_expiry, Duration::from_secs(60));
        assert_eq!(s.cache.max_size, 1000);
        assert_eq!(s.secrets.jwt_token_expire_minutes, 1440);
        assert_eq!(s.server.max_body_bytes, 32 * 1024 * 1024);
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn env_beats_file_and_flags_beat_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abridge.toml");
        std::fs::write(
            &file,
            "[database]\npool_size = 3\nurl = \"sqlite://file.db\"\n[http]\nmax_connections = 7\n",
        )
        .unwrap();
        let overrides = Overrides {
            config_file: Some(file),
            database: Some("sqlite://flag.db".into()),
            ..Overrides::default()
        };
        let s = Settings::load_from(
            &overrides,
            &env(&[
                ("DB_POOL_SIZE", "4"),
                ("ABRIDGE_DATABASE", "sqlite://env.db"),
            ]),
        )
        .unwrap();
        assert_eq!(s.database.pool_size, 4, "env beats file");
        assert_eq!(s.http.max_connections, 7, "file beats default");
        assert_eq!(s.database.url, "sqlite://flag.db", "flag beats env");
    }

    #[test]
    fn unknown_file_key_is_named_with_its_path() {
        let err = Settings::from_toml("[http]\nmax_conections = 3\n").unwrap_err();
        assert!(err.0.contains("http.max_conections"), "{}", err.0);
    }

    #[test]
    fn invalid_env_values_name_the_variable_and_allowed_values() {
        let err = load(&[("DB_POOL_SIZE", "0")]).unwrap_err();
        assert!(err.0.contains("DB_POOL_SIZE"), "{}", err.0);
        let err = load(&[("CACHE_TYPE", "disk")]).unwrap_err();
        assert!(
            err.0.contains("CACHE_TYPE") && err.0.contains("memory"),
            "{}",
            err.0
        );
        let err = load(&[("DB_POOL_TIMEOUT", "soon")]).unwrap_err();
        assert!(err.0.contains("DB_POOL_TIMEOUT"), "{}", err.0);
        let err = load(&[("HTTP_MAX_CONNECTIONS", "lots")]).unwrap_err();
        assert!(err.0.contains("HTTP_MAX_CONNECTIONS"), "{}", err.0);
        let err = load(&[("ADMIN_PASSWORD", "short")]).unwrap_err();
        assert!(err.0.contains("ADMIN_PASSWORD"), "{}", err.0);
    }

    #[test]
    fn sso_providers_must_be_complete() {
        assert!(load(&[]).unwrap().sso.allowed_domains.is_empty());
        let err = load(&[("GOOGLE_CLIENT_ID", "id")]).unwrap_err();
        assert!(err.0.contains("GOOGLE_CLIENT_SECRET"), "{}", err.0);
        let err = load(&[("GOOGLE_CLIENT_ID", "id"), ("GOOGLE_CLIENT_SECRET", "s")]).unwrap_err();
        assert!(err.0.contains("GOOGLE_REDIRECT_URI"), "{}", err.0);
        let oidc = [
            ("OIDC_CLIENT_ID", "id"),
            ("OIDC_CLIENT_SECRET", "s"),
            ("OIDC_REDIRECT_URI", "https://gw/api/auth/sso/oidc/callback"),
        ];
        let err = load(&oidc).unwrap_err();
        assert!(err.0.contains("ABRIDGE_OIDC_ISSUER"), "{}", err.0);
        let mut full = oidc.to_vec();
        full.push(("ABRIDGE_OIDC_ISSUER", "https://id.example.com"));
        full.push(("ABRIDGE_SSO_ALLOWED_DOMAINS", "Example.com, corp.example"));
        full.push(("ABRIDGE_SSO_DEFAULT_ROLE", "viewer"));
        let s = load(&full).unwrap();
        assert_eq!(s.sso.allowed_domains, ["example.com", "corp.example"]);
        assert_eq!(s.sso.default_role, crate::store::Role::Viewer);
        let err = load(&[("ABRIDGE_SSO_DEFAULT_ROLE", "root")]).unwrap_err();
        assert!(err.0.contains("member"), "{}", err.0);
        let err = load(&[
            ("MICROSOFT_CLIENT_ID", "id"),
            ("MICROSOFT_CLIENT_SECRET", "s"),
            ("MICROSOFT_REDIRECT_URI", "https://gw/cb"),
        ])
        .unwrap_err();
        assert!(err.0.contains("MICROSOFT_TENANT_ID"), "{}", err.0);
    }

    #[test]
    fn durations_accept_bare_seconds_and_units() {
        let s = load(&[
            ("DB_POOL_TIMEOUT", "5"),
            ("HTTP_KEEPALIVE_EXPIRY", "1500ms"),
            ("ABRIDGE_CONNECTION_WAIT", "0.25"),
        ])
        .unwrap();
        assert_eq!(s.database.pool_timeout, Duration::from_secs(5));
        assert_eq!(s.http.keepalive_expiry, Duration::from_millis(1500));
        assert_eq!(s.http.connection_wait, Duration::from_millis(250));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_file_takes_durations_as_numbers_or_strings_like_the_environment() {
        let s = Settings::from_toml(
            "[database]\npool_timeout = 5\n[http]\nkeepalive_expiry = \"90\"\nconnection_wait = 0.5\n[routing]\nrecovery_timeout = \"2m\"\n",
        )
        .unwrap();
        assert_eq!(s.database.pool_timeout, Duration::from_secs(5));
        assert_eq!(s.http.keepalive_expiry, Duration::from_secs(90));
        assert_eq!(s.http.connection_wait, Duration::from_millis(500));
        assert_eq!(s.routing.recovery_timeout, Duration::from_secs(120));
        let err = Settings::from_toml("[routing]\nbackoff = \"later\"\n").unwrap_err();
        assert!(err.0.contains("routing.backoff"), "{}", err.0);
    }

    #[test]
    fn a_providers_file_sets_only_the_routing_keys_nobody_else_set() {
        let file = FileRouting {
            strategy: Some(Strategy::Random),
            failure_threshold: Some(9),
            recovery_timeout: Some(Duration::from_secs(7)),
            breaker_enabled: Some(false),
        };
        let defaults = load(&[]).unwrap().routing_with(&file);
        assert_eq!(
            (
                defaults.strategy,
                defaults.failure_threshold,
                defaults.recovery_timeout,
                defaults.breaker_enabled
            ),
            (Strategy::Random, 9, Duration::from_secs(7), false),
            "the file beats the built-in defaults"
        );
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("abridge.toml");
        std::fs::write(&toml, "[routing]\nstrategy = \"weighted\"\n").unwrap();
        let overrides = Overrides {
            config_file: Some(toml),
            ..Overrides::default()
        };
        let s =
            Settings::load_from(&overrides, &env(&[("ABRIDGE_BREAKER_THRESHOLD", "5")])).unwrap();
        let routing = s.routing_with(&file);
        assert_eq!(routing.strategy, Strategy::Weighted, "abridge.toml wins");
        assert_eq!(
            routing.failure_threshold, 5,
            "the environment wins, even when it repeats the default"
        );
        assert_eq!(routing.recovery_timeout, Duration::from_secs(7));
        assert!(!routing.breaker_enabled);
        assert_eq!(s.routing_with(&FileRouting::default()), s.routing);
    }

    #[test]
    fn key_quarantine_settings_are_checked() {
        let err = load(&[("ABRIDGE_KEY_QUARANTINE_THRESHOLD", "0")]).unwrap_err();
        assert!(
            err.0.contains("ABRIDGE_KEY_QUARANTINE_THRESHOLD"),
            "{}",
            err.0
        );
        let err = load(&[
            ("ABRIDGE_KEY_QUARANTINE", "10m"),
            ("ABRIDGE_KEY_QUARANTINE_MAX", "1m"),
        ])
        .unwrap_err();
        assert!(err.0.contains("ABRIDGE_KEY_QUARANTINE_MAX"), "{}", err.0);
        let s = load(&[]).unwrap();
        assert_eq!(
            (
                s.routing.key_quarantine_threshold,
                s.routing.key_quarantine,
                s.routing.key_quarantine_max
            ),
            (3, Duration::from_secs(30), Duration::from_secs(1800))
        );
    }

    #[test]
    fn printed_config_masks_secrets_and_parses_back() {
        let s = load(&[
            ("JWT_SECRET_KEY", "super-secret-jwt"),
            ("ADMIN_PASSWORD", "a-long-enough-password"),
        ])
        .unwrap();
        let text = s.to_masked_toml();
        assert!(!text.contains("super-secret-jwt"));
        assert!(!text.contains("a-long-enough-password"));
        assert!(text.contains("*****"));
        Settings::from_toml(&text).unwrap();
    }

    #[test]
    fn catalog_entries_load_from_the_file_and_print_back() {
        let text = "[[catalog.models]]\nid = \"claude-opus-4-8\"\ncreated_at = \"2026-05-28\"\n\n[[catalog.models]]\nid = \"claude-fable-5\"\ndisplay_name = \"Claude Fable 5\"\ncreated_at = \"2026-06-09T00:00:00Z\"\ntier = \"big\"\n";
        let s = Settings::from_toml(text).unwrap();
        s.validate().unwrap();
        assert_eq!(s.catalog.models.len(), 2);
        let again = Settings::from_toml(&s.to_masked_toml()).unwrap();
        assert_eq!(again.catalog.models, s.catalog.models);
        let err = Settings::from_toml("[[catalog.models]]\nid = \"x\"\ncreated_at = \"soon\"\n")
            .unwrap_err();
        assert!(err.0.contains("catalog.models[0].created_at"), "{}", err.0);
        let err = Settings::from_toml(
            "[[catalog.models]]\nid = \"claude-fable-5\"\ncreated_at = \"2026-06-09\"\n",
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert!(
            err.0.contains("catalog.models") && err.0.contains("tier"),
            "{}",
            err.0
        );
    }

    #[test]
    fn readme_documents_every_env_var() {
        let readme = include_str!("../README.md");
        for var in ENV_VARS {
            assert!(
                readme.contains(&format!("`{}`", var.name)),
                "README lacks {}",
                var.name
            );
            assert!(
                readme.contains(&format!("`{}`", var.key)),
                "README lacks {}",
                var.key
            );
        }
    }

    #[test]
    fn every_env_var_maps_to_a_real_file_key() {
        let printed: toml::Table = toml::from_str(&Settings::default().to_masked_toml()).unwrap();
        for var in ENV_VARS {
            let (section, key) = var.key.split_once('.').unwrap();
            let table = printed[section].as_table().unwrap();
            let optional = matches!(
                var.key,
                "server.providers_file"
                    | "secrets.jwt_secret_key"
                    | "secrets.encryption_key"
                    | "admin.password"
                    | "cache.redis_url"
                    | "telemetry.otlp_endpoint"
                    | "sso.oidc_issuer"
                    | "sso.microsoft_tenant_id"
            ) || var.key.starts_with("sso.") && var.key.matches('.').count() == 2;
            assert!(
                optional || table.contains_key(key),
                "{} has no key",
                var.key
            );
        }
    }
}
