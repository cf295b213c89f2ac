//! Caching: `L1`, the bounded in-process layer (mini-moka) with a TTL.
//!
//! The types here record *how* to cache; callers decide *what* to cache
//! (`server::auth` caches API key lookups). A Redis layer (L2) for shared
//! state across replicas is not part of this version.

use std::hash::Hash;
use std::time::Duration;

/// A bounded, concurrent, time-limited map.
#[derive(Clone)]
pub struct L1<K, V> {
    inner: mini_moka::sync::Cache<K, V>,
}

impl<K, V> std::fmt::Debug for L1<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1").finish_non_exhaustive()
    }
}

impl<K, V> L1<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            inner: mini_moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.inner.get(key)
    }

    pub fn insert(&self, key: K, value: V) {
        self.inner.insert(key, value);
    }

    pub fn invalidate(&self, key: &K) {
        self.inner.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_invalidate() {
        let cache = L1::new(10, Duration::from_millis(50));
        cache.insert(1u32, "a");
        assert_eq!(cache.get(&1), Some("a"));
        cache.invalidate(&1);
        assert_eq!(cache.get(&1), None);
        cache.insert(2, "b");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(cache.get(&2), None);
    }
}
