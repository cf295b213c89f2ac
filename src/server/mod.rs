//! The HTTP server: `AppState`, the routers (`proxy` for `/v1/*`, `admin` for
//! `/api/*`, `probes` for `/health` and `/ready`), authentication
//! extractors, the accept loop with its bounds on client connections
//! (`connection`), graceful shutdown.
//!
//! [`run`] takes its listener and its shutdown future as arguments, so the
//! binary and the tests start the server the same way.

pub mod admin;
pub mod auth;
mod blocking;
pub mod bootstrap;
mod connection;
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
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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
    /// Admin API identity: session keys, users' token versions, login
    /// throttles, single sign-on.
    pub identity: admin::Identity,
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
        .merge(admin::router(&state))
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
///
/// The accept loop is ours rather than `axum::serve` so that connections
/// still open at the drain limit can be aborted *before* the log writer
/// stops: aborting drops their handlers, whose `LogGuard`s then queue a
/// record for every cut-off request, and nothing is lost. It also bounds
/// what clients can hold: at most `server.max_client_connections` open at
/// once (the next one waits in the listen backlog until one closes), writes
/// that stay blocked past `server.write_timeout` close their connection
/// (`connection::WriteDeadline`), and failing `accept` calls back off
/// (`connection::AcceptBackoff`).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server = &state.settings.server;
    let drain_limit = server.shutdown_timeout;
    let write_timeout = server.write_timeout;
    let slots = Arc::new(Semaphore::new(server.max_client_connections));
    let app = router(state.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = connection::AcceptBackoff::default();
    tokio::pin!(shutdown);
    // Warn once per episode of saturation, not once per waiting connection.
    let mut saturated = false;
    'serve: loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                saturated = false;
                slot
            }
            Err(_) => {
                if !std::mem::replace(&mut saturated, true) {
                    tracing::warn!(
                        limit = server.max_client_connections,
                        "client connection limit reached; new connections wait (ABRIDGE_MAX_CLIENT_CONNECTIONS)"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot?,
                    () = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break 'serve,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    backoff.succeeded();
                    break (tcp, peer);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    let delay = backoff.after_error(&e);
                    tracing::warn!(error = %e, ?delay, "accept failed");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = &mut shutdown => break 'serve,
                    }
                }
            }
        };
        // Small SSE writes must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let io = connection::WriteDeadline::new(tcp, write_timeout);
        // The peer address, for the admin API's audit log and login throttle.
        let app = tower_http::add_extension::AddExtension::new(
            app.clone(),
            axum::extract::ConnectInfo(peer),
        );
        let service = hyper_util::service::TowerToHyperService::new(app);
        // The timer enables hyper's 30 s header-read timeout (slow clients).
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .serve_connection(hyper_util::rt::TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    tracing::info!(open = connections.len(), "draining connections");
    if tokio::time::timeout(drain_limit, graceful.shutdown())
        .await
        .is_err()
    {
        let requests = state
            .logs
            .stats()
            .pending
            .load(std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            ?drain_limit,
            requests,
            "in-flight requests did not finish in time; cutting them off (logged as client_closed)"
        );
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
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
