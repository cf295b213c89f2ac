//! The open-loop schedule: request *i* is due at `start + i / qps`, whatever
//! happened to earlier requests (oha's `work_with_qps`).
//!
//! [`Schedule`] is the pure arithmetic (due time of *i*, which indices are
//! warmup, where the run ends). [`Pacer`] is the clock that releases due
//! requests to the workers: one plain OS thread that sleeps until the next due
//! time and then adds a permit to a semaphore the workers wait on.
//!
//! Why a thread and not `tokio::time::sleep_until` in each worker: tokio's
//! timer wheel has millisecond ticks, so every sleep wakes up to 1 ms late
//! and the measured p99 scheduling lag sits at ~1 ms whatever the load (see
//! the measurements in the report for this module). `std::thread::sleep` is a
//! `clock_nanosleep` with ~50 µs slack; handing the wake-up to a waiting
//! worker through a semaphore costs a few µs more. This module never sends a
//! request and never measures one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// The longest the pacer sleeps in one go, so it notices a stop quickly even
/// at very low rates.
const MAX_NAP: Duration = Duration::from_millis(50);

/// Due times of a run: `warmup` then `duration`, at `qps` requests a second.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    qps: u64,
    /// Index of the first request whose due time is past the warmup.
    first_measured: u64,
    /// One past the last index: the first request due at or after the end.
    end: u64,
}

impl Schedule {
    /// `qps` must be at least 1 (the CLI validates it).
    pub fn new(start: Instant, qps: u64, warmup: Duration, duration: Duration) -> Self {
        let qps = qps.max(1);
        Self {
            start,
            qps,
            first_measured: Self::count_before(qps, warmup),
            end: Self::count_before(qps, warmup + duration),
        }
    }

    /// How many indices are due strictly before `offset` from the start:
    /// the smallest `i` with `i / qps >= offset`, i.e. `ceil(offset * qps)`.
    fn count_before(qps: u64, offset: Duration) -> u64 {
        let scaled = offset.as_nanos() * u128::from(qps);
        u64::try_from(scaled.div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
    }

    /// Offset of request `i` from the start.
    pub fn offset(&self, i: u64) -> Duration {
        let nanos = u128::from(i) * 1_000_000_000 / u128::from(self.qps);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// When request `i` is due, or `None` once the schedule is over.
    pub fn due(&self, i: u64) -> Option<Instant> {
        (i < self.end).then(|| self.start + self.offset(i))
    }

    /// Whether request `i` counts in the report (it is not warmup).
    pub fn is_measured(&self, i: u64) -> bool {
        (self.first_measured..self.end).contains(&i)
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// When the measured window opens (the due time of the first measured
    /// request; equal to `start + warmup` up to one interval).
    pub fn window_start(&self) -> Instant {
        self.start + self.offset(self.first_measured)
    }

    /// Number of requests in the measured window.
    pub fn measured_len(&self) -> u64 {
        self.end - self.first_measured
    }

    /// Total number of requests, warmup included.
    pub fn len(&self) -> u64 {
        self.end
    }
}

/// The thread that releases due requests; see the module doc.
///
/// Workers take one permit of [`Pacer::released`] per request. After the
/// last request the pacer adds one extra permit per worker, so each worker
/// claims an index past the end and returns. [`Pacer::stop`] (ctrl-c) closes
/// the semaphore instead, which wakes every waiting worker at once.
pub struct Pacer {
    released: Arc<Semaphore>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pacer {
    pub fn start(schedule: Schedule, workers: usize) -> anyhow::Result<Self> {
        let released = Arc::new(Semaphore::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("loadtest-pacer".into())
            .spawn({
                let released = released.clone();
                let stop = stop.clone();
                move || pace(&schedule, &released, &stop, workers)
            })?;
        Ok(Self {
            released,
            stop,
            thread: Some(thread),
        })
    }

    /// The semaphore workers wait on: one permit per due request.
    pub fn released(&self) -> &Arc<Semaphore> {
        &self.released
    }

    /// Stops releasing requests and wakes every waiting worker.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.released.close();
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop();
        if let Some(thread) = self.thread.take() {
            // The thread only sleeps and adds permits; it cannot panic in a
            // way that would carry information worth surfacing here.
            let _ = thread.join();
        }
    }
}

/// The pacer thread's loop: sleep until the next due time, then release
/// every request that is due by now in one `add_permits` call.
fn pace(schedule: &Schedule, released: &Semaphore, stop: &AtomicBool, workers: usize) {
    let mut next = 0;
    while next < schedule.len() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let due = schedule.start() + schedule.offset(next);
        let now = Instant::now();
        if due > now {
            std::thread::sleep((due - now).min(MAX_NAP));
            continue;
        }
        let mut ready = 0;
        while next < schedule.len() && schedule.start() + schedule.offset(next) <= now {
            next += 1;
            ready += 1;
        }
        released.add_permits(ready);
    }
    // One sentinel per worker: each claims an index past the end and exits.
    released.add_permits(workers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(qps: u64, warmup_ms: u64, duration_ms: u64) -> Schedule {
        Schedule::new(
            Instant::now(),
            qps,
            Duration::from_millis(warmup_ms),
            Duration::from_millis(duration_ms),
        )
    }

    #[test]
    fn request_i_is_due_at_i_over_qps() {
        let s = schedule(1000, 0, 1000);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(1));
        assert_eq!(s.offset(999), Duration::from_millis(999));
        let s = schedule(3, 0, 1000);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(3), Duration::from_secs(1));
    }

    #[test]
    fn due_is_none_past_the_end() {
        let s = schedule(10, 0, 1000);
        assert_eq!(s.len(), 10);
        assert_eq!(s.due(9), Some(s.start() + Duration::from_millis(900)));
        assert_eq!(s.due(10), None);
    }

    #[test]
    fn warmup_requests_are_not_measured() {
        let s = schedule(100, 500, 1000);
        assert_eq!(s.len(), 150);
        assert_eq!(s.measured_len(), 100);
        assert!(!s.is_measured(49));
        assert!(s.is_measured(50));
        assert!(s.is_measured(149));
        assert!(!s.is_measured(150));
        assert_eq!(s.window_start(), s.start() + Duration::from_millis(500));
    }

    #[test]
    fn fractional_counts_round_up() {
        // 7 req/s for 1.5 s: due at 0, 1/7, ..., 10/7 s (< 1.5 s) = 11 requests.
        let s = schedule(7, 0, 1500);
        assert_eq!(s.len(), 11);
        assert!(s.offset(10) < Duration::from_millis(1500));
        assert!(s.offset(11) >= Duration::from_millis(1500));
    }

    #[tokio::test]
    async fn pacer_releases_every_request_then_one_sentinel_per_worker() {
        let s = Schedule::new(
            Instant::now(),
            10_000,
            Duration::ZERO,
            Duration::from_millis(20),
        );
        let pacer = Pacer::start(s, 3).unwrap();
        let permits = pacer.released().acquire_many(200 + 3).await.unwrap();
        permits.forget();
        assert_eq!(pacer.released().available_permits(), 0);
    }
}
