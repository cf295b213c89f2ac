//! The HTTP server: `AppState`, the routers (`proxy` for `/v1/*`, `probes` for
//! `/health` and `/ready`), authentication extractors, graceful shutdown.
//!
//! [`run`] takes its listener and its shutdown future as arguments, so the
//! binary and the tests start the server the same way.

pub mod auth;
pub mod bootstrap;
mod probes;
mod proxy;
mod relay;
pub mod shutdown;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::error::InternalCause;
use crate::secrets::Secrets;
use crate::server::auth::KeyCache;
use crate::store::{LogWriter, Store};
use crate::upstream::signatures::SignatureBook;
use crate::upstream::{HttpClient, Router};

/// Shared state of one server; every field is a cheap handle.
pub struct App {
    pub settings: Settings,
    pub store: Store,
    pub secrets: Secrets,
    /// API key records by hash, so authentication needs no database read.
    pub keys: KeyCache,
    /// The one upstream connection pool.
    pub http: HttpClient,
    /// Providers, model aliases, breakers.
    pub router: Router,
    /// Which provider family issued each thinking signature seen.
    pub signatures: SignatureBook,
    /// Queue to the batching request-log writer.
    pub logs: LogWriter,
    /// Background tasks that must finish before exit (log writer, watchers).
    pub tracker: TaskTracker,
    /// Tells background tasks to finish.
    pub shutdown: CancellationToken,
}

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl<S> axum::extract::FromRequestParts<S> for AppState
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        _parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(AppState::from_ref(state))
    }
}

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// The whole application router.
pub fn router(state: AppState) -> axum::Router {
    let body_limit = state.settings.server.max_body_bytes;
    axum::Router::new()
        .merge(probes::router())
        .merge(proxy::router(body_limit))
        .fallback(proxy::not_found)
        .layer(axum::middleware::from_fn(log_internal_errors))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            proxy::panic_response,
        ))
        .with_state(state)
}

/// Logs the hidden cause of 500s; `into_response` stays free of side effects.
async fn log_internal_errors(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if let Some(cause) = response.extensions().get::<InternalCause>() {
        tracing::error!(%path, cause = %cause.0, "internal error");
    }
    response
}

/// Serves until `shutdown` resolves, then drains in-flight requests for at
/// most `server.shutdown_timeout`, then stops background tasks and waits for
/// them (the log writer flushes every queued record).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let drain_limit = state.settings.server.shutdown_timeout;
    let stop = CancellationToken::new();
    let signalled = stop.clone();
    let app = router(state.clone());
    // Small SSE writes must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let serve = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            signalled.cancel();
        })
        .into_future();
    let drained = tokio::select! {
        result = serve => { result?; true }
        _ = async { stop.cancelled().await; tokio::time::sleep(drain_limit).await } => false,
    };
    if !drained {
        // Requests still running now are cut off when the process exits, and
        // their records with them: say how many, rather than lose them silently.
        let cut_off = state
            .logs
            .stats()
            .pending
            .load(std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            ?drain_limit,
            cut_off,
            "in-flight requests did not finish in time; closing them (their request logs are lost)"
        );
    }
    state.shutdown.cancel();
    state.tracker.close();
    if tokio::time::timeout(Duration::from_secs(30), state.tracker.wait())
        .await
        .is_err()
    {
        tracing::error!("background tasks did not stop within 30s");
    }
    Ok(())
}
