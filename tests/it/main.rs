//! Integration tests: one binary (linked once), the real server on port 0
//! and real mock providers on port 0.

// Tests spawn servers and clients directly; there is no TaskTracker to wait on.
#![allow(clippy::disallowed_methods)]
// Helpers outside #[test] functions panic on failure too; that is the point.
#![allow(clippy::unwrap_used)]

mod admin;
mod cli;
mod failures;
mod gateway;
mod harness;
mod limits;
mod models;
mod passthrough;
mod pg;
mod postgres;
mod protocol;
mod ready;
mod request_logs;
mod resilience;
mod sso;
mod streaming;
