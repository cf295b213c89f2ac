//! Which provider family issued a thinking signature, so signed thinking is
//! only ever sent back to the family that can verify it. A family is an
//! Anthropic-native endpoint's origin (scheme, host, port). Signatures seen
//! in passthrough answers are recorded; a signature never seen (issued
//! before a restart, or by the client's own Anthropic account) is trusted.

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::L1;

/// How long a signature's issuer is remembered.
const REMEMBER: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug)]
pub struct SignatureBook {
    issued: L1<u64, Arc<str>>,
}

impl Default for SignatureBook {
    fn default() -> Self {
        Self {
            issued: L1::new(200_000, REMEMBER),
        }
    }
}

fn key(signature: &str) -> u64 {
    // A fixed-key hasher: the same signature must always map to the same key.
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(signature.as_bytes());
    h.finish()
}

/// The family of a base URL: its origin.
pub fn family(base_url: &str) -> Arc<str> {
    let after_scheme = base_url.find("://").map_or(0, |i| i + 3);
    let end = base_url[after_scheme..]
        .find('/')
        .map_or(base_url.len(), |i| after_scheme + i);
    Arc::from(&base_url[..end])
}

impl SignatureBook {
    pub fn record(&self, signature: &str, family: &Arc<str>) {
        self.issued.insert(key(signature), family.clone());
    }

    /// Whether `family` can verify `signature`.
    pub fn accepts(&self, signature: &str, family: &str) -> bool {
        self.issued
            .get(&key(signature))
            .is_none_or(|issuer| &*issuer == family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_origins() {
        assert_eq!(
            &*family("https://api.anthropic.com"),
            "https://api.anthropic.com"
        );
        assert_eq!(
            &*family("http://127.0.0.1:9100/v1"),
            "http://127.0.0.1:9100"
        );
    }

    #[test]
    fn only_the_issuer_accepts_a_known_signature() {
        let book = SignatureBook::default();
        let a = family("https://a.example/v1");
        book.record("sig-1", &a);
        assert!(book.accepts("sig-1", "https://a.example"));
        assert!(!book.accepts("sig-1", "https://b.example"));
        assert!(book.accepts("never-seen", "https://b.example"));
    }
}
