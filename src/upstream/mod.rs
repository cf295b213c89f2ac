//! Upstream providers: the shared HTTP client, the provider model, the
//! catalog of Claude model ids, routing, breakers, key rotation, retries and
//! the failover loop. Never converts formats (that is `protocol`).

pub mod breaker;
pub mod catalog;
pub mod client;
pub mod dispatch;
pub mod keys;
pub mod probe;
pub mod provider;
pub mod retry;
pub mod router;
pub mod signatures;
pub mod sources;
pub mod sse;

pub use client::{HttpClient, HttpSettings};
pub use router::Router;
