//! The one outbound HTTP client, shared by `serve` (calls to providers) and
//! `loadtest` (calls to the gateway), so both exercise the same connection
//! pool code.
//!
//! reqwest keeps idle connections up to `HTTP_MAX_KEEPALIVE_CONNECTIONS` per
//! host but has no cap on the total; `HTTP_MAX_CONNECTIONS` is enforced here
//! with a semaphore whose permit travels with the response until its body is
//! dropped. This module never converts formats and never retries.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Pool sizing, from `HTTP_MAX_KEEPALIVE_CONNECTIONS`, `HTTP_MAX_CONNECTIONS`
/// and `HTTP_KEEPALIVE_EXPIRY`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Idle connections kept per host for reuse.
    pub max_keepalive_connections: usize,
    /// Connections open at once, across all hosts; requests beyond it wait.
    pub max_connections: usize,
    /// How long an idle connection is kept.
    #[serde(with = "humantime_serde_compat")]
    pub keepalive_expiry: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_keepalive_connections: 50,
            max_connections: 200,
            keepalive_expiry: Duration::from_secs(60),
        }
    }
}

/// Serde glue so durations read and print as `"60s"`.
pub(crate) mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// A cheap-to-clone handle on the shared pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
    /// Caps open connections at `max_connections` (see module doc).
    permits: Arc<Semaphore>,
}

/// An upstream response together with the connection permit it holds; drop
/// both together when the body has been read.
#[derive(Debug)]
pub struct Sent {
    pub response: reqwest::Response,
    pub permit: OwnedSemaphorePermit,
}

impl HttpClient {
    pub fn new(settings: &HttpSettings) -> anyhow::Result<Self> {
        let inner = reqwest::Client::builder()
            .pool_max_idle_per_host(settings.max_keepalive_connections)
            .pool_idle_timeout(settings.keepalive_expiry)
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            inner,
            permits: Arc::new(Semaphore::new(settings.max_connections.max(1))),
        })
    }

    /// The underlying client, for building requests.
    pub fn inner(&self) -> &reqwest::Client {
        &self.inner
    }

    /// Sends a request once a connection permit is free.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Result<Sent> {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the connection semaphore is never closed"),
        };
        let response = request.send().await?;
        Ok(Sent { response, permit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[allow(clippy::disallowed_methods)] // a test server, not background work
    async fn max_connections_is_enforced() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = HttpClient::new(&HttpSettings {
            max_connections: 1,
            ..HttpSettings::default()
        })
        .unwrap();
        let url = format!("http://{addr}/");
        let first = client.send(client.inner().get(&url)).await.unwrap();
        let second = client.send(client.inner().get(&url));
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut second)
                .await
                .is_err(),
            "a second request waits while the only connection is in use"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.response.status(), 200);
    }
}
