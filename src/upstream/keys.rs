//! A provider's API keys, used in turn, and what their answers did to them.
//!
//! - A key answered with 429 cools down for the answer's `Retry-After` (or
//!   the backoff when there is none).
//! - A key refused for its credentials (401, or a 403 about credentials; see
//!   `retry::classify`) is quarantined only after `threshold` refusals, each
//!   in a different request, with no accepted answer in between: one request
//!   (or one prompt that trips a filter) cannot take a key out. A quarantine
//!   lasts `first`, then twice as long each time in a row, up to `max`.
//!   When it ends the key is on probation: the next request may use it; an
//!   accepted answer brings it back for good, another refusal quarantines
//!   it again at once (for longer). There is no background prober: the
//!   re-probe is the next request that would have used the key anyway.
//! - A key that is neither cooling nor quarantined is usable. When none of a
//!   request's candidates has a usable key, dispatch still sends with the
//!   key that becomes usable soonest ([`KeyRing::soonest`]).
//!
//! Uses tokio's clock so tests can pause time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{RoutingSettings, Secret};

/// When keys are quarantined and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quarantine {
    /// Refusals in different requests that quarantine a key.
    pub threshold: u32,
    /// The first quarantine's length.
    pub first: Duration,
    /// The longest quarantine.
    pub max: Duration,
}

impl Quarantine {
    pub fn from_settings(settings: &RoutingSettings) -> Self {
        Self {
            threshold: settings.key_quarantine_threshold.max(1),
            first: settings.key_quarantine,
            max: settings.key_quarantine_max,
        }
    }

    /// The length of quarantine number `n` in a row (1 = the first).
    fn length(&self, n: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << n.saturating_sub(1).min(20))
            .min(self.max)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Credential refusals since the key was last accepted.
    refusals: u32,
    /// The request that was refused last, so one request counts once.
    last_refused_request: Option<u64>,
    /// Quarantines in a row; the next one lasts twice as long.
    quarantines: u32,
    /// Set while quarantined and kept (in the past) while on probation.
    quarantined_until: Option<Instant>,
    cooling_until: Option<Instant>,
}

impl State {
    /// When the key is usable again (`now` or earlier: usable now).
    fn usable_at(&self) -> Option<Instant> {
        match (self.quarantined_until, self.cooling_until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    fn usable(&self, now: Instant) -> bool {
        self.usable_at().is_none_or(|at| at <= now)
    }
}

#[derive(Debug)]
struct Slot {
    secret: Secret,
    state: Mutex<State>,
    /// Any refusal or quarantine on record: lets the common case (an
    /// accepted answer on a healthy key) skip the lock.
    troubled: AtomicBool,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug)]
pub struct KeyRing {
    slots: Vec<Slot>,
    next: AtomicUsize,
    quarantine: Quarantine,
}

/// Key states for `/ready`, `providers list` and the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KeyCounts {
    pub total: usize,
    /// Quarantined now (not those on probation).
    pub quarantined: usize,
    /// Cooling down after a 429 (and not quarantined).
    pub cooling: usize,
}

impl KeyRing {
    pub fn new(keys: &[Secret], quarantine: Quarantine) -> Self {
        Self {
            slots: keys
                .iter()
                .map(|k| Slot {
                    secret: k.clone(),
                    state: Mutex::new(State::default()),
                    troubled: AtomicBool::new(false),
                })
                .collect(),
            next: AtomicUsize::new(0),
            quarantine,
        }
    }

    /// Whether the provider has keys at all (without, requests go out
    /// unauthenticated).
    pub fn has_keys(&self) -> bool {
        !self.slots.is_empty()
    }

    /// The next usable key not in `tried`, round-robin.
    pub fn pick(&self, tried: &[usize]) -> Option<(usize, &Secret)> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        (0..n)
            .map(|offset| (start + offset) % n)
            .find(|&i| !tried.contains(&i) && self.slots[i].lock().usable(now))
            .map(|i| (i, &self.slots[i].secret))
    }

    /// Whether a key not in `tried` is usable now (a ring without keys
    /// always is: its requests go out unauthenticated).
    pub fn has_usable(&self, tried: &[usize]) -> bool {
        let now = Instant::now();
        self.slots.is_empty()
            || (0..self.slots.len())
                .any(|i| !tried.contains(&i) && self.slots[i].lock().usable(now))
    }

    /// The key not in `tried` that is usable soonest, for a request sent
    /// although no key is usable.
    pub fn soonest(&self, tried: &[usize]) -> Option<(usize, &Secret)> {
        (0..self.slots.len())
            .filter(|i| !tried.contains(i))
            .min_by_key(|&i| self.slots[i].lock().usable_at())
            .map(|i| (i, &self.slots[i].secret))
    }

    /// When some key is usable (`None`: one is now, or there are no keys).
    pub fn usable_at(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut soonest: Option<Instant> = None;
        for slot in &self.slots {
            match slot.lock().usable_at() {
                None => return None,
                Some(at) if at <= now => return None,
                Some(at) => soonest = Some(soonest.map_or(at, |s| s.min(at))),
            }
        }
        soonest
    }

    /// The provider accepted key `i`: it is healthy again.
    pub fn accepted(&self, i: usize) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        if !slot.troubled.load(Ordering::Relaxed) {
            return;
        }
        let mut state = slot.lock();
        state.refusals = 0;
        state.last_refused_request = None;
        state.quarantines = 0;
        state.quarantined_until = None;
        slot.troubled.store(false, Ordering::Relaxed);
    }

    /// The provider refused key `i`'s credentials in request `request`.
    /// Returns how long the key is now quarantined for, if it just was.
    pub fn refused(&self, i: usize, request: u64) -> Option<Duration> {
        let slot = self.slots.get(i)?;
        let now = Instant::now();
        let mut state = slot.lock();
        slot.troubled.store(true, Ordering::Relaxed);
        match state.quarantined_until {
            // Already quarantined again by a concurrent request.
            Some(until) if until > now => return None,
            // On probation: refused again, so back into quarantine at once.
            Some(_) => {}
            None => {
                if state.last_refused_request == Some(request) {
                    return None;
                }
                state.last_refused_request = Some(request);
                state.refusals += 1;
                if state.refusals < self.quarantine.threshold {
                    return None;
                }
            }
        }
        state.quarantines += 1;
        let length = self.quarantine.length(state.quarantines);
        state.quarantined_until = Some(now + length);
        Some(length)
    }

    /// Key `i` was rate limited: unusable for `for_`.
    pub fn cool_down(&self, i: usize, for_: Duration) {
        if let Some(slot) = self.slots.get(i) {
            slot.lock().cooling_until = Some(Instant::now() + for_);
        }
    }

    pub fn counts(&self) -> KeyCounts {
        let now = Instant::now();
        let mut counts = KeyCounts {
            total: self.slots.len(),
            quarantined: 0,
            cooling: 0,
        };
        for slot in &self.slots {
            let state = slot.lock();
            if state.quarantined_until.is_some_and(|until| until > now) {
                counts.quarantined += 1;
            } else if state.cooling_until.is_some_and(|until| until > now) {
                counts.cooling += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Quarantine = Quarantine {
        threshold: 3,
        first: Duration::from_secs(10),
        max: Duration::from_secs(25),
    };

    fn ring() -> KeyRing {
        KeyRing::new(
            &[Secret::new("a"), Secret::new("b"), Secret::new("c")],
            POLICY,
        )
    }

    fn counts(total: usize, quarantined: usize, cooling: usize) -> KeyCounts {
        KeyCounts {
            total,
            quarantined,
            cooling,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rotates_and_skips_cooling_keys() {
        let r = ring();
        let first: Vec<usize> = (0..3).map(|_| r.pick(&[]).unwrap().0).collect();
        assert_eq!(first, [0, 1, 2]);
        r.cool_down(1, Duration::from_secs(5));
        r.cool_down(2, Duration::from_secs(8));
        for _ in 0..4 {
            assert_eq!(r.pick(&[]).unwrap().0, 0);
        }
        assert!(r.pick(&[0]).is_none());
        assert!(!r.has_usable(&[0]));
        assert_eq!(r.soonest(&[0]).unwrap().0, 1, "cools down first");
        assert_eq!(r.counts(), counts(3, 0, 2));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(r.pick(&[0]).unwrap().0, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_request_never_quarantines_a_key() {
        let r = ring();
        for _ in 0..10 {
            assert_eq!(r.refused(0, 7), None);
        }
        assert_eq!(r.counts(), counts(3, 0, 0));
        assert_eq!(r.refused(0, 8), None);
        assert_eq!(
            r.refused(0, 9),
            Some(Duration::from_secs(10)),
            "the third request quarantines it"
        );
        assert_eq!(r.counts(), counts(3, 1, 0));
        assert!(!(0..3).any(|_| r.pick(&[]).unwrap().0 == 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_accepted_answer_resets_the_count() {
        let r = ring();
        r.refused(0, 1);
        r.refused(0, 2);
        r.accepted(0);
        assert_eq!(r.refused(0, 3), None);
        assert_eq!(r.refused(0, 4), None);
        assert!(r.refused(0, 5).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn quarantine_doubles_up_to_the_cap_and_ends_when_accepted() {
        let r = KeyRing::new(&[Secret::new("only")], POLICY);
        for request in 1..=3 {
            r.refused(0, request);
        }
        assert_eq!(
            r.usable_at(),
            Some(Instant::now() + Duration::from_secs(10))
        );
        assert!(r.pick(&[]).is_none());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(r.pick(&[]).unwrap().0, 0, "on probation: tried again");
        assert_eq!(
            r.refused(0, 4),
            Some(Duration::from_secs(20)),
            "refused on probation: back in at once, twice as long"
        );
        assert_eq!(r.refused(0, 5), None, "already quarantined");
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(r.refused(0, 6), Some(Duration::from_secs(25)), "capped");
        tokio::time::advance(Duration::from_secs(25)).await;
        r.accepted(0);
        assert_eq!(r.counts(), counts(1, 0, 0));
        assert_eq!(r.refused(0, 7), None, "back for good: counting anew");
        assert!(r.pick(&[]).is_some());
    }
}
