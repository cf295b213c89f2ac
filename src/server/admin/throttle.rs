//! Failed-login throttling: a pure state machine, one per key family
//! (accounts by email, clients by address), driven by the caller's clock.
//!
//! After `free` failures each further failure makes the key wait before the
//! next attempt, doubling from `base` up to `max`; at `lockout_after`
//! failures the key is locked out for `lockout`. A success clears an account
//! (never an address: one attacker could otherwise reset it with an account
//! of their own). Keys forget their failures `forget_after` the last one.
//! Attempts that arrive early are refused without checking the password, so
//! the throttle costs no argon2 time. Emails are throttled whether or not
//! they exist, so the answer says nothing about which do.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub free: u32,
    pub base: Duration,
    pub max: Duration,
    pub lockout_after: u32,
    pub lockout: Duration,
    pub forget_after: Duration,
}

impl Policy {
    /// Per account: three free tries, then 1 s, 2 s, 4 s ... and 15 minutes
    /// locked after ten failures.
    pub const ACCOUNT: Policy = Policy {
        free: 3,
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
        lockout_after: 10,
        lockout: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(15 * 60),
    };

    /// Per client address: looser, since several people may share one.
    pub const ADDRESS: Policy = Policy {
        free: 10,
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
        lockout_after: 50,
        lockout: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(15 * 60),
    };
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    not_before: Instant,
    last_failure: Instant,
}

/// Entries kept before stale ones are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct Throttle {
    policy: Policy,
    entries: HashMap<String, Entry>,
}

impl Throttle {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
        }
    }

    /// `Err(wait)` when `key` must wait before its next attempt.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        match self.entries.get(key) {
            Some(entry) if entry.not_before > now => Err(entry.not_before - now),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt by `key`.
    pub fn failed(&mut self, key: &str, now: Instant) {
        let policy = self.policy;
        if self.entries.len() >= SWEEP_ABOVE {
            self.entries
                .retain(|_, e| now.duration_since(e.last_failure) < policy.forget_after);
        }
        let entry = self.entries.entry(key.to_string()).or_insert(Entry {
            failures: 0,
            not_before: now,
            last_failure: now,
        });
        if now.duration_since(entry.last_failure) >= policy.forget_after {
            entry.failures = 0;
        }
        entry.failures += 1;
        entry.last_failure = now;
        entry.not_before = now + delay(&policy, entry.failures);
    }

    /// Records a successful attempt by `key`: its failures are forgotten.
    pub fn succeeded(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// The wait imposed after the `failures`-th failure.
fn delay(policy: &Policy, failures: u32) -> Duration {
    if failures >= policy.lockout_after {
        policy.lockout
    } else if failures <= policy.free {
        Duration::ZERO
    } else {
        let doublings = (failures - policy.free - 1).min(16);
        (policy.base * 2u32.pow(doublings)).min(policy.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_slow_down_exponentially_then_lock_out() {
        let mut t = Throttle::new(Policy::ACCOUNT);
        let key = "acct:a@x.io";
        for _ in 0..3 {
            assert_eq!(t.check(key, Instant::now()), Ok(()));
            t.failed(key, Instant::now());
        }
        assert_eq!(t.check(key, Instant::now()), Ok(()), "three free failures");
        // Failures 4..9 wait 1, 2, 4, 8, 16, 32 s.
        for wait in [1, 2, 4, 8, 16, 32] {
            t.failed(key, Instant::now());
            assert_eq!(t.check(key, Instant::now()), Err(Duration::from_secs(wait)));
            tokio::time::advance(Duration::from_secs(wait) - Duration::from_millis(1)).await;
            assert!(t.check(key, Instant::now()).is_err(), "still waiting");
            tokio::time::advance(Duration::from_millis(1)).await;
            assert_eq!(t.check(key, Instant::now()), Ok(()));
        }
        t.failed(key, Instant::now());
        assert_eq!(
            t.check(key, Instant::now()),
            Err(Duration::from_secs(15 * 60)),
            "the tenth failure locks the account"
        );
        assert_eq!(t.check("acct:other@x.io", Instant::now()), Ok(()));
        tokio::time::advance(Duration::from_secs(15 * 60)).await;
        assert_eq!(t.check(key, Instant::now()), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn success_clears_and_time_forgets() {
        let mut t = Throttle::new(Policy::ACCOUNT);
        for _ in 0..4 {
            t.failed("k", Instant::now());
        }
        assert!(t.check("k", Instant::now()).is_err());
        t.succeeded("k");
        assert_eq!(t.check("k", Instant::now()), Ok(()));

        for _ in 0..3 {
            t.failed("k", Instant::now());
        }
        tokio::time::advance(Duration::from_secs(15 * 60)).await;
        t.failed("k", Instant::now());
        assert_eq!(
            t.check("k", Instant::now()),
            Ok(()),
            "old failures forgotten: this is the first again"
        );
    }

    #[test]
    fn delays_are_capped() {
        let policy = Policy {
            lockout_after: 100,
            ..Policy::ACCOUNT
        };
        assert_eq!(delay(&policy, 3), Duration::ZERO);
        assert_eq!(delay(&policy, 4), Duration::from_secs(1));
        assert_eq!(delay(&policy, 20), Duration::from_secs(60));
        assert_eq!(delay(&policy, 99), Duration::from_secs(60));
        assert_eq!(delay(&Policy::ADDRESS, 50), Duration::from_secs(900));
    }
}
