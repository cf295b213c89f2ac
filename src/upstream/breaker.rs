//! A circuit breaker per provider: `Closed` → `Open { until }` after
//! `failure_threshold` failed requests in a row (a request counts once,
//! however often dispatch retried it); after `recovery_timeout` one probe
//! request is let through (`HalfOpen`); its success closes the breaker, its
//! failure opens it again. A disabled breaker (the original's
//! `circuit_breaker.enabled = false`) never opens.
//!
//! An open breaker only says "try the others first": when no candidate of a
//! request is usable, dispatch still sends to the best one through
//! [`Breaker::force`] (panic routing), and that answer's verdict counts like
//! any other. Uses tokio's clock so tests can pause time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// What the breaker shows to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    recovery: Duration,
    enabled: bool,
}

impl Breaker {
    pub fn new(threshold: u32, recovery: Duration, enabled: bool) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            recovery,
            enabled,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A pass for one request to this provider, or `None` while the breaker
    /// is open. In half-open state only one pass (the probe) is handed out.
    pub fn try_acquire(&self) -> Option<Pass<'_>> {
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if Instant::now() >= until => true,
            State::Open { .. } | State::HalfOpen { probing: true } => return None,
            State::HalfOpen { probing: false } => true,
        };
        if probe {
            *state = State::HalfOpen { probing: true };
        }
        Some(Pass {
            breaker: self,
            probe,
            settled: false,
        })
    }

    /// Whether a request would be let through now (without taking the probe).
    pub fn is_available(&self) -> bool {
        match *self.lock() {
            State::Closed { .. } | State::HalfOpen { probing: false } => true,
            State::Open { until } => Instant::now() >= until,
            State::HalfOpen { probing: true } => false,
        }
    }

    /// A pass for a request sent although the breaker refuses (panic
    /// routing). Its verdict counts: a success closes the breaker.
    pub fn force(&self) -> Pass<'_> {
        Pass {
            breaker: self,
            probe: false,
            settled: false,
        }
    }

    /// When an open breaker lets its probe through (`None` when it is not
    /// open), to rank candidates that are all unusable.
    pub fn reopens_at(&self) -> Option<Instant> {
        match *self.lock() {
            State::Open { until } => Some(until),
            State::Closed { .. } | State::HalfOpen { .. } => None,
        }
    }

    pub fn record_success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    pub fn record_failure(&self) {
        if !self.enabled {
            return;
        }
        let mut state = self.lock();
        *state = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            State::Open { until } => State::Open { until },
            _ => State::Open {
                until: Instant::now() + self.recovery,
            },
        };
    }

    /// Hands the probe back without a verdict, so another request may probe.
    fn release(&self) {
        let mut state = self.lock();
        if let State::HalfOpen { probing: true } = *state {
            *state = State::HalfOpen { probing: false };
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// Permission for one request, from [`Breaker::try_acquire`]. A probe that
/// is dropped without a verdict (the client went away, the request could not
/// be built, the answer was a client error) is handed back, so the breaker
/// can never stay half-open with nobody probing.
#[derive(Debug)]
pub struct Pass<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Pass<'_> {
    pub fn success(&mut self) {
        self.breaker.record_success();
        self.settled = true;
    }

    pub fn failure(&mut self) {
        self.breaker.record_failure();
        self.settled = true;
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.breaker.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_and_recovers_through_one_probe() {
        let b = Breaker::new(3, Duration::from_secs(60), true);
        for _ in 0..2 {
            b.try_acquire().unwrap().failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire().is_none());

        tokio::time::advance(Duration::from_secs(61)).await;
        let mut probe = b
            .try_acquire()
            .expect("one probe after the recovery timeout");
        assert!(b.try_acquire().is_none(), "only one probe at a time");
        probe.failure();
        drop(probe);
        assert_eq!(b.state(), BreakerState::Open);

        tokio::time::advance(Duration::from_secs(61)).await;
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_is_handed_back() {
        let b = Breaker::new(1, Duration::from_secs(1), true);
        b.try_acquire().unwrap().failure();
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(b.try_acquire().expect("probe"));
        assert!(b.is_available(), "nobody is probing any more");
        assert!(b.try_acquire().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_normal_pass_never_releases_someone_elses_probe() {
        let b = Breaker::new(1, Duration::from_secs(1), true);
        let normal = b.try_acquire().unwrap();
        b.record_failure();
        tokio::time::advance(Duration::from_secs(2)).await;
        let _probe = b.try_acquire().expect("probe");
        drop(normal);
        assert!(b.try_acquire().is_none(), "the probe is still out");
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(1), true);
        b.record_failure();
        b.record_success();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_forced_pass_reports_like_any_other() {
        let b = Breaker::new(1, Duration::from_secs(60), true);
        b.try_acquire().unwrap().failure();
        assert!(b.try_acquire().is_none());
        assert_eq!(
            b.reopens_at(),
            Some(Instant::now() + Duration::from_secs(60))
        );
        b.force().success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.reopens_at(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_breaker_never_opens() {
        let b = Breaker::new(1, Duration::from_secs(60), false);
        for _ in 0..10 {
            b.try_acquire().unwrap().failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
