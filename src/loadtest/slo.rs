//! Service-level objectives checked against a finished [`Report`]: the p99
//! of the corrected latency and the success rate. A failed check becomes a
//! one-line reason and exit code 1 (`cli/loadtest.rs`); this module only
//! judges.

use std::time::Duration;

use serde::Serialize;

use super::report::Report;

/// What `--max-p99` and `--min-success` asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Slo {
    pub max_p99: Option<Duration>,
    /// Minimum share of 2xx responses, in percent.
    pub min_success_pct: Option<f64>,
}

/// The outcome of [`Slo::check`], kept in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub passed: bool,
    /// Why it failed, one line; `None` when it passed.
    pub reason: Option<String>,
}

impl Slo {
    pub fn is_empty(&self) -> bool {
        self.max_p99.is_none() && self.min_success_pct.is_none()
    }

    /// Checks every objective; the first failure gives the reason.
    pub fn check(&self, report: &Report) -> Verdict {
        let failure = self
            .check_p99(report)
            .or_else(|| self.check_success(report));
        Verdict {
            passed: failure.is_none(),
            reason: failure,
        }
    }

    fn check_p99(&self, report: &Report) -> Option<String> {
        let max = self.max_p99?;
        let max_ms = max.as_secs_f64() * 1000.0;
        match report.latency_ms {
            None => Some(format!(
                "SLO failed: no response to measure p99 against --max-p99 {}",
                humantime::format_duration(max)
            )),
            Some(latency) if latency.p99 > max_ms => Some(format!(
                "SLO failed: p99 latency {:.3} ms > --max-p99 {}",
                latency.p99,
                humantime::format_duration(max)
            )),
            Some(_) => None,
        }
    }

    fn check_success(&self, report: &Report) -> Option<String> {
        let min = self.min_success_pct?;
        let got = report.requests.success_pct;
        (got < min).then(|| {
            format!(
                "SLO failed: success rate {got:.3}% < --min-success {min}% ({} of {} requests succeeded)",
                report.requests.succeeded, report.requests.completed
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::loadtest::report::{Merged, Percentiles, tests::setup};

    fn report(p99_ms: Option<f64>, success_pct: f64) -> Report {
        let now = Instant::now();
        let mut r = Report::build(setup(), &Merged::new(&[]), now, 0, now);
        r.latency_ms = p99_ms.map(|p99| Percentiles {
            count: 1000,
            mean: p99 / 2.0,
            p50: p99 / 2.0,
            p90: p99,
            p99,
            p99_9: p99,
            max: p99,
        });
        r.requests.success_pct = success_pct;
        r.requests.completed = 1000;
        r.requests.succeeded = (success_pct * 10.0) as u64;
        r
    }

    fn slo(max_p99_ms: Option<u64>, min_success_pct: Option<f64>) -> Slo {
        Slo {
            max_p99: max_p99_ms.map(Duration::from_millis),
            min_success_pct,
        }
    }

    #[test]
    fn no_objectives_always_pass() {
        let slo = Slo::default();
        assert!(slo.is_empty());
        assert!(slo.check(&report(None, 0.0)).passed);
    }

    #[test]
    fn p99_at_the_limit_passes_and_above_fails() {
        let slo = slo(Some(50), None);
        assert!(slo.check(&report(Some(50.0), 100.0)).passed);
        let v = slo.check(&report(Some(63.25), 100.0));
        assert!(!v.passed);
        assert_eq!(
            v.reason.as_deref(),
            Some("SLO failed: p99 latency 63.250 ms > --max-p99 50ms")
        );
    }

    #[test]
    fn p99_without_responses_fails() {
        let v = slo(Some(50), None).check(&report(None, 0.0));
        assert!(!v.passed);
        assert!(v.reason.unwrap().contains("no response"));
    }

    #[test]
    fn success_rate_below_minimum_fails() {
        let slo = slo(None, Some(99.9));
        assert!(slo.check(&report(Some(1.0), 99.9)).passed);
        let v = slo.check(&report(Some(1.0), 99.5));
        assert_eq!(
            v.reason.as_deref(),
            Some(
                "SLO failed: success rate 99.500% < --min-success 99.9% (995 of 1000 requests succeeded)"
            )
        );
    }

    #[test]
    fn latency_is_checked_before_success() {
        let v = slo(Some(10), Some(99.0)).check(&report(Some(20.0), 50.0));
        assert!(v.reason.unwrap().contains("p99"));
    }
}
