//! Where providers come from: the store and an optional providers file,
//! which is watched and reloaded without a restart. A file that fails to
//! parse keeps the previous provider set (and says why in the log). The
//! file's routing keys (`fallback_strategy`, `circuit_breaker`) are applied
//! on every load, under the precedence of `config::Settings::routing_with`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::provider::{self, ProviderSpec, ProvidersFile};
use super::router::{Router, Source};
use crate::config::Settings;
use crate::secrets::Sealer;
use crate::store::Store;

/// How often the providers file's modification time is checked.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Store providers plus file providers (a file provider replaces a store
/// provider of the same name), and what the file says besides.
async fn collect(
    store: &Store,
    sealer: &Sealer,
    settings: &Settings,
) -> anyhow::Result<(Vec<(ProviderSpec, Source)>, ProvidersFile)> {
    let mut specs: Vec<(ProviderSpec, Source)> = store
        .list_providers(sealer)
        .await?
        .into_iter()
        .map(|s| (s, Source::Store))
        .collect();
    let mut file = ProvidersFile::default();
    if let Some(path) = settings.server.providers_file.as_deref() {
        file = provider::load_file(path).map_err(crate::config::ConfigError)?;
        for spec in std::mem::take(&mut file.providers) {
            specs.retain(|(s, _)| s.name != spec.name);
            specs.push((spec, Source::File));
        }
    }
    Ok((specs, file))
}

/// Loads every provider, and the routing settings in force, into the router.
pub async fn load_all(
    router: &Router,
    store: &Store,
    sealer: &Sealer,
    settings: &Settings,
) -> anyhow::Result<()> {
    let (specs, file) = collect(store, sealer, settings).await?;
    for warning in &file.warnings {
        tracing::warn!("{warning}");
    }
    for (spec, _) in &specs {
        if spec.api_keys.is_empty() {
            tracing::warn!(provider = %spec.name, "provider has no API key; requests go out unauthenticated");
        }
    }
    if specs.is_empty() {
        tracing::warn!(
            "no providers configured: every model answers 404 until one is added (ABRIDGE_PROVIDERS or `abridge providers import`)"
        );
    } else {
        tracing::info!(providers = specs.len(), "providers loaded");
    }
    let routing = settings.routing_with(&file.routing);
    if routing != settings.routing {
        tracing::info!(
            strategy = ?routing.strategy,
            failure_threshold = routing.failure_threshold,
            recovery_timeout = ?routing.recovery_timeout,
            breaker_enabled = routing.breaker_enabled,
            "routing settings from the providers file"
        );
    }
    router.replace(specs, routing);
    Ok(())
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads the providers when the file at `path` (the one in `settings`)
/// changes, until `shutdown`.
pub fn watch(
    router: Router,
    store: Store,
    sealer: Sealer,
    settings: Settings,
    path: PathBuf,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(async move {
        let mut last = modified(&path);
        let mut tick = tokio::time::interval(POLL_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            let now = modified(&path);
            if now == last {
                continue;
            }
            last = now;
            match load_all(&router, &store, &sealer, &settings).await {
                Ok(()) => tracing::info!(file = %path.display(), "providers file reloaded"),
                Err(e) => tracing::error!(file = %path.display(), error = %format!("{e:#}"), "providers file not reloaded; keeping the previous providers"),
            }
        }
    });
}
