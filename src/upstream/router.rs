//! Routing: which providers, in which order, may serve a model name.
//!
//! Claude model ids map to the small / middle / big tiers through the
//! [`Catalog`] (its table, else `haiku` / `sonnet` / `opus` in the name);
//! `provider/model` picks one provider, for
//! a model it lists (any model when it says `allow_any_model = true`); an
//! upstream model id configured in some tier is routed to the providers that
//! list it. Candidates come in `priority`, `random` or `weighted` order.
//! Breakers and keys do not filter candidates here: dispatch skips the
//! unusable ones and, when none is usable, still sends to the best of them
//! (panic routing).
//!
//! The provider set and the routing settings are swapped whole on reload
//! (one lock, read once per request); a provider whose spec, source and
//! routing settings did not change keeps its breaker and keys.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng as _;
use rand::seq::SliceRandom as _;

use super::breaker::Breaker;
use super::catalog::Catalog;
use super::keys::{KeyRing, Quarantine};
use super::provider::ProviderSpec;
use crate::cache::L1;
use crate::config::{RoutingSettings, Strategy};

/// The most of a client's model string shown in logs and error messages.
pub const MAX_SHOWN_MODEL_BYTES: usize = 256;

/// `model` cut to [`MAX_SHOWN_MODEL_BYTES`] (at a character boundary), so a
/// client cannot make our logs and errors arbitrarily large.
pub fn shown_model(model: &str) -> &str {
    if model.len() <= MAX_SHOWN_MODEL_BYTES {
        return model;
    }
    let mut end = MAX_SHOWN_MODEL_BYTES;
    while !model.is_char_boundary(end) {
        end -= 1;
    }
    &model[..end]
}

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
            keys: KeyRing::new(&spec.api_keys, Quarantine::from_settings(settings)),
            breaker: Breaker::new(
                settings.failure_threshold,
                settings.recovery_timeout,
                settings.breaker_enabled,
            ),
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
    /// The model named (cut to [`MAX_SHOWN_MODEL_BYTES`]).
    #[error("model `{0}` is not served by this gateway")]
    UnknownModel(String),
}

/// The providers and the routing settings in force, swapped together.
#[derive(Debug, Default)]
pub struct Table {
    upstreams: Vec<Arc<Upstream>>,
    settings: RoutingSettings,
}

impl std::ops::Deref for Table {
    type Target = [Arc<Upstream>];
    fn deref(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }
}

impl Table {
    /// The routing settings in force (after the providers file's keys).
    pub fn settings(&self) -> &RoutingSettings {
        &self.settings
    }
}

#[derive(Debug)]
struct Inner {
    table: RwLock<Arc<Table>>,
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

/// Puts candidates in the strategy's order.
fn order(strategy: Strategy, found: &mut [Candidate]) {
    match strategy {
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

impl Router {
    pub fn new(settings: &RoutingSettings, catalog: Catalog) -> Self {
        Self {
            inner: Arc::new(Inner {
                table: RwLock::new(Arc::new(Table {
                    upstreams: Vec::new(),
                    settings: settings.clone(),
                })),
                catalog,
                sticky: settings
                    .sticky
                    .then(|| L1::new(100_000, Duration::from_secs(3600))),
            }),
        }
    }

    /// The providers and settings in force.
    pub fn snapshot(&self) -> Arc<Table> {
        self.inner
            .table
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the provider set and the routing settings.
    pub fn replace(&self, specs: Vec<(ProviderSpec, Source)>, settings: RoutingSettings) {
        let old = self.snapshot();
        let keep = old.settings == settings;
        let upstreams: Vec<Arc<Upstream>> = specs
            .into_iter()
            .map(|(spec, source)| {
                let same = old
                    .iter()
                    .find(|u| keep && u.spec == spec && u.source == source);
                match same {
                    Some(existing) => existing.clone(),
                    None => Arc::new(Upstream::new(spec, source, &settings)),
                }
            })
            .collect();
        let mut guard = self.inner.table.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(Table {
            upstreams,
            settings,
        });
    }

    /// Ordered candidates for a requested model name.
    pub fn candidates(
        &self,
        requested: &str,
        conversation: Option<u64>,
    ) -> Result<Vec<Candidate>, RouteError> {
        let table = self.snapshot();
        let enabled = table.iter().filter(|u| u.spec.enabled);
        let mut found: Vec<Candidate> = Vec::new();
        if let Some((name, model)) = requested.split_once('/')
            && let Some(u) = enabled.clone().find(|u| u.spec.name == name)
        {
            if u.spec.allow_any_model || u.spec.models.all().any(|m| m == model) {
                found.push(Candidate {
                    upstream: u.clone(),
                    model: model.to_string(),
                });
            }
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
            return Err(RouteError::UnknownModel(shown_model(requested).to_string()));
        }
        order(table.settings.strategy, &mut found);
        if let (Some(sticky), Some(conv)) = (&self.inner.sticky, conversation)
            && let Some(name) = sticky.get(&conv)
        {
            found.sort_by_key(|c| c.upstream.spec.name.as_str() != &*name);
        }
        Ok(found)
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

    fn two() -> Vec<(ProviderSpec, Source)> {
        vec![(spec("b", 2), Source::File), (spec("a", 1), Source::Store)]
    }

    fn catalog() -> Catalog {
        Catalog::new(&Default::default()).unwrap()
    }

    fn router() -> Router {
        let r = Router::new(&RoutingSettings::default(), catalog());
        r.replace(two(), RoutingSettings::default());
        r
    }

    fn names(c: &[Candidate]) -> Vec<(&str, &str)> {
        c.iter()
            .map(|c| (c.upstream.spec.name.as_str(), c.model.as_str()))
            .collect()
    }

    #[test]
    fn families_map_to_tiers_in_priority_order() {
        let r = router();
        let c = r.candidates("claude-sonnet-4-5-20250929", None).unwrap();
        assert_eq!(names(&c), [("a", "a-mid"), ("b", "b-mid")]);
        assert_eq!(r.candidates("opus", None).unwrap()[0].model, "a-big");
        assert_eq!(
            r.candidates("claude-3-5-haiku-latest", None).unwrap_err(),
            RouteError::UnknownModel("claude-3-5-haiku-latest".into())
        );
    }

    #[test]
    fn exact_names_reach_only_listed_models_unless_allowed() {
        let r = router();
        let c = r.candidates("b/b-mid", None).unwrap();
        assert_eq!(names(&c), [("b", "b-mid")]);
        assert_eq!(
            r.candidates("b/anything", None).unwrap_err(),
            RouteError::UnknownModel("b/anything".into())
        );
        let c = r.candidates("b-big", None).unwrap();
        assert_eq!(c[0].upstream.spec.name, "b");
        assert!(matches!(
            r.candidates("gpt-9", None),
            Err(RouteError::UnknownModel(_))
        ));
        let mut open = spec("b", 2);
        open.allow_any_model = true;
        r.replace(vec![(open, Source::File)], RoutingSettings::default());
        let c = r.candidates("b/anything", None).unwrap();
        assert_eq!(names(&c), [("b", "anything")]);
    }

    #[test]
    fn unknown_models_are_named_but_capped() {
        let r = router();
        let long = format!("{}é{}", "x".repeat(255), "y".repeat(10_000));
        let RouteError::UnknownModel(shown) = r.candidates(&long, None).unwrap_err();
        assert_eq!(shown, "x".repeat(255), "cut at a character boundary");
        assert_eq!(shown_model("short"), "short");
    }

    #[test]
    fn open_breakers_do_not_remove_candidates() {
        let r = router();
        let a = r.candidates("opus", None).unwrap()[0].upstream.clone();
        for _ in 0..5 {
            a.breaker.record_failure();
        }
        let c = r.candidates("opus", None).unwrap();
        assert_eq!(
            names(&c),
            [("a", "a-big"), ("b", "b-big")],
            "dispatch decides what to skip"
        );
    }

    #[test]
    fn sticky_conversations_stay_with_their_provider() {
        let settings = RoutingSettings {
            sticky: true,
            ..RoutingSettings::default()
        };
        let r = Router::new(&settings, catalog());
        r.replace(two(), settings);
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
    fn reload_keeps_state_only_when_nothing_changed() {
        let r = router();
        let a = || r.candidates("opus", None).unwrap()[0].upstream.clone();
        let first = a();
        r.replace(
            vec![(spec("a", 1), Source::Store)],
            RoutingSettings::default(),
        );
        assert!(
            Arc::ptr_eq(&first, &a()),
            "unchanged: same breaker and keys"
        );
        // Every field counts, not only those that serialize.
        let mut changed = spec("a", 1);
        changed.first_byte_timeout = Some(Duration::from_secs(3));
        r.replace(vec![(changed, Source::Store)], RoutingSettings::default());
        let second = a();
        assert!(!Arc::ptr_eq(&first, &second));
        let mut changed = spec("a", 1);
        changed.first_byte_timeout = Some(Duration::from_secs(3));
        r.replace(
            vec![(changed.clone(), Source::File)],
            RoutingSettings::default(),
        );
        assert!(!Arc::ptr_eq(&second, &a()), "the source counts too");
        let third = a();
        let strict = RoutingSettings {
            failure_threshold: 1,
            ..RoutingSettings::default()
        };
        r.replace(vec![(changed, Source::File)], strict.clone());
        assert!(!Arc::ptr_eq(&third, &a()), "new breaker settings");
        assert_eq!(r.snapshot().settings(), &strict);
    }

    #[test]
    fn the_strategy_comes_from_the_table() {
        let r = router();
        let weighted = RoutingSettings {
            strategy: Strategy::Weighted,
            ..RoutingSettings::default()
        };
        let mut heavy = spec("b", 2);
        heavy.weight = 1_000_000;
        r.replace(
            vec![(heavy, Source::File), (spec("a", 1), Source::Store)],
            weighted,
        );
        let firsts = (0..20)
            .filter(|_| r.candidates("opus", None).unwrap()[0].upstream.spec.name == "b")
            .count();
        assert!(firsts >= 19, "weight, not priority, decides: {firsts}/20");
    }
}
