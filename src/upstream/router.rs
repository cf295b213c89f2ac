//! Routing: which providers, in which order, may serve a model name.
//!
//! Claude model ids map to the small / middle / big tiers through the
//! [`Catalog`] (its table, else `haiku` / `sonnet` / `opus` in the name);
//! `provider/model` picks exactly; an upstream model id configured in some
//! tier is routed to the providers that list it.
//! Candidates come in `priority`, `random` or `weighted` order, and providers
//! whose breaker is open are skipped. The provider set is swapped whole on
//! reload; a provider whose spec did not change keeps its breaker and keys.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng as _;
use rand::seq::SliceRandom as _;

use super::breaker::Breaker;
use super::catalog::Catalog;
use super::keys::KeyRing;
use super::provider::ProviderSpec;
use crate::cache::L1;
use crate::config::{RoutingSettings, Strategy};

/// Where a provider's definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Store,
    File,
}

/// One provider at run time: its spec plus live state.
#[derive(Debug)]
pub struct Upstream {
    pub spec: ProviderSpec,
    pub source: Source,
    pub keys: KeyRing,
    pub breaker: Breaker,
    /// The request paths' URLs, parsed once: parsing (with IDNA) on every
    /// request showed up in profiles.
    urls: Vec<(&'static str, reqwest::Url)>,
    /// The thinking-signature family of `spec.base_url` (its origin).
    pub family: Arc<str>,
}

/// The paths abridge calls on providers.
pub const PATHS: [&str; 3] = ["/chat/completions", "/messages", "/messages/count_tokens"];

impl Upstream {
    pub fn new(spec: ProviderSpec, source: Source, settings: &RoutingSettings) -> Self {
        let urls = PATHS
            .iter()
            .filter_map(|path| Some((*path, reqwest::Url::parse(&spec.endpoint(path)).ok()?)))
            .collect();
        Self {
            family: super::signatures::family(&spec.base_url),
            keys: KeyRing::new(&spec.api_keys),
            breaker: Breaker::new(settings.failure_threshold, settings.recovery_timeout),
            spec,
            source,
            urls,
        }
    }

    /// The URL for one of [`PATHS`].
    pub fn url(&self, path: &str) -> Result<reqwest::Url, String> {
        match self.urls.iter().find(|(p, _)| *p == path) {
            Some((_, url)) => Ok(url.clone()),
            None => reqwest::Url::parse(&self.spec.endpoint(path))
                .map_err(|e| format!("provider {}: invalid URL: {e}", self.spec.name)),
        }
    }
}

/// One provider and the upstream model to ask it for.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub upstream: Arc<Upstream>,
    pub model: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("model `{0}` is not served by this gateway")]
    UnknownModel(String),
    #[error("no provider for model `{0}` is available right now (all circuit breakers are open)")]
    AllOpen(String),
}

#[derive(Debug)]
struct Inner {
    providers: RwLock<Arc<Vec<Arc<Upstream>>>>,
    settings: RoutingSettings,
    /// Which tier each Claude model id routes to.
    catalog: Catalog,
    /// Conversation hash → provider name, when stickiness is on.
    sticky: Option<L1<u64, Arc<str>>>,
}

/// Cheap-to-clone handle on the routing table.
#[derive(Debug, Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl Router {
    pub fn new(settings: &RoutingSettings, catalog: Catalog) -> Self {
        Self {
            inner: Arc::new(Inner {
                providers: RwLock::new(Arc::new(Vec::new())),
                settings: settings.clone(),
                catalog,
                sticky: settings
                    .sticky
                    .then(|| L1::new(100_000, Duration::from_secs(3600))),
            }),
        }
    }

    pub fn snapshot(&self) -> Arc<Vec<Arc<Upstream>>> {
        self.inner
            .providers
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the provider set.
    pub fn replace(&self, specs: Vec<(ProviderSpec, Source)>) {
        let old = self.snapshot();
        let s = &self.inner.settings;
        let next: Vec<Arc<Upstream>> = specs
            .into_iter()
            .map(|(spec, source)| {
                let same = old.iter().find(|u| {
                    u.spec.name == spec.name
                        && serde_json::to_value(&u.spec).ok() == serde_json::to_value(&spec).ok()
                        && u.spec.api_keys == spec.api_keys
                });
                match same {
                    Some(existing) => existing.clone(),
                    None => Arc::new(Upstream::new(spec, source, s)),
                }
            })
            .collect();
        let mut guard = self
            .inner
            .providers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(next);
    }

    /// Ordered candidates for a requested model name.
    pub fn candidates(
        &self,
        requested: &str,
        conversation: Option<u64>,
    ) -> Result<Vec<Candidate>, RouteError> {
        let providers = self.snapshot();
        let enabled = providers.iter().filter(|u| u.spec.enabled);
        let mut found: Vec<Candidate> = Vec::new();
        if let Some((name, model)) = requested.split_once('/')
            && let Some(u) = enabled.clone().find(|u| u.spec.name == name)
        {
            found.push(Candidate {
                upstream: u.clone(),
                model: model.to_string(),
            });
        } else if let Some(tier) = self.inner.catalog.tier_of(requested) {
            for u in enabled {
                found.extend(u.spec.models.tier(tier).iter().map(|m| Candidate {
                    upstream: u.clone(),
                    model: m.clone(),
                }));
            }
        } else {
            for u in enabled {
                if u.spec.models.all().any(|m| m == requested) {
                    found.push(Candidate {
                        upstream: u.clone(),
                        model: requested.to_string(),
                    });
                }
            }
        }
        if found.is_empty() {
            return Err(RouteError::UnknownModel(requested.to_string()));
        }
        self.order(&mut found);
        if let (Some(sticky), Some(conv)) = (&self.inner.sticky, conversation)
            && let Some(name) = sticky.get(&conv)
        {
            found.sort_by_key(|c| c.upstream.spec.name.as_str() != &*name);
        }
        found.retain(|c| c.upstream.breaker.is_available());
        if found.is_empty() {
            return Err(RouteError::AllOpen(requested.to_string()));
        }
        Ok(found)
    }

    fn order(&self, found: &mut [Candidate]) {
        match self.inner.settings.strategy {
            Strategy::Priority => found.sort_by_key(|c| c.upstream.spec.priority),
            Strategy::Random => found.shuffle(&mut rand::thread_rng()),
            Strategy::Weighted => {
                // Weighted order without replacement: key = u^(1/w), largest first.
                let mut rng = rand::thread_rng();
                let mut keyed: Vec<(f64, Candidate)> = found
                    .iter()
                    .map(|c| {
                        (
                            rng.r#gen::<f64>()
                                .powf(1.0 / c.upstream.spec.weight.max(1) as f64),
                            c.clone(),
                        )
                    })
                    .collect();
                keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
                for (slot, (_, c)) in found.iter_mut().zip(keyed) {
                    *slot = c;
                }
            }
        }
    }

    /// Records which provider served a conversation (sticky routing).
    pub fn remember(&self, conversation: Option<u64>, provider: &str) {
        if let (Some(sticky), Some(conv)) = (&self.inner.sticky, conversation) {
            sticky.insert(conv, Arc::from(provider));
        }
    }

    /// The model table the router maps Claude ids with.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Stable hash of a conversation's opening, for stickiness.
    pub fn conversation_key(first_user_text: &str) -> u64 {
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut h =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .build_hasher();
        h.write(first_user_text.as_bytes());
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, priority: i64) -> ProviderSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "base_url": "http://127.0.0.1:1/v1", "priority": priority,
            "api_keys": ["k"], "models": {"big": [format!("{name}-big")], "middle": [format!("{name}-mid")], "small": []}
        }))
        .unwrap()
    }

    fn catalog() -> Catalog {
        Catalog::new(&Default::default()).unwrap()
    }

    fn router() -> Router {
        let r = Router::new(&RoutingSettings::default(), catalog());
        r.replace(vec![
            (spec("b", 2), Source::File),
            (spec("a", 1), Source::Store),
        ]);
        r
    }

    #[test]
    fn families_map_to_tiers_in_priority_order() {
        let r = router();
        let c = r.candidates("claude-sonnet-4-5-20250929", None).unwrap();
        let got: Vec<_> = c
            .iter()
            .map(|c| (c.upstream.spec.name.as_str(), c.model.as_str()))
            .collect();
        assert_eq!(got, [("a", "a-mid"), ("b", "b-mid")]);
        assert_eq!(r.candidates("opus", None).unwrap()[0].model, "a-big");
        assert_eq!(
            r.candidates("claude-3-5-haiku-latest", None).unwrap_err(),
            RouteError::UnknownModel("claude-3-5-haiku-latest".into())
        );
    }

    #[test]
    fn exact_and_upstream_ids() {
        let r = router();
        let c = r.candidates("b/anything", None).unwrap();
        assert_eq!((c.len(), c[0].model.as_str()), (1, "anything"));
        let c = r.candidates("b-big", None).unwrap();
        assert_eq!(c[0].upstream.spec.name, "b");
        assert!(matches!(
            r.candidates("gpt-9", None),
            Err(RouteError::UnknownModel(_))
        ));
    }

    #[test]
    fn open_breakers_are_skipped() {
        let r = router();
        let a = r.candidates("opus", None).unwrap()[0].upstream.clone();
        for _ in 0..5 {
            a.breaker.record_failure();
        }
        let c = r.candidates("opus", None).unwrap();
        assert_eq!(c[0].upstream.spec.name, "b");
        let b = c[0].upstream.clone();
        for _ in 0..5 {
            b.breaker.record_failure();
        }
        assert!(matches!(
            r.candidates("opus", None),
            Err(RouteError::AllOpen(_))
        ));
    }

    #[test]
    fn sticky_conversations_stay_with_their_provider() {
        let r = Router::new(
            &RoutingSettings {
                sticky: true,
                ..RoutingSettings::default()
            },
            catalog(),
        );
        r.replace(vec![
            (spec("b", 2), Source::File),
            (spec("a", 1), Source::Store),
        ]);
        let conversation = Some(Router::conversation_key("first message"));
        assert_eq!(
            r.candidates("opus", conversation).unwrap()[0]
                .upstream
                .spec
                .name,
            "a"
        );
        r.remember(conversation, "b");
        assert_eq!(
            r.candidates("opus", conversation).unwrap()[0]
                .upstream
                .spec
                .name,
            "b"
        );
        assert_eq!(
            r.candidates("opus", None).unwrap()[0].upstream.spec.name,
            "a",
            "others keep priority order"
        );
    }

    #[test]
    fn reload_keeps_state_of_unchanged_providers() {
        let r = router();
        let a = r.candidates("opus", None).unwrap()[0].upstream.clone();
        r.replace(vec![(spec("a", 1), Source::Store)]);
        assert!(Arc::ptr_eq(
            &a,
            &r.candidates("opus", None).unwrap()[0].upstream
        ));
        r.replace(vec![(spec("a", 3), Source::Store)]);
        assert!(!Arc::ptr_eq(
            &a,
            &r.candidates("opus", None).unwrap()[0].upstream
        ));
    }
}
