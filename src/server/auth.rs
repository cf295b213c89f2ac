//! Client authentication: the `ClientKey` extractor for `/v1/*`.
//!
//! Keys arrive as `x-api-key` or `Authorization: Bearer`. They are hashed
//! (SHA-256) and looked up through [`KeyCache`], so the hot path reads no
//! database: found records are cached for `ABRIDGE_KEY_CACHE_TTL` (a
//! revocation by the CLI or another replica reaches this server within that
//! time, and a cached key keeps working while the database is unreachable),
//! unknown hashes for at most [`MISSING_TTL`] so a flood of bad keys cannot
//! hammer the database. `last_used`
//! is collected in memory and written every [`TOUCH_EVERY`] by a background
//! task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::AppState;
use crate::cache::L1;
use crate::error::Error;
use crate::store::{ApiKey, Store, now_ms};

pub const MISSING_TTL: Duration = Duration::from_secs(5);
pub const TOUCH_EVERY: Duration = Duration::from_secs(10);

/// API key records by hash, in front of the store.
#[derive(Clone, Debug)]
pub struct KeyCache {
    store: Store,
    found: L1<[u8; 32], ApiKey>,
    missing: L1<[u8; 32], ()>,
    /// Key id → last use (Unix ms), written out every [`TOUCH_EVERY`].
    touches: Arc<Mutex<HashMap<i64, i64>>>,
}

impl KeyCache {
    pub fn new(
        store: Store,
        ttl: Duration,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let touches = Arc::new(Mutex::new(HashMap::new()));
        tracker.spawn(write_touches(store.clone(), touches.clone(), shutdown));
        Self {
            store,
            found: L1::new(100_000, ttl),
            missing: L1::new(100_000, MISSING_TTL.min(ttl)),
            touches,
        }
    }

    /// The record for a presented key, or `None` when no such key exists.
    pub async fn lookup(&self, presented: &str) -> Result<Option<ApiKey>, Error> {
        let hash = crate::secrets::hash_api_key(presented);
        if let Some(key) = self.found.get(&hash) {
            return Ok(Some(key));
        }
        if self.missing.get(&hash).is_some() {
            return Ok(None);
        }
        match self.store.find_api_key(hash).await? {
            Some(key) => {
                self.found.insert(hash, key.clone());
                Ok(Some(key))
            }
            None => {
                self.missing.insert(hash, ());
                Ok(None)
            }
        }
    }

    /// Notes a use of the key; never waits.
    fn touch(&self, id: i64) {
        self.touches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, now_ms());
    }
}

async fn write_touches(
    store: Store,
    touches: Arc<Mutex<HashMap<i64, i64>>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(TOUCH_EVERY);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.cancelled() => true,
        };
        let uses: Vec<(i64, i64)> =
            std::mem::take(&mut *touches.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        if !uses.is_empty()
            && let Err(e) = store.touch_api_keys(uses).await
        {
            tracing::warn!(error = %e, "could not record API key use");
        }
        if stopping {
            break;
        }
    }
}

/// The authenticated client key of a `/v1` request.
#[derive(Debug, Clone)]
pub struct ClientKey(pub ApiKey);

fn presented_key(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for ClientKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let presented = presented_key(parts)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                Error::Authentication(
                    "missing API key: send it as x-api-key or Authorization: Bearer".into(),
                )
            })?;
        let key = state
            .keys
            .lookup(presented)
            .await?
            .ok_or_else(|| Error::Authentication("invalid API key".into()))?;
        if key.revoked_at.is_some() {
            return Err(Error::Authentication(
                "this API key has been revoked".into(),
            ));
        }
        if !key.is_usable(now_ms()) {
            return Err(Error::Authentication("this API key has expired".into()));
        }
        state.keys.touch(key.id);
        Ok(ClientKey(key))
    }
}
