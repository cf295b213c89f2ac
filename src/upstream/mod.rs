//! Upstream providers: the shared HTTP client, the provider model, the
//! catalog of Claude model ids, routing, breakers, key rotation and
//! quarantine, the retry policy, building each provider's request and the
//! failover loop. Format conversion itself is `protocol`'s (called from
//! here); nothing here reaches up into `server`.

pub mod breaker;
pub mod catalog;
pub mod client;
pub mod dispatch;
pub mod keys;
pub mod probe;
pub mod provider;
pub mod request;
pub mod retry;
pub mod router;
pub mod signatures;
pub mod sources;
pub mod sse;

pub use client::{HttpClient, HttpSettings};
pub use router::Router;
