//! Aggregating: merges the workers' `Recorder`s into one [`Report`], the
//! single value both presentations (`render.rs` text, serde JSON) read.
//!
//! Percentiles come from the merged histograms, so they are exact up to the
//! histograms' 3 significant figures; no percentile is ever averaged across
//! workers. Latency percentiles cover every request that got a response,
//! whatever its status; requests that failed below HTTP (timeout, connect…)
//! are counted under `errors` and in the success rate, not in latency.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::slo::Verdict;
use super::watch::ServerUsage;
use super::worker::{ErrorKind, Recorder};

/// Recorders summed: one histogram per measure and the counters.
#[derive(Debug)]
pub struct Merged {
    pub latency: Histogram<u64>,
    pub uncorrected: Histogram<u64>,
    pub lag: Histogram<u64>,
    pub ttfb: Histogram<u64>,
    pub tokens_per_s: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: [u64; 4],
    pub late: u64,
    pub backlogged: u64,
    pub last_done: Option<Instant>,
}

impl Merged {
    pub fn new(recorders: &[Recorder]) -> Self {
        let mut merged = Self {
            latency: empty(),
            uncorrected: empty(),
            lag: empty(),
            ttfb: empty(),
            tokens_per_s: empty(),
            statuses: BTreeMap::new(),
            errors: [0; 4],
            late: 0,
            backlogged: 0,
            last_done: None,
        };
        for r in recorders {
            add(&mut merged.latency, &r.latency);
            add(&mut merged.uncorrected, &r.uncorrected);
            add(&mut merged.lag, &r.lag);
            add(&mut merged.ttfb, &r.ttfb);
            add(&mut merged.tokens_per_s, &r.tokens_per_s);
            for &(status, n) in &r.statuses {
                *merged.statuses.entry(status).or_default() += n;
            }
            for (total, n) in merged.errors.iter_mut().zip(r.errors) {
                *total += n;
            }
            merged.late += r.late;
            merged.backlogged += r.backlogged;
            merged.last_done = merged.last_done.max(r.last_done);
        }
        merged
    }

    /// Requests that finished, with a response or with an error.
    pub fn completed(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.errors.iter().sum::<u64>()
    }

    pub fn succeeded(&self) -> u64 {
        self.statuses.range(200..300).map(|(_, n)| n).sum()
    }
}

fn empty() -> Histogram<u64> {
    match Histogram::new(super::worker::SIGFIGS) {
        Ok(h) => h,
        Err(_) => unreachable!("3 significant figures is a valid histogram precision"),
    }
}

/// Adds a worker's `u32`-count histogram into a `u64` one (hdrhistogram's
/// `add` needs equal count types; workers use `u32` to halve their memory).
fn add(into: &mut Histogram<u64>, from: &Histogram<u32>) {
    for v in from.iter_recorded() {
        let value = v.value_iterated_to();
        let count = v.count_since_last_iteration();
        if into.record_n(value, count).is_err() {
            into.saturating_record_n(value, count);
        }
    }
}

/// p50 … max of one measure, in the unit its field name says.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Percentiles {
    /// Summarises `h`, dividing every value by `scale` (1000 turns µs into
    /// ms, 1 keeps the unit). `None` when nothing was recorded.
    pub fn of(h: &Histogram<u64>, scale: f64) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let at = |q: f64| round3(h.value_at_quantile(q) as f64 / scale);
        Some(Self {
            count: h.len(),
            mean: round3(h.mean() / scale),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p99_9: at(0.999),
            max: round3(h.max() as f64 / scale),
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What was asked of the run, echoed in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub method: String,
    pub url: String,
    pub endpoint: &'static str,
    pub stream: bool,
    pub qps: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub concurrency: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Requests {
    /// Requests due in the measured window.
    pub scheduled: u64,
    /// Requests that finished (response or error).
    pub completed: u64,
    /// Responses with a 2xx status.
    pub succeeded: u64,
    /// `succeeded / completed`, in percent.
    pub success_pct: f64,
    /// `completed / wall_s`.
    pub achieved_qps: f64,
    /// From the start of the measured window to the last completion.
    pub wall_s: f64,
    /// Response count per status code.
    pub status: BTreeMap<String, u64>,
    /// Failed requests per low-cardinality reason.
    pub errors: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    /// Send time minus due time, ms.
    pub ms: Option<Percentiles>,
    /// Requests sent more than 1 ms after their due time.
    pub late: u64,
    /// Of those, the ones that waited for a free worker.
    pub backlogged: u64,
    /// Whether the generator fell significantly behind (p99 lag > 1 ms).
    pub behind: bool,
}

/// The result of a run: built once, then rendered as text or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub setup: Setup,
    /// Stopped early by ctrl-c.
    pub interrupted: bool,
    pub requests: Requests,
    /// Due time to end of body (coordinated-omission corrected), ms.
    pub latency_ms: Option<Percentiles>,
    /// Send time to end of body, ms.
    pub latency_uncorrected_ms: Option<Percentiles>,
    pub lag: Lag,
    /// Due time to first body byte, ms (streaming only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<Percentiles>,
    /// Output tokens per second after the first byte (streaming only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<Percentiles>,
    /// The `--watch-pid` process's usage over the measured window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
    /// The SLO verdict, when `--max-p99` or `--min-success` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo: Option<Verdict>,
}

impl Report {
    /// `window_start` is when the measured window opened; `scheduled` how
    /// many requests it held; `ended` when the run ended (a fallback for the
    /// wall time if nothing completed).
    pub fn build(
        setup: Setup,
        merged: &Merged,
        window_start: Instant,
        scheduled: u64,
        ended: Instant,
    ) -> Self {
        let completed = merged.completed();
        let succeeded = merged.succeeded();
        let wall = merged
            .last_done
            .unwrap_or(ended)
            .saturating_duration_since(window_start);
        let lag = Percentiles::of(&merged.lag, 1000.0);
        Self {
            requests: Requests {
                scheduled,
                completed,
                succeeded,
                success_pct: ratio_pct(succeeded, completed),
                achieved_qps: per_second(completed, wall),
                wall_s: round3(wall.as_secs_f64()),
                status: merged
                    .statuses
                    .iter()
                    .map(|(code, n)| (code.to_string(), *n))
                    .collect(),
                errors: ErrorKind::ALL
                    .iter()
                    .zip(merged.errors)
                    .filter(|(_, n)| *n > 0)
                    .map(|(kind, n)| (kind.label(), n))
                    .collect(),
            },
            latency_ms: Percentiles::of(&merged.latency, 1000.0),
            latency_uncorrected_ms: Percentiles::of(&merged.uncorrected, 1000.0),
            lag: Lag {
                behind: lag.is_some_and(|l| l.p99 > 1.0),
                ms: lag,
                late: merged.late,
                backlogged: merged.backlogged,
            },
            ttfb_ms: Percentiles::of(&merged.ttfb, 1000.0),
            tokens_per_s: Percentiles::of(&merged.tokens_per_s, 1.0),
            server: None,
            slo: None,
            interrupted: false,
            setup,
        }
    }

    /// The one-line warning printed when the generator fell behind, naming
    /// the likelier cause.
    pub fn lag_warning(&self) -> Option<String> {
        let lag = self.lag.ms.filter(|_| self.lag.behind)?;
        let cause = if self.lag.backlogged * 2 > self.lag.late {
            "most late requests found every worker busy: raise --concurrency"
        } else {
            "workers woke late: the machine is short of CPU"
        };
        Some(format!(
            "warning: generator fell behind schedule: p99 lag {:.3} ms, {} requests sent >1 ms late ({cause})",
            lag.p99, self.lag.late
        ))
    }
}

fn ratio_pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round3(part as f64 * 100.0 / whole as f64)
    }
}

fn per_second(n: u64, wall: Duration) -> f64 {
    if wall.is_zero() {
        0.0
    } else {
        round3(n as f64 / wall.as_secs_f64())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::loadtest::worker::{Outcome, Timing};

    pub fn setup() -> Setup {
        Setup {
            method: "GET".into(),
            url: "http://127.0.0.1:1/health".into(),
            endpoint: "health",
            stream: false,
            qps: 1000,
            duration_s: 1.0,
            warmup_s: 0.0,
            concurrency: 8,
        }
    }

    fn recorder(start: Instant, latencies_us: impl Iterator<Item = u64>, status: u16) -> Recorder {
        let mut r = Recorder::default();
        for us in latencies_us {
            let timing = Timing {
                due: start,
                sent: start,
                done: start + Duration::from_micros(us),
                backlogged: false,
            };
            let outcome = Outcome::Response {
                status,
                first_byte: None,
                tokens: 0,
            };
            r.record(timing, outcome);
        }
        r
    }

    #[test]
    fn merged_percentiles_span_all_workers() {
        let start = Instant::now();
        // Worker a saw 1..=500 µs, worker b 501..=1000 µs: neither alone has
        // the right p50 or p99.
        let a = recorder(start, 1..=500, 200);
        let b = recorder(start, 501..=1000, 200);
        let merged = Merged::new(&[a, b]);
        let p = Percentiles::of(&merged.latency, 1.0).unwrap();
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, 500.0);
        assert_eq!(p.p90, 900.0);
        assert_eq!(p.p99, 990.0);
        assert_eq!(p.p99_9, 999.0);
        assert_eq!(p.max, 1000.0);
        assert!((p.mean - 500.5).abs() < 0.5, "{}", p.mean);
        let ms = Percentiles::of(&merged.latency, 1000.0).unwrap();
        assert_eq!(ms.p99, 0.99);
    }

    #[test]
    fn large_values_keep_three_significant_figures() {
        let start = Instant::now();
        let r = recorder(start, [12_345_678].into_iter(), 200);
        let p = Percentiles::of(&Merged::new(&[r]).latency, 1000.0).unwrap();
        assert!((p.max - 12_345.678).abs() / 12_345.678 < 0.001, "{}", p.max);
    }

    #[test]
    fn report_counts_success_status_and_errors() {
        let start = Instant::now();
        let mut a = recorder(start, 1..=98, 200);
        let timeout = Timing {
            due: start,
            sent: start,
            done: start + Duration::from_secs(1),
            backlogged: false,
        };
        a.record(timeout, Outcome::Error(ErrorKind::Timeout));
        let b = recorder(start, [1000].into_iter(), 503);
        let merged = Merged::new(&[a, b]);
        let report = Report::build(setup(), &merged, start, 100, start);
        let q = &report.requests;
        assert_eq!((q.completed, q.succeeded, q.scheduled), (100, 98, 100));
        assert_eq!(q.success_pct, 98.0);
        assert_eq!(q.status.get("200"), Some(&98));
        assert_eq!(q.status.get("503"), Some(&1));
        assert_eq!(q.errors.get("timeout"), Some(&1));
        // The last completion (the timeout) is 1 s after the window opened.
        assert_eq!(q.wall_s, 1.0);
        assert_eq!(q.achieved_qps, 100.0);
        assert_eq!(report.latency_ms.unwrap().count, 99);
        assert!(!report.lag.behind);
        assert!(report.lag_warning().is_none());
    }

    #[test]
    fn empty_run_has_no_percentiles() {
        let start = Instant::now();
        let report = Report::build(setup(), &Merged::new(&[]), start, 10, start);
        assert!(report.latency_ms.is_none());
        assert_eq!(report.requests.success_pct, 0.0);
        assert_eq!(report.requests.achieved_qps, 0.0);
    }
}
