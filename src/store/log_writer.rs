//! The batching request-log writer.
//!
//! The request path hands a [`LogRecord`] to [`LogWriter::record`], which
//! never waits: when the bounded queue is full the record is counted as
//! dropped. A background task (on the server's `TaskTracker`) wakes every
//! [`FLUSH_EVERY`] and writes what has queued in transactions of up to
//! [`BATCH`] rows.
//!
//! No row is lost silently. A failed write is retried with doubling delays
//! ([`Policy`]) while new records wait in the queue; a batch that still fails
//! is written row by row when the store answers at all, so one refused row
//! does not take its batch with it, and the rows that cannot be written are
//! counted as failed. The counts ([`LogCounts`]) are on `/ready`'s detail,
//! logged as a warning every [`Policy::report_every`] while rows are being
//! dropped, failed or retried, and shutdown says how many rows it could not
//! write. On shutdown the writer drains the queue; retries stop waiting, so a
//! store that is down cannot hold the exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{LogRecord, Store, StoreError};

/// Rows per transaction at most.
pub const BATCH: usize = 512;
/// Longest a record waits in memory before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Records queued at most; beyond it they are dropped and counted.
pub const QUEUE: usize = 65_536;

/// How failed writes are retried and how often trouble is reported.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Delay before the first retry; doubles per failure.
    pub first_retry: Duration,
    /// Longest delay between two attempts.
    pub max_retry: Duration,
    /// Attempts per batch, the first included, before its rows are given up.
    pub attempts: u32,
    /// How often growing drop, failure and retry counts are logged.
    pub report_every: Duration,
}

impl Default for Policy {
    /// Ten attempts over about 33 s: a store restart or a failover of the
    /// database loses nothing, while the queue (bounded) keeps filling.
    fn default() -> Self {
        Self {
            first_retry: Duration::from_millis(100),
            max_retry: Duration::from_secs(10),
            attempts: 10,
            report_every: Duration::from_secs(60),
        }
    }
}

impl Policy {
    /// The wait before the next attempt after `failures` failed ones, or
    /// `None` when the batch is to be given up.
    pub fn retry_delay(&self, failures: u32) -> Option<Duration> {
        if failures == 0 || failures >= self.attempts {
            return None;
        }
        let doubled = self
            .first_retry
            .checked_mul(1 << (failures - 1).min(30))
            .unwrap_or(self.max_retry);
        Some(doubled.min(self.max_retry))
    }
}

/// Cheap-to-clone sending side of the log queue.
#[derive(Clone, Debug)]
pub struct LogWriter {
    tx: mpsc::Sender<LogRecord>,
    stats: Arc<LogStats>,
}

/// Live counters, shared by the request path and the writer task.
#[derive(Debug, Default)]
pub struct LogStats {
    pub written: AtomicU64,
    /// Records refused because the queue was full (or the writer stopped).
    pub dropped: AtomicU64,
    /// Rows given up after every attempt to write them failed.
    pub failed: AtomicU64,
    /// Failed batch writes that were retried.
    pub retried: AtomicU64,
    /// Requests whose record is not queued yet (they are still running).
    pub pending: AtomicU64,
}

impl LogStats {
    fn counts(&self, queued: usize) -> LogCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LogCounts {
            written: get(&self.written),
            queued: queued as u64,
            dropped: get(&self.dropped),
            failed: get(&self.failed),
            retried: get(&self.retried),
        }
    }
}

/// A snapshot of the counters, as `/ready` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogCounts {
    pub written: u64,
    pub queued: u64,
    pub dropped: u64,
    pub failed: u64,
    pub retried: u64,
}

impl LogCounts {
    /// Rows that never reached the store.
    pub fn lost(&self) -> u64 {
        self.dropped + self.failed
    }

    /// What went wrong since `earlier`, when anything did.
    pub fn trouble_since(&self, earlier: &LogCounts) -> Option<LogCounts> {
        let delta = LogCounts {
            written: self.written.saturating_sub(earlier.written),
            queued: self.queued,
            dropped: self.dropped.saturating_sub(earlier.dropped),
            failed: self.failed.saturating_sub(earlier.failed),
            retried: self.retried.saturating_sub(earlier.retried),
        };
        (delta.dropped + delta.failed + delta.retried > 0).then_some(delta)
    }
}

impl LogWriter {
    /// Starts the writer task on `tracker` with the default [`Policy`]; it
    /// stops after `shutdown` fires and the queue is empty.
    pub fn spawn(store: Store, tracker: &TaskTracker, shutdown: CancellationToken) -> Self {
        Self::spawn_with(store, tracker, shutdown, Policy::default())
    }

    pub fn spawn_with(
        store: Store,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
        policy: Policy,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(LogStats::default());
        let writer = Writer {
            store,
            stats: stats.clone(),
            policy,
            shutdown,
        };
        tracker.spawn(writer.run(rx));
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

    /// The counters now, with the queue's length.
    pub fn counts(&self) -> LogCounts {
        self.stats
            .counts(self.tx.max_capacity() - self.tx.capacity())
    }
}

/// The writer task's state.
struct Writer {
    store: Store,
    stats: Arc<LogStats>,
    policy: Policy,
    shutdown: CancellationToken,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<LogRecord>) {
        // The writer wakes on a timer, never per record: a request that
        // queues a record costs no task wake-up (the receiver is not waiting
        // on the channel).
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(BATCH);
        let mut reported = LogCounts::default();
        let mut next_report = Instant::now() + self.policy.report_every;
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = self.shutdown.cancelled() => true,
            };
            if stopping {
                break;
            }
            while let Ok(record) = rx.try_recv() {
                batch.push(record);
                if batch.len() == BATCH {
                    self.write(&mut batch).await;
                }
            }
            self.write(&mut batch).await;
            if Instant::now() >= next_report {
                next_report = Instant::now() + self.policy.report_every;
                let now = self.stats.counts(rx.len());
                if let Some(d) = now.trouble_since(&reported) {
                    tracing::warn!(
                        dropped = d.dropped,
                        failed = d.failed,
                        retried = d.retried,
                        queued = now.queued,
                        total_written = now.written,
                        total_lost = now.lost(),
                        period = ?self.policy.report_every,
                        "request logs: {} rows lost and {} writes retried in the last period",
                        d.dropped + d.failed,
                        d.retried,
                    );
                }
                reported = now;
            }
        }
        // Shutdown: take everything still queued, then write it.
        rx.close();
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            self.write(&mut batch).await;
        }
        let end = self.stats.counts(0);
        if end.lost() > 0 {
            tracing::error!(
                written = end.written,
                dropped = end.dropped,
                failed = end.failed,
                "request log writer stopped: {} rows could not be written",
                end.lost()
            );
        } else {
            tracing::info!(
                written = end.written,
                "request log writer stopped: every row was written"
            );
        }
    }

    /// Writes `batch` (leaving it empty), retrying per the policy.
    async fn write(&self, batch: &mut Vec<LogRecord>) {
        if batch.is_empty() {
            return;
        }
        let rows = Arc::new(std::mem::replace(batch, Vec::with_capacity(BATCH)));
        let n = rows.len() as u64;
        let mut failures = 0;
        loop {
            let error = match self.store.insert_logs(rows.clone()).await {
                Ok(()) => {
                    self.stats.written.fetch_add(n, Ordering::Relaxed);
                    if failures > 0 {
                        tracing::info!(rows = n, failures, "request logs written after retrying");
                    }
                    return;
                }
                Err(e) => e,
            };
            failures += 1;
            let delay = match self.shutdown.is_cancelled() {
                true => None,
                false => self.policy.retry_delay(failures),
            };
            let Some(delay) = delay else {
                self.give_up(&rows, &error).await;
                return;
            };
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
            if failures == 1 {
                tracing::warn!(error = %error, rows = n, "could not write request logs; retrying");
            }
            // Shutdown cuts the wait short: one more attempt, then give up.
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.cancelled() => {}
            }
        }
    }

    /// The batch failed every attempt. When the store answers, something in
    /// the batch is refused: write its rows one by one and count the rest.
    async fn give_up(&self, rows: &[LogRecord], cause: &StoreError) {
        let mut lost = rows.len() as u64;
        if rows.len() > 1 && self.store.ping().await.is_ok() {
            for row in rows {
                if self
                    .store
                    .insert_logs(Arc::new(vec![row.clone()]))
                    .await
                    .is_ok()
                {
                    self.stats.written.fetch_add(1, Ordering::Relaxed);
                    lost -= 1;
                }
            }
        }
        if lost > 0 {
            self.stats.failed.fetch_add(lost, Ordering::Relaxed);
            tracing::error!(error = %cause, rows = lost, "request logs could not be written; giving up on them");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::testing;

    fn record(alias: &str) -> LogRecord {
        LogRecord {
            alias: alias.into(),
            status: 200,
            ..LogRecord::default()
        }
    }

    fn quick() -> Policy {
        Policy {
            first_retry: Duration::from_millis(5),
            max_retry: Duration::from_millis(20),
            attempts: 4,
            report_every: Duration::from_millis(50),
        }
    }

    /// Makes inserts of rows whose alias matches `alias` (`%` for all) fail.
    async fn refuse(store: &Store, alias: &str) {
        let sql = format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON request_logs WHEN NEW.alias LIKE '{alias}'
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END;"
        );
        store
            .write(move |conn| Ok(conn.execute_batch(&sql)?))
            .await
            .unwrap();
    }

    async fn accept(store: &Store) {
        store
            .write(|conn| Ok(conn.execute_batch("DROP TRIGGER refuse")?))
            .await
            .unwrap();
    }

    /// Log lines emitted on this thread while the guard lives.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn start(&self) -> tracing::subscriber::DefaultGuard {
            let out = self.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || out.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_default(subscriber)
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// Waits (at most 5 s) until `done` holds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "gave up waiting: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(tracker: &TaskTracker, shutdown: &CancellationToken) {
        shutdown.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .expect("the writer stops");
    }

    #[test]
    fn retries_double_up_to_a_cap_then_give_up() {
        let policy = Policy {
            first_retry: Duration::from_millis(100),
            max_retry: Duration::from_millis(500),
            attempts: 6,
            report_every: Duration::from_secs(60),
        };
        let ms = |n| Some(Duration::from_millis(n));
        let cases = [
            (0, None),
            (1, ms(100)),
            (2, ms(200)),
            (3, ms(400)),
            (4, ms(500)),
            (5, ms(500)),
            (6, None),
            (40, None),
        ];
        for (failures, delay) in cases {
            assert_eq!(policy.retry_delay(failures), delay, "{failures}");
        }
        let default = Policy::default();
        let total: Duration = (1..default.attempts)
            .filter_map(|f| default.retry_delay(f))
            .sum();
        assert!(
            total > Duration::from_secs(30) && total < Duration::from_secs(60),
            "{total:?}"
        );
    }

    #[test]
    fn trouble_is_what_grew() {
        let at = |written, dropped, failed, retried| LogCounts {
            written,
            queued: 0,
            dropped,
            failed,
            retried,
        };
        let cases = [
            (at(5, 0, 0, 0), at(9, 0, 0, 0), None),
            (at(5, 1, 0, 0), at(9, 1, 0, 0), None),
            (at(5, 1, 0, 0), at(9, 3, 0, 0), Some(at(4, 2, 0, 0))),
            (at(0, 0, 0, 0), at(0, 0, 7, 2), Some(at(0, 0, 7, 2))),
            (at(0, 0, 0, 1), at(0, 0, 0, 2), Some(at(0, 0, 0, 1))),
        ];
        for (earlier, now, want) in cases {
            assert_eq!(now.trouble_since(&earlier), want, "{earlier:?} → {now:?}");
        }
        assert_eq!(at(0, 2, 3, 9).lost(), 5);
    }

    #[tokio::test]
    async fn every_record_is_written_by_shutdown() {
        let (store, _dir) = testing::store().await;
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let writer = LogWriter::spawn(store.clone(), &tracker, shutdown.clone());
        for i in 0..1500 {
            writer.record(record(&format!("m{i}")));
        }
        let captured = Captured::default();
        let _logs = captured.start();
        stop(&tracker, &shutdown).await;
        assert_eq!(store.count_logs().await.unwrap(), 1500);
        let counts = writer.counts();
        assert_eq!((counts.written, counts.lost()), (1500, 0));
        assert!(captured.text().contains("every row was written"));
    }

    #[tokio::test]
    async fn a_failing_store_is_retried_until_it_recovers() {
        let (store, _dir) = testing::store().await;
        refuse(&store, "%").await;
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let policy = Policy {
            attempts: 1000,
            ..quick()
        };
        let writer = LogWriter::spawn_with(store.clone(), &tracker, shutdown.clone(), policy);
        for i in 0..10 {
            writer.record(record(&format!("m{i}")));
        }
        until("retries", || writer.counts().retried >= 3).await;
        assert_eq!(writer.counts().written, 0);
        accept(&store).await;
        until("the rows written", || writer.counts().written == 10).await;
        stop(&tracker, &shutdown).await;
        assert_eq!(store.count_logs().await.unwrap(), 10);
        assert_eq!(writer.counts().lost(), 0);
    }

    #[tokio::test]
    async fn rows_that_cannot_be_written_are_counted_reported_and_summed_up() {
        let (store, _dir) = testing::store().await;
        refuse(&store, "poison%").await;
        let captured = Captured::default();
        let _logs = captured.start();
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let writer = LogWriter::spawn_with(store.clone(), &tracker, shutdown.clone(), quick());
        for i in 0..9 {
            writer.record(record(&format!("m{i}")));
        }
        writer.record(record("poison-1"));
        until("giving up", || writer.counts().failed > 0).await;
        // The periodic report notices within `report_every`.
        until("the report", || captured.text().contains("rows lost")).await;
        // The whole queue refused: given up at shutdown without the waits.
        refuse_all_too(&store).await;
        for i in 0..5 {
            writer.record(record(&format!("late{i}")));
        }
        let started = Instant::now();
        stop(&tracker, &shutdown).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            store.count_logs().await.unwrap(),
            9,
            "the good rows of the batch"
        );
        let counts = writer.counts();
        assert_eq!((counts.written, counts.failed), (9, 6));
        let text = captured.text();
        assert!(text.contains("1 rows lost"), "{text}");
        assert!(
            text.contains("request log writer stopped: 6 rows could not be written"),
            "{text}"
        );
    }

    /// Replaces the trigger with one refusing every row.
    async fn refuse_all_too(store: &Store) {
        accept(store).await;
        refuse(store, "%").await;
    }

    #[tokio::test]
    async fn pending_counts_requests_whose_record_is_not_queued_yet() {
        let (store, _dir) = testing::store().await;
        let tracker = TaskTracker::new();
        let writer = LogWriter::spawn(store, &tracker, CancellationToken::new());
        writer.begin();
        writer.begin();
        assert_eq!(writer.stats().pending.load(Ordering::Relaxed), 2);
        writer.finish(LogRecord::default());
        assert_eq!(writer.stats().pending.load(Ordering::Relaxed), 1);
    }
}
