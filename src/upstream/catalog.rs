//! The catalog of client-facing Claude model ids: which tier each one is
//! routed to, and what `/v1/models` says about it (display name, release
//! date). The built-in table holds Anthropic's released ids (snapshots and
//! their aliases); `[[catalog.models]]` in `abridge.toml` adds newer ones or
//! overrides a built-in entry. Any other id that names a family (`opus`,
//! `sonnet`, `haiku`) still routes to that family's tier, it is just not
//! listed.
//!
//! Also here, as pure functions: which ids the gateway lists for a provider
//! set ([`Catalog::list`]) and Anthropic's list pagination ([`page`]). No
//! I/O, and it never picks providers (that is `router`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::provider::Tier;
use super::router::Upstream;
use crate::config::{CatalogSettings, ConfigError, release_date};

/// One built-in entry: id, display name, release date, tier, aliases.
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    Tier,
    &'static [&'static str],
);

/// Anthropic's Claude model ids with their public release dates, newest
/// first. Ids from before Claude 3 are left out: no client asks for them.
const BUILTIN: &[Builtin] = &[
    (
        "claude-opus-5",
        "Claude Opus 5",
        "2026-07-24",
        Tier::Big,
        &[],
    ),
    (
        "claude-sonnet-5",
        "Claude Sonnet 5",
        "2026-06-30",
        Tier::Middle,
        &[],
    ),
    (
        "claude-opus-4-7",
        "Claude Opus 4.7",
        "2026-04-16",
        Tier::Big,
        &[],
    ),
    (
        "claude-sonnet-4-6",
        "Claude Sonnet 4.6",
        "2026-02-17",
        Tier::Middle,
        &[],
    ),
    (
        "claude-opus-4-6",
        "Claude Opus 4.6",
        "2026-02-05",
        Tier::Big,
        &[],
    ),
    (
        "claude-opus-4-5-20251101",
        "Claude Opus 4.5",
        "2025-11-24",
        Tier::Big,
        &["claude-opus-4-5"],
    ),
    (
        "claude-haiku-4-5-20251001",
        "Claude Haiku 4.5",
        "2025-10-15",
        Tier::Small,
        &["claude-haiku-4-5"],
    ),
    (
        "claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5",
        "2025-09-29",
        Tier::Middle,
        &["claude-sonnet-4-5"],
    ),
    (
        "claude-opus-4-1-20250805",
        "Claude Opus 4.1",
        "2025-08-05",
        Tier::Big,
        &["claude-opus-4-1"],
    ),
    (
        "claude-opus-4-20250514",
        "Claude Opus 4",
        "2025-05-22",
        Tier::Big,
        &["claude-opus-4-0"],
    ),
    (
        "claude-sonnet-4-20250514",
        "Claude Sonnet 4",
        "2025-05-22",
        Tier::Middle,
        &["claude-sonnet-4-0"],
    ),
    (
        "claude-3-7-sonnet-20250219",
        "Claude Sonnet 3.7",
        "2025-02-24",
        Tier::Middle,
        &["claude-3-7-sonnet-latest"],
    ),
    (
        "claude-3-5-haiku-20241022",
        "Claude Haiku 3.5",
        "2024-10-22",
        Tier::Small,
        &["claude-3-5-haiku-latest"],
    ),
    (
        "claude-3-5-sonnet-20241022",
        "Claude Sonnet 3.5 (New)",
        "2024-10-22",
        Tier::Middle,
        &["claude-3-5-sonnet-latest"],
    ),
    (
        "claude-3-5-sonnet-20240620",
        "Claude Sonnet 3.5 (Old)",
        "2024-06-20",
        Tier::Middle,
        &[],
    ),
    (
        "claude-3-haiku-20240307",
        "Claude Haiku 3",
        "2024-03-13",
        Tier::Small,
        &[],
    ),
    (
        "claude-3-opus-20240229",
        "Claude Opus 3",
        "2024-03-04",
        Tier::Big,
        &["claude-3-opus-latest"],
    ),
];

/// The tier a model name's family word maps to, if it names one.
pub fn family_tier(model: &str) -> Option<Tier> {
    let lower = model.to_ascii_lowercase();
    if lower.contains("haiku") {
        Some(Tier::Small)
    } else if lower.contains("sonnet") {
        Some(Tier::Middle)
    } else if lower.contains("opus") {
        Some(Tier::Big)
    } else {
        None
    }
}

#[derive(Debug)]
struct Entry {
    id: String,
    display_name: String,
    created_at: SystemTime,
    tier: Tier,
}

#[derive(Debug)]
struct Inner {
    /// Newest first.
    entries: Vec<Entry>,
    /// Ids and aliases → index in `entries`.
    by_name: HashMap<String, usize>,
}

/// Cheap-to-clone handle on the model table.
#[derive(Debug, Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

/// One object of Anthropic's Models API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub display_name: String,
    /// RFC 3339; the Unix epoch when the release date is unknown, as
    /// Anthropic's API reference allows.
    #[serde(with = "release_date")]
    pub created_at: SystemTime,
}

impl Catalog {
    /// The built-in table plus the operator's entries (an entry with a
    /// built-in id replaces it). Errors name the entry.
    pub fn new(settings: &CatalogSettings) -> Result<Self, ConfigError> {
        Self::build(settings).map_err(|e| ConfigError(format!("catalog.models: {e}")))
    }

    fn build(settings: &CatalogSettings) -> Result<Self, String> {
        let mut entries: Vec<Entry> = Vec::with_capacity(BUILTIN.len() + settings.models.len());
        let mut aliases: Vec<(&str, &str)> = Vec::new();
        for (id, name, date, tier, alias) in BUILTIN {
            entries.push(Entry {
                id: (*id).to_string(),
                display_name: (*name).to_string(),
                created_at: release_date::parse(date)?,
                tier: *tier,
            });
            aliases.extend(alias.iter().map(|a| (*a, *id)));
        }
        let mut seen = std::collections::HashSet::new();
        for extra in &settings.models {
            let id = extra.id.trim();
            if id.is_empty() || id.contains('/') {
                return Err(format!(
                    "`{}`: an id must be non-empty and contain no `/`",
                    extra.id
                ));
            }
            if !seen.insert(id) {
                return Err(format!("`{id}` is listed twice"));
            }
            let tier = extra.tier.or_else(|| family_tier(id)).ok_or_else(|| {
                format!("`{id}` names no family (opus, sonnet, haiku): set tier = \"big\", \"middle\" or \"small\"")
            })?;
            let entry = Entry {
                id: id.to_string(),
                display_name: extra.display_name.clone().unwrap_or_else(|| id.to_string()),
                created_at: extra.created_at,
                tier,
            };
            match entries.iter_mut().find(|e| e.id == id) {
                Some(builtin) => *builtin = entry,
                None => entries.push(entry),
            }
        }
        entries.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        let mut by_name: HashMap<String, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        for (alias, id) in aliases {
            if let Some(&i) = by_name.get(id) {
                by_name.entry(alias.to_string()).or_insert(i);
            }
        }
        Ok(Self {
            inner: Arc::new(Inner { entries, by_name }),
        })
    }

    /// The tier a requested model is routed to: the table's entry for an id
    /// or alias, else the family the name contains.
    pub fn tier_of(&self, model: &str) -> Option<Tier> {
        match self.inner.by_name.get(model) {
            Some(&i) => Some(self.inner.entries[i].tier),
            None => family_tier(model),
        }
    }

    /// Every id a client can list, newest first (ties by id): the table's
    /// ids whose tier some enabled provider serves, then every enabled
    /// `provider/model` (release date unknown).
    pub fn list(&self, providers: &[Arc<Upstream>]) -> Vec<ModelInfo> {
        let enabled = || providers.iter().filter(|u| u.spec.enabled);
        let served = |tier: Tier| enabled().any(|u| !u.spec.models.tier(tier).is_empty());
        let mut out: Vec<ModelInfo> = self
            .inner
            .entries
            .iter()
            .filter(|e| served(e.tier))
            .map(|e| ModelInfo {
                kind: "model",
                id: e.id.clone(),
                display_name: e.display_name.clone(),
                created_at: e.created_at,
            })
            .collect();
        let mut routed: Vec<String> = enabled()
            .flat_map(|u| u.spec.models.all().map(|m| format!("{}/{m}", u.spec.name)))
            .collect();
        routed.sort();
        routed.dedup();
        out.extend(routed.into_iter().map(|id| ModelInfo {
            kind: "model",
            display_name: id.clone(),
            id,
            created_at: SystemTime::UNIX_EPOCH,
        }));
        out
    }

    /// The listed object for an id or one of the table's aliases.
    pub fn find<'a>(&self, listed: &'a [ModelInfo], id: &str) -> Option<&'a ModelInfo> {
        let canonical = match self.inner.by_name.get(id) {
            Some(&i) => self.inner.entries[i].id.as_str(),
            None => id,
        };
        listed.iter().find(|m| m.id == canonical)
    }
}

/// Anthropic's list query: `before_id`, `after_id`, `limit`, as sent.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct PageQuery {
    pub before_id: Option<String>,
    pub after_id: Option<String>,
    pub limit: Option<String>,
}

/// One page of a list.
#[derive(Debug, PartialEq, Eq)]
pub struct Page<'a> {
    pub data: &'a [ModelInfo],
    /// More results exist in the requested direction.
    pub has_more: bool,
}

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 1000;

/// The page `query` asks for. `after_id` pages forward from an object,
/// `before_id` backward (the page just before it). Errors name the
/// parameter.
pub fn page<'a>(all: &'a [ModelInfo], query: &PageQuery) -> Result<Page<'a>, String> {
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(format!(
                    "limit: must be an integer from 1 to {MAX_LIMIT}, got `{raw}`"
                ));
            }
        },
    };
    let position = |param: &str, id: &str| {
        all.iter()
            .position(|m| m.id == id)
            .ok_or_else(|| format!("{param}: no model with id `{id}`"))
    };
    match (query.before_id.as_deref(), query.after_id.as_deref()) {
        (Some(_), Some(_)) => Err("before_id, after_id: give at most one of them".into()),
        (Some(before), None) => {
            let end = position("before_id", before)?;
            let start = end.saturating_sub(limit);
            Ok(Page {
                data: &all[start..end],
                has_more: start > 0,
            })
        }
        (None, after) => {
            let start = match after {
                Some(after) => position("after_id", after)? + 1,
                None => 0,
            };
            let end = (start + limit).min(all.len());
            Ok(Page {
                data: &all[start..end],
                has_more: end < all.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CatalogModel;
    use crate::config::RoutingSettings;
    use crate::upstream::router::Source;

    fn catalog() -> Catalog {
        Catalog::new(&CatalogSettings::default()).unwrap()
    }

    fn upstream(name: &str, big: &[&str], small: &[&str], enabled: bool) -> Arc<Upstream> {
        let spec = serde_json::from_value(serde_json::json!({
            "name": name, "base_url": "http://127.0.0.1:1/v1", "enabled": enabled,
            "models": {"big": big, "small": small}
        }))
        .unwrap();
        Arc::new(Upstream::new(
            spec,
            Source::File,
            &RoutingSettings::default(),
        ))
    }

    fn ids(list: &[ModelInfo]) -> Vec<&str> {
        list.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn builtin_table_is_newest_first_with_unique_names() {
        let c = catalog();
        let dates: Vec<SystemTime> = BUILTIN
            .iter()
            .map(|b| release_date::parse(b.2).unwrap())
            .collect();
        assert!(dates.windows(2).all(|w| w[0] >= w[1]));
        let names: usize = BUILTIN.iter().map(|b| 1 + b.4.len()).sum();
        assert_eq!(c.inner.by_name.len(), names, "no id or alias twice");
        for (id, _, _, tier, aliases) in BUILTIN {
            assert_eq!(family_tier(id), Some(*tier), "{id} routes by family too");
            for alias in *aliases {
                assert_eq!(c.tier_of(alias), Some(*tier));
            }
        }
    }

    #[test]
    fn tiers_come_from_the_table_then_the_family_name() {
        let extra = CatalogModel {
            id: "claude-fable-5".into(),
            display_name: Some("Claude Fable 5".into()),
            created_at: release_date::parse("2026-06-09").unwrap(),
            tier: Some(Tier::Big),
        };
        let c = Catalog::new(&CatalogSettings {
            models: vec![extra],
        })
        .unwrap();
        let cases = [
            ("claude-fable-5", Some(Tier::Big)),
            ("claude-3-5-haiku-20241022", Some(Tier::Small)),
            ("claude-haiku-4-5", Some(Tier::Small)),
            ("claude-sonnet-9-9", Some(Tier::Middle)),
            ("opus", Some(Tier::Big)),
            ("gpt-4o", None),
        ];
        for (model, tier) in cases {
            assert_eq!(c.tier_of(model), tier, "{model}");
        }
    }

    #[test]
    fn operator_entries_are_checked() {
        let entry = |id: &str, tier: Option<Tier>| CatalogModel {
            id: id.into(),
            display_name: None,
            created_at: SystemTime::UNIX_EPOCH,
            tier,
        };
        let err =
            |models: Vec<CatalogModel>| Catalog::new(&CatalogSettings { models }).unwrap_err().0;
        assert!(err(vec![entry("claude-fable-5", None)]).contains("tier"));
        assert!(err(vec![entry("p/x", Some(Tier::Big))]).contains("`/`"));
        assert!(
            err(vec![
                entry("claude-opus-9", None),
                entry("claude-opus-9", None)
            ])
            .contains("twice")
        );
        let c = Catalog::new(&CatalogSettings {
            models: vec![entry("claude-opus-4-7", Some(Tier::Middle))],
        })
        .unwrap();
        assert_eq!(
            c.tier_of("claude-opus-4-7"),
            Some(Tier::Middle),
            "overrides"
        );
    }

    #[test]
    fn list_shows_served_tiers_and_provider_models() {
        let c = catalog();
        let providers = [
            upstream("p", &["p-big"], &[], true),
            upstream("off", &["x"], &["y"], false),
        ];
        let list = c.list(&providers);
        let got = ids(&list);
        assert!(got.contains(&"claude-opus-4-6") && got.contains(&"claude-3-opus-20240229"));
        assert!(!got.iter().any(|id| id.contains("haiku")), "{got:?}");
        assert!(!got.iter().any(|id| id.starts_with("off/")), "disabled");
        assert_eq!(got.last(), Some(&"p/p-big"));
        assert_eq!(list.last().unwrap().created_at, SystemTime::UNIX_EPOCH);
        assert!(list.windows(2).all(|w| w[0].created_at >= w[1].created_at));
        let found = c.find(&list, "claude-opus-4-5").unwrap();
        assert_eq!(found.id, "claude-opus-4-5-20251101", "aliases resolve");
        assert!(c.find(&list, "claude-3-5-haiku-20241022").is_none());
        assert!(c.find(&list, "opus").is_none());
    }

    #[test]
    fn pages_follow_anthropic_cursors() {
        let all: Vec<ModelInfo> = (0..5)
            .map(|i| ModelInfo {
                kind: "model",
                id: format!("m{i}"),
                display_name: format!("m{i}"),
                created_at: SystemTime::UNIX_EPOCH,
            })
            .collect();
        let q = |before: Option<&str>, after: Option<&str>, limit: Option<&str>| PageQuery {
            before_id: before.map(String::from),
            after_id: after.map(String::from),
            limit: limit.map(String::from),
        };
        // (query, ids, has_more)
        let cases: Vec<(PageQuery, Vec<&str>, bool)> = vec![
            (
                q(None, None, None),
                vec!["m0", "m1", "m2", "m3", "m4"],
                false,
            ),
            (q(None, None, Some("2")), vec!["m0", "m1"], true),
            (q(None, Some("m1"), Some("2")), vec!["m2", "m3"], true),
            (q(None, Some("m2"), Some("2")), vec!["m3", "m4"], false),
            (q(None, Some("m4"), None), vec![], false),
            (q(Some("m3"), None, Some("2")), vec!["m1", "m2"], true),
            (q(Some("m2"), None, Some("2")), vec!["m0", "m1"], false),
            (q(Some("m0"), None, None), vec![], false),
            (
                q(None, None, Some("1000")),
                vec!["m0", "m1", "m2", "m3", "m4"],
                false,
            ),
        ];
        for (query, want, more) in cases {
            let p = page(&all, &query).unwrap();
            assert_eq!((ids(p.data), p.has_more), (want, more), "{query:?}");
        }
        let errors = [
            (q(None, None, Some("0")), "limit"),
            (q(None, None, Some("1001")), "limit"),
            (q(None, None, Some("ten")), "limit"),
            (q(None, Some("nope"), None), "after_id"),
            (q(Some("nope"), None, None), "before_id"),
            (q(Some("m1"), Some("m2"), None), "before_id, after_id"),
        ];
        for (query, param) in errors {
            let e = page(&all, &query).unwrap_err();
            assert!(e.starts_with(param), "{query:?}: {e}");
        }
    }
}
