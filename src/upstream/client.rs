//! The one outbound HTTP client, shared by `serve` (calls to providers) and
//! `loadtest` (calls to the gateway), so both exercise the same connection
//! pool code.
//!
//! reqwest keeps idle connections up to `HTTP_MAX_KEEPALIVE_CONNECTIONS` per
//! host but has no cap on the total; `HTTP_MAX_CONNECTIONS` is enforced here
//! with a semaphore whose permit travels with the response until its body is
//! dropped. Waiting for a permit is bounded on its own
//! (`ABRIDGE_CONNECTION_WAIT`, see [`HttpClient::permit`]), apart from any
//! provider's timeout. Redirects are never followed: a provider answering
//! 3xx is misconfigured, and following it could send the request (and its
//! key) elsewhere. This module never converts formats and never retries.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::config::HttpSettings;

/// A cheap-to-clone handle on the shared pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
    /// Caps open connections at `max_connections` (see module doc).
    permits: Arc<Semaphore>,
    /// How long [`HttpClient::permit`] waits.
    connection_wait: Duration,
    /// The largest answer body read whole (`ABRIDGE_MAX_RESPONSE_BYTES`).
    max_response_bytes: usize,
}

/// No upstream connection became free within `connection_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every upstream connection stayed busy for {waited:?} (HTTP_MAX_CONNECTIONS)")]
pub struct Busy {
    pub waited: Duration,
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
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            inner,
            permits: Arc::new(Semaphore::new(settings.max_connections.max(1))),
            connection_wait: settings.connection_wait,
            max_response_bytes: settings.max_response_bytes,
        })
    }

    /// The underlying client, for building requests.
    pub fn inner(&self) -> &reqwest::Client {
        &self.inner
    }

    /// The largest answer body read whole.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// One connection permit, waiting at most `connection_wait` for it.
    pub async fn permit(&self) -> Result<OwnedSemaphorePermit, Busy> {
        let busy = Busy {
            waited: self.connection_wait,
        };
        match tokio::time::timeout(self.connection_wait, self.permits.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a closed one is as good as busy.
            Ok(Err(_)) | Err(_) => Err(busy),
        }
    }

    /// Sends a request under a permit from [`HttpClient::permit`].
    pub async fn send_with(
        &self,
        permit: OwnedSemaphorePermit,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<Sent> {
        let response = request.send().await?;
        Ok(Sent { response, permit })
    }

    /// Sends a request once a connection permit is free, however long that
    /// takes (the load generator never has more requests out than permits).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Result<Sent> {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the connection semaphore is never closed"),
        };
        self.send_with(permit, request).await
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

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_permit_is_bounded() {
        let client = HttpClient::new(&HttpSettings {
            max_connections: 1,
            connection_wait: Duration::from_secs(2),
            ..HttpSettings::default()
        })
        .unwrap();
        let held = client.permit().await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(
            client.permit().await.unwrap_err(),
            Busy {
                waited: Duration::from_secs(2)
            }
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        drop(held);
        assert!(client.permit().await.is_ok());
    }

    #[tokio::test]
    #[allow(clippy::disallowed_methods)] // a test server, not background work
    async fn redirects_are_not_followed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route(
                "/moved",
                axum::routing::get(|| async { axum::response::Redirect::temporary("/target") }),
            )
            .route("/target", axum::routing::get(|| async { "followed" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = HttpClient::new(&HttpSettings::default()).unwrap();
        let sent = client
            .send(client.inner().get(format!("http://{addr}/moved")))
            .await
            .unwrap();
        assert_eq!(sent.response.status(), 307);
    }
}
