//! Where providers come from: the store and an optional providers file,
//! which is watched and reloaded without a restart. A file that fails to
//! parse keeps the previous provider set (and says why in the log).

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

/// Loads every provider into the router.
pub async fn load_all(
    router: &Router,
    store: &Store,
    sealer: &Sealer,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let specs = collect(store, sealer, file).await?;
    for (spec, _) in &specs {
        if !spec.models.other.is_empty() {
            tracing::warn!(provider = %spec.name, categories = ?spec.models.other.keys().collect::<Vec<_>>(), "model categories other than big/middle/small are ignored");
        }
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
    router.replace(specs);
    Ok(())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads the providers when the file changes, until `shutdown`.
pub fn watch(
    router: Router,
    store: Store,
    sealer: Sealer,
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
            match load_all(&router, &store, &sealer, Some(&path)).await {
                Ok(()) => tracing::info!(file = %path.display(), "providers file reloaded"),
                Err(e) => tracing::error!(file = %path.display(), error = %format!("{e:#}"), "providers file not reloaded; keeping the previous providers"),
            }
        }
    });
}
