//! abridge: an Anthropic-compatible Messages API gateway in front of many LLM
//! providers.
//!
//! Module map (see `DESIGN.md`):
//! - [`cli`]: one file per subcommand; every subcommand uses the same core.
//! - [`config`]: `Settings`, layered defaults < `abridge.toml` < environment < flags.
//! - [`error`]: the crate's error enum and its Anthropic / admin JSON renderings.
//! - [`store`]: SQLite (WAL) through tokio-rusqlite: migrations, one file per
//!   table family, the batching request-log writer.
//! - [`secrets`]: key generation and loading (environment or the first-run
//!   key file), session JWTs, AES-256-GCM sealing, argon2id.
//! - [`cache`]: the in-process key cache in front of the store.
//! - [`upstream`]: the shared HTTP client, providers, routing, breakers, retries.
//! - [`protocol`]: pure Anthropic ⇄ OpenAI conversion and token counting.
//! - [`server`]: axum routers (`/v1`, the `/api` admin API, probes),
//!   authentication extractors, shutdown.
//! - [`telemetry`]: the tracing subscriber.
//! - [`loadtest`]: the open-loop load generator behind `abridge loadtest`.

pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod loadtest;
pub mod protocol;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod upstream;
