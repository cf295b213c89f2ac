//! The batching request-log writer.
//!
//! The request path hands a [`LogRecord`] to [`LogWriter::record`], which
//! never waits: when the bounded queue is full the record is counted as
//! dropped. A background task (on the server's `TaskTracker`) wakes every
//! [`FLUSH_EVERY`] and writes what has queued in transactions of up to
//! [`BATCH`] rows. On shutdown it drains the queue and flushes before it ends,
//! so a graceful stop loses no record.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{LogRecord, Store};

/// Rows per transaction at most.
pub const BATCH: usize = 512;
/// Longest a record waits in memory before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Records queued at most; beyond it they are dropped and counted.
pub const QUEUE: usize = 65_536;

/// Cheap-to-clone sending side of the log queue.
#[derive(Clone, Debug)]
pub struct LogWriter {
    tx: mpsc::Sender<LogRecord>,
    stats: Arc<LogStats>,
}

/// Counters exposed on `/ready` and in metrics.
#[derive(Debug, Default)]
pub struct LogStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    /// Requests whose record is not queued yet (they are still running).
    pub pending: AtomicU64,
}

impl LogWriter {
    /// Starts the writer task on `tracker`; it stops after `shutdown` fires
    /// and the queue is empty.
    pub fn spawn(store: Store, tracker: &TaskTracker, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(LogStats::default());
        tracker.spawn(run(store, rx, shutdown, stats.clone()));
        Self { tx, stats }
    }

    /// Queues a record without waiting.
    pub fn record(&self, record: LogRecord) {
        if self.tx.try_send(record).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes that a request has started; its record will follow.
    pub fn begin(&self) {
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// Queues the record of a request announced with [`LogWriter::begin`].
    pub fn finish(&self, record: LogRecord) {
        self.stats.pending.fetch_sub(1, Ordering::Relaxed);
        self.record(record);
    }

    pub fn stats(&self) -> &LogStats {
        &self.stats
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::Receiver<LogRecord>,
    shutdown: CancellationToken,
    stats: Arc<LogStats>,
) {
    // The writer wakes on a timer, never per record: a request that queues a
    // record costs no task wake-up (the receiver is not waiting on the channel).
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.cancelled() => true,
        };
        if stopping {
            break;
        }
        while let Ok(record) = rx.try_recv() {
            batch.push(record);
            if batch.len() == BATCH {
                flush(&store, &mut batch, &stats).await;
            }
        }
        flush(&store, &mut batch, &stats).await;
    }
    // Shutdown: take everything still queued, then write it.
    rx.close();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        flush(&store, &mut batch, &stats).await;
    }
    flush(&store, &mut batch, &stats).await;
}

async fn flush(store: &Store, batch: &mut Vec<LogRecord>, stats: &LogStats) {
    if batch.is_empty() {
        return;
    }
    let rows = std::mem::replace(batch, Vec::with_capacity(BATCH));
    let n = rows.len() as u64;
    match store.insert_logs(rows).await {
        Ok(()) => {
            stats.written.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            stats.failed.fetch_add(n, Ordering::Relaxed);
            tracing::error!(error = %e, rows = n, "could not write request logs");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[tokio::test]
    async fn every_record_is_written_by_shutdown() {
        for test in testing::each().await {
            let store = test.store;
            let tracker = TaskTracker::new();
            let shutdown = CancellationToken::new();
            let writer = LogWriter::spawn(store.clone(), &tracker, shutdown.clone());
            for i in 0..1500 {
                writer.record(LogRecord {
                    alias: format!("m{i}"),
                    status: 200,
                    ..LogRecord::default()
                });
            }
            shutdown.cancel();
            tracker.close();
            tracker.wait().await;
            assert_eq!(store.count_logs().await.unwrap(), 1500);
            assert_eq!(writer.stats().written.load(Ordering::Relaxed), 1500);
            assert_eq!(writer.stats().dropped.load(Ordering::Relaxed), 0);
        }
    }

    #[tokio::test]
    async fn pending_counts_requests_whose_record_is_not_queued_yet() {
        let test = testing::sqlite().await;
        let store = test.store;
        let tracker = TaskTracker::new();
        let writer = LogWriter::spawn(store, &tracker, CancellationToken::new());
        writer.begin();
        writer.begin();
        assert_eq!(writer.stats().pending.load(Ordering::Relaxed), 2);
        writer.finish(LogRecord::default());
        assert_eq!(writer.stats().pending.load(Ordering::Relaxed), 1);
    }
}
