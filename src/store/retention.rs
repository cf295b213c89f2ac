//! Request-log retention (`ABRIDGE_LOG_RETENTION`, off by default).
//!
//! A background task on the server's `TaskTracker` wakes every [`EVERY`] and
//! deletes the rows older than the retention, [`BATCH`] rows per statement
//! with a short pause between statements. Each statement is its own short
//! transaction, so the log writer never waits for more than one batch: on
//! SQLite it shares the one writer connection and queues behind a batch for
//! milliseconds; on PostgreSQL old rows and new inserts never touch the same
//! rows. Deciding *how long* to keep logs is the operator's; this file only
//! enforces it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Engine, Result, Store, now_ms};

/// Rows deleted per statement.
pub const BATCH: i64 = 1000;
/// How often the pruner looks for expired rows.
pub const EVERY: Duration = Duration::from_secs(60);
/// Pause between two batches, so writers get the database in between.
const PAUSE: Duration = Duration::from_millis(20);

impl Store {
    /// Deletes up to `limit` request logs created before `before` (Unix ms),
    /// oldest first; returns how many went.
    pub async fn prune_logs(&self, before: i64, limit: i64) -> Result<u64> {
        match &self.engine {
            Engine::Sqlite(db) => {
                db.write(move |conn| {
                    Ok(conn.execute(
                        "DELETE FROM request_logs WHERE id IN (
                            SELECT id FROM request_logs WHERE created_at < ?1
                            ORDER BY created_at LIMIT ?2)",
                        [before, limit],
                    )? as u64)
                })
                .await
            }
            Engine::Postgres(db) => Ok(db
                .client()
                .await?
                .execute(
                    "DELETE FROM request_logs WHERE id IN (
                        SELECT id FROM request_logs WHERE created_at < $1
                        ORDER BY created_at LIMIT $2)",
                    &[&before, &limit],
                )
                .await?),
        }
    }
}

/// Deletes everything older than `retention`, batch by batch, until none is
/// left or `shutdown` fires; returns how many rows went.
pub async fn prune_once(
    store: &Store,
    retention: Duration,
    batch: i64,
    shutdown: &CancellationToken,
) -> Result<u64> {
    let before = now_ms() - retention.as_millis() as i64;
    let mut total = 0;
    loop {
        let deleted = store.prune_logs(before, batch).await?;
        total += deleted;
        if deleted < batch as u64 || shutdown.is_cancelled() {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Starts the pruner when a retention is set.
pub fn spawn(
    store: Store,
    retention: Option<Duration>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let Some(retention) = retention else {
        return;
    };
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            match prune_once(&store, retention, BATCH, &shutdown).await {
                Ok(0) => {}
                Ok(rows) => tracing::info!(rows, ?retention, "old request logs deleted"),
                Err(e) => tracing::warn!(error = %e, "could not delete old request logs"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LogRecord, testing};

    fn logs(created_at: i64, n: usize) -> std::sync::Arc<Vec<LogRecord>> {
        let rows = (0..n)
            .map(|_| LogRecord {
                created_at,
                alias: "m".into(),
                status: 200,
                ..LogRecord::default()
            })
            .collect();
        std::sync::Arc::new(rows)
    }

    #[tokio::test]
    async fn old_logs_go_in_batches_and_recent_ones_stay() {
        for test in testing::each().await {
            let store = &test.store;
            let day = Duration::from_secs(86_400);
            store
                .insert_logs(logs(now_ms() - 2 * day.as_millis() as i64, 25))
                .await
                .unwrap();
            store.insert_logs(logs(now_ms(), 3)).await.unwrap();
            let deleted = prune_once(store, day, 10, &CancellationToken::new())
                .await
                .unwrap();
            assert_eq!(deleted, 25, "{}", store.engine());
            assert_eq!(store.count_logs().await.unwrap(), 3);
            assert!(
                store
                    .recent_logs(10)
                    .await
                    .unwrap()
                    .iter()
                    .all(|r| r.created_at > now_ms() - day.as_millis() as i64)
            );
        }
    }

    #[tokio::test]
    async fn the_background_pruner_runs_at_start() {
        let test = testing::sqlite().await;
        test.store
            .insert_logs(logs(now_ms() - 10_000, 5))
            .await
            .unwrap();
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        spawn(
            test.store.clone(),
            Some(Duration::from_secs(1)),
            &tracker,
            shutdown.clone(),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while test.store.count_logs().await.unwrap() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "not pruned in 5 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
