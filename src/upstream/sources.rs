//! Where providers come from: the store and an optional providers file,
//! both reloaded without a restart: the file when it changes, the store
//! every `ABRIDGE_KEY_CACHE_TTL`, so a provider changed by the CLI or by
//! another replica sharing the database reaches this one within that time.
//! A file that fails to parse, or a store that cannot be reached, keeps the
//! previous provider set (and says why in the log).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::provider::{self, ProviderSpec};
use super::router::{Router, Source};
use crate::secrets::Sealer;
use crate::store::Store;

/// How often the providers file's modification time is checked.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Store providers plus file providers; a file provider replaces a store
/// provider of the same name.
async fn collect(
    store: &Store,
    sealer: &Sealer,
    file: Option<&Path>,
) -> anyhow::Result<Vec<(ProviderSpec, Source)>> {
    let mut specs: Vec<(ProviderSpec, Source)> = store
        .list_providers(sealer)
        .await?
        .into_iter()
        .map(|s| (s, Source::Store))
        .collect();
    if let Some(path) = file {
        let from_file = provider::load_file(path).map_err(crate::config::ConfigError)?;
        for spec in from_file {
            specs.retain(|(s, _)| s.name != spec.name);
            specs.push((spec, Source::File));
        }
    }
    Ok(specs)
}

/// Loads every provider into the router; says whether anything changed.
pub async fn load_all(
    router: &Router,
    store: &Store,
    sealer: &Sealer,
    file: Option<&Path>,
) -> anyhow::Result<bool> {
    let specs = collect(store, sealer, file).await?;
    for (spec, _) in &specs {
        if !spec.models.other.is_empty() {
            tracing::warn!(provider = %spec.name, categories = ?spec.models.other.keys().collect::<Vec<_>>(), "model categories other than big/middle/small are ignored");
        }
        if spec.api_keys.is_empty() {
            tracing::warn!(provider = %spec.name, "provider has no API key; requests go out unauthenticated");
        }
    }
    let count = specs.len();
    let changed = router.replace(specs);
    if count == 0 {
        tracing::warn!(
            "no providers configured: every model answers 404 until one is added (ABRIDGE_PROVIDERS or `abridge providers import`)"
        );
    } else if changed {
        tracing::info!(providers = count, "providers loaded");
    }
    Ok(changed)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads the providers when the file changes and from the store every
/// `refresh`, until `shutdown`.
pub fn watch(
    router: Router,
    store: Store,
    sealer: Sealer,
    file: Option<PathBuf>,
    refresh: Duration,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(async move {
        let mut last = file.as_deref().and_then(modified);
        let mut loaded = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(POLL_EVERY.min(refresh));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            let now = file.as_deref().and_then(modified);
            let file_changed = now != last;
            if !file_changed && loaded.elapsed() < refresh {
                continue;
            }
            last = now;
            loaded = tokio::time::Instant::now();
            match load_all(&router, &store, &sealer, file.as_deref()).await {
                Ok(changed) => {
                    if let Some(path) = file.as_deref().filter(|_| file_changed) {
                        tracing::info!(file = %path.display(), "providers file reloaded");
                    } else if changed {
                        tracing::info!("providers changed in the store; reloaded");
                    }
                }
                Err(e) => tracing::error!(error = %format!("{e:#}"), "providers not reloaded; keeping the previous providers"),
            }
        }
    });
}
