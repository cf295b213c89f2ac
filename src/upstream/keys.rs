//! A provider's API keys, used in turn. A key refused with 401/403 is
//! disabled until the providers are reloaded; a key answered with 429 cools
//! down for its `Retry-After`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Secret;

#[derive(Debug)]
struct Slot {
    secret: Secret,
    disabled: AtomicBool,
    cooling_until: Mutex<Option<Instant>>,
}

#[derive(Debug)]
pub struct KeyRing {
    slots: Vec<Slot>,
    next: AtomicUsize,
}

/// Key states for `providers list` and the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KeyCounts {
    pub total: usize,
    pub disabled: usize,
    pub cooling: usize,
}

impl KeyRing {
    pub fn new(keys: &[Secret]) -> Self {
        Self {
            slots: keys
                .iter()
                .map(|k| Slot {
                    secret: k.clone(),
                    disabled: AtomicBool::new(false),
                    cooling_until: Mutex::new(None),
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn usable(&self, i: usize, now: Instant) -> bool {
        let slot = &self.slots[i];
        !slot.disabled.load(Ordering::Relaxed)
            && slot
                .cooling_until
                .lock()
                .map(|c| c.is_none_or(|until| now >= until))
                .unwrap_or(true)
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
            .find(|&i| !tried.contains(&i) && self.usable(i, now))
            .map(|i| (i, &self.slots[i].secret))
    }

    pub fn disable(&self, i: usize) {
        if let Some(slot) = self.slots.get(i) {
            slot.disabled.store(true, Ordering::Relaxed);
        }
    }

    pub fn cool_down(&self, i: usize, for_: Duration) {
        if let Some(slot) = self.slots.get(i)
            && let Ok(mut c) = slot.cooling_until.lock()
        {
            *c = Some(Instant::now() + for_);
        }
    }

    pub fn counts(&self) -> KeyCounts {
        let now = Instant::now();
        let disabled = self
            .slots
            .iter()
            .filter(|s| s.disabled.load(Ordering::Relaxed))
            .count();
        let unusable = (0..self.slots.len())
            .filter(|&i| !self.usable(i, now))
            .count();
        KeyCounts {
            total: self.slots.len(),
            disabled,
            cooling: unusable - disabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(&[Secret::new("a"), Secret::new("b"), Secret::new("c")])
    }

    #[tokio::test(start_paused = true)]
    async fn rotates_and_skips_disabled_and_cooling_keys() {
        let r = ring();
        let first: Vec<usize> = (0..3).map(|_| r.pick(&[]).unwrap().0).collect();
        assert_eq!(first, [0, 1, 2]);
        r.disable(1);
        r.cool_down(2, Duration::from_secs(5));
        for _ in 0..4 {
            assert_eq!(r.pick(&[]).unwrap().0, 0);
        }
        assert!(r.pick(&[0]).is_none());
        assert_eq!(
            r.counts(),
            KeyCounts {
                total: 3,
                disabled: 1,
                cooling: 1
            }
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(r.pick(&[0]).unwrap().0, 2);
    }
}
