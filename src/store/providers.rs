//! Providers kept in the database. Every `ProviderSpec` field is stored, so
//! a provider reads back equal to what was written; its API keys and its
//! custom headers (whose values often carry credentials) are sealed
//! (AES-256-GCM). A row written before headers were sealed still has them
//! in plaintext in `custom_headers`; they are sealed when it is next written.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_rusqlite::rusqlite::params;

use super::row::Decode;
use super::{Engine, Result, Store, StoreError, now_ms};
use crate::config::Secret;
use crate::secrets::Sealer;
use crate::upstream::provider::{ApiFormat, Models, ProviderSpec};

struct Row {
    spec: ProviderSpec,
    sealed_keys: Option<Vec<u8>>,
    sealed_headers: Option<Vec<u8>>,
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(1) as u64)
}

impl Decode for Row {
    fn decode(row: &impl super::row::Row) -> Result<Self> {
        let list = |i: usize| -> Result<Vec<String>> {
            serde_json::from_str(&row.col::<String>(i)?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        };
        let legacy_headers: String = row.col(9)?;
        Ok(Row {
            spec: ProviderSpec {
                name: row.col(0)?,
                api_format: ApiFormat::parse(&row.col::<String>(1)?).unwrap_or_default(),
                base_url: row.col(2)?,
                api_key: None,
                api_keys: Vec::new(),
                priority: row.col(4)?,
                weight: row.col::<i64>(5)? as u32,
                enabled: row.col(6)?,
                timeout: millis(row.col(7)?),
                first_byte_timeout: row.col::<Option<i64>>(14)?.map(millis),
                max_retries: row.col::<i64>(8)? as u32,
                custom_headers: serde_json::from_str(&legacy_headers).unwrap_or_default(),
                models: Models {
                    big: list(10)?,
                    middle: list(11)?,
                    small: list(12)?,
                    other: Default::default(),
                },
                max_tokens_limit: row.col::<Option<i64>>(13)?.map(|n| n as u32),
                allow_any_model: row.col(15)?,
                reasoning_efforts: serde_json::from_str(&row.col::<String>(17)?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                api_version: None,
            },
            sealed_keys: row.col(3)?,
            sealed_headers: row.col(16)?,
        })
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

/// Opens a sealed JSON value of provider `name`.
fn open<T: serde::de::DeserializeOwned>(
    sealer: &Sealer,
    sealed: &[u8],
    name: &str,
    what: &str,
) -> Result<T> {
    let corrupt = |e: String| StoreError::Corrupt(format!("provider {name}: {what}: {e}"));
    let opened = sealer.open(sealed).map_err(|e| corrupt(e.to_string()))?;
    serde_json::from_str(&opened).map_err(|e| corrupt(e.to_string()))
}

const SELECT: &str =
    "SELECT name, api_format, base_url, api_keys_sealed, priority, weight, enabled,
        timeout_ms, max_retries, custom_headers, model_big, model_middle, model_small,
        max_tokens_limit, first_byte_timeout_ms, allow_any_model, custom_headers_sealed,
        reasoning_efforts
    FROM providers ORDER BY priority, name";

/// The upsert, the same text on both engines.
const UPSERT: &str = "INSERT INTO providers (name, api_format, base_url, api_keys_sealed, priority,
        weight, enabled, timeout_ms, max_retries, custom_headers, model_big, model_middle,
        model_small, max_tokens_limit, first_byte_timeout_ms, allow_any_model,
        custom_headers_sealed, reasoning_efforts, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '{}', $10, $11, $12, $13, $14, $15, $16, $17, $18,
        $18)
    ON CONFLICT (name) DO UPDATE SET api_format = excluded.api_format,
        base_url = excluded.base_url, api_keys_sealed = excluded.api_keys_sealed,
        priority = excluded.priority, weight = excluded.weight, enabled = excluded.enabled,
        timeout_ms = excluded.timeout_ms, max_retries = excluded.max_retries,
        custom_headers = excluded.custom_headers, model_big = excluded.model_big,
        model_middle = excluded.model_middle, model_small = excluded.model_small,
        max_tokens_limit = excluded.max_tokens_limit,
        first_byte_timeout_ms = excluded.first_byte_timeout_ms,
        allow_any_model = excluded.allow_any_model,
        custom_headers_sealed = excluded.custom_headers_sealed,
        reasoning_efforts = excluded.reasoning_efforts,
        updated_at = excluded.updated_at";

impl Store {
    /// Inserts or replaces a provider by name, sealing its keys and headers.
    pub async fn upsert_provider(&self, spec: &ProviderSpec, sealer: &Sealer) -> Result<()> {
        let keys: Vec<&str> = spec.api_keys.iter().map(Secret::expose).collect();
        let sealed_keys = (!keys.is_empty()).then(|| sealer.seal(&to_json(&keys)));
        let sealed_headers =
            (!spec.custom_headers.is_empty()).then(|| sealer.seal(&to_json(&spec.custom_headers)));
        let now = now_ms();
        let spec = spec.clone();
        let timeout = spec.timeout.as_millis() as i64;
        let first_byte = spec.first_byte_timeout.map(|d| d.as_millis() as i64);
        let efforts = to_json(&spec.reasoning_efforts);
        match &self.engine {
            Engine::Sqlite(db) => {
                db.write(move |conn| {
                    // SQLite's `?N` is PostgreSQL's `$N`.
                    conn.execute(
                        &UPSERT.replace('$', "?"),
                        params![
                            spec.name,
                            spec.api_format.as_str(),
                            spec.base_url,
                            sealed_keys,
                            spec.priority,
                            spec.weight,
                            spec.enabled,
                            timeout,
                            spec.max_retries,
                            to_json(&spec.models.big),
                            to_json(&spec.models.middle),
                            to_json(&spec.models.small),
                            spec.max_tokens_limit,
                            first_byte,
                            spec.allow_any_model,
                            sealed_headers,
                            efforts,
                            now,
                        ],
                    )?;
                    Ok(())
                })
                .await
            }
            Engine::Postgres(db) => {
                db.client()
                    .await?
                    .execute(
                        UPSERT,
                        &[
                            &spec.name,
                            &spec.api_format.as_str(),
                            &spec.base_url,
                            &sealed_keys,
                            &spec.priority,
                            &i64::from(spec.weight),
                            &spec.enabled,
                            &timeout,
                            &i64::from(spec.max_retries),
                            &to_json(&spec.models.big),
                            &to_json(&spec.models.middle),
                            &to_json(&spec.models.small),
                            &spec.max_tokens_limit.map(i64::from),
                            &first_byte,
                            &spec.allow_any_model,
                            &sealed_headers,
                            &efforts,
                            &now,
                        ],
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// All providers with their keys and headers opened. A value sealed
    /// under another `ENCRYPTION_KEY` is an error naming the provider.
    pub async fn list_providers(&self, sealer: &Sealer) -> Result<Vec<ProviderSpec>> {
        let rows: Vec<Row> = self.all(SELECT.to_string()).await?;
        rows.into_iter()
            .map(|row| {
                let mut spec = row.spec;
                if let Some(sealed) = row.sealed_keys {
                    let keys: Vec<String> = open(sealer, &sealed, &spec.name, "API keys")?;
                    spec.api_keys = keys.into_iter().map(Secret::new).collect();
                }
                if let Some(sealed) = row.sealed_headers {
                    let headers: BTreeMap<String, String> =
                        open(sealer, &sealed, &spec.name, "custom headers")?;
                    spec.custom_headers = headers;
                }
                Ok(spec)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Effort;
    use crate::store::row::sqlite_all;
    use crate::store::testing;

    fn spec(name: &str) -> ProviderSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "base_url": "http://127.0.0.1:1/v1", "api_keys": ["sk-1", "sk-2"],
            "models": {"big": ["b"], "middle": ["m"], "small": ["s"]}, "max_tokens_limit": 4096
        }))
        .unwrap()
    }

    /// A spec with every field away from its default. Written as a struct
    /// literal on purpose: a new field must be added here, and so tested.
    fn every_field() -> ProviderSpec {
        ProviderSpec {
            name: "full".into(),
            api_format: ApiFormat::Anthropic,
            base_url: "https://api.example.com".into(),
            api_key: None,
            api_keys: vec![Secret::new("sk-a"), Secret::new("sk-b")],
            priority: 7,
            weight: 3,
            enabled: false,
            timeout: Duration::from_millis(45_500),
            first_byte_timeout: Some(Duration::from_millis(2_500)),
            max_retries: 4,
            custom_headers: BTreeMap::from([
                ("x-org".into(), "org-secret-1".into()),
                ("authorization".into(), "Bearer ${API_KEY}".into()),
            ]),
            models: Models {
                big: vec!["b1".into(), "b2".into()],
                middle: vec!["m1".into()],
                small: vec!["s1".into()],
                other: Default::default(),
            },
            max_tokens_limit: Some(8192),
            allow_any_model: true,
            reasoning_efforts: vec![Effort::Low, Effort::High],
            api_version: None,
        }
    }

    #[tokio::test]
    async fn every_field_survives_the_round_trip() {
        for test in testing::each().await {
            let store = &test.store;
            let sealer = Sealer::for_testing();
            let full = every_field();
            store.upsert_provider(&full, &sealer).await.unwrap();
            assert_eq!(
                store.list_providers(&sealer).await.unwrap(),
                std::slice::from_ref(&full),
                "{}",
                store.engine()
            );
            let mut plain = spec("full");
            plain.first_byte_timeout = None;
            store.upsert_provider(&plain, &sealer).await.unwrap();
            assert_eq!(
                store.list_providers(&sealer).await.unwrap(),
                [plain],
                "an update replaces every field"
            );
        }
    }

    #[tokio::test]
    async fn keys_and_headers_are_sealed_at_rest_and_opened_on_read() {
        for test in testing::each().await {
            let store = &test.store;
            let sealer = Sealer::for_testing();
            store.upsert_provider(&spec("p"), &sealer).await.unwrap();
            store
                .upsert_provider(&every_field(), &sealer)
                .await
                .unwrap();
            let listed = store.list_providers(&sealer).await.unwrap();
            assert_eq!(listed.len(), 2);
            assert_eq!(listed[0].api_keys[1].expose(), "sk-2");
            // Each row's stored key, header and sealed-header columns, as text.
            let sql =
                "SELECT api_keys_sealed, custom_headers, custom_headers_sealed FROM providers";
            fn line(keys: Option<Vec<u8>>, headers: String, sealed: Option<Vec<u8>>) -> String {
                let text = |b: Option<Vec<u8>>| {
                    String::from_utf8_lossy(&b.unwrap_or_default()).into_owned()
                };
                format!("{} {headers} {}", text(keys), text(sealed))
            }
            let rows: Vec<String> = match &store.engine {
                Engine::Sqlite(db) => db
                    .read(move |c| {
                        sqlite_all(c, sql, [], |r| Ok(line(r.get(0)?, r.get(1)?, r.get(2)?)))
                    })
                    .await
                    .unwrap(),
                Engine::Postgres(db) => db
                    .client()
                    .await
                    .unwrap()
                    .query(sql, &[])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| line(r.get(0), r.get(1), r.get(2)))
                    .collect(),
            };
            for secret in ["sk-1", "sk-a", "org-secret-1"] {
                assert!(
                    !rows.iter().any(|row| row.contains(secret)),
                    "{secret} stored in the clear: {rows:?}"
                );
            }
            let other = Sealer::new(&[1u8; 32]).unwrap();
            let err = store.list_providers(&other).await.unwrap_err();
            assert!(err.to_string().contains("provider "), "{err}");
        }
    }

    #[tokio::test]
    async fn plaintext_headers_from_before_sealing_are_still_read() {
        for test in testing::each().await {
            let store = &test.store;
            let sealer = Sealer::for_testing();
            store.upsert_provider(&spec("old"), &sealer).await.unwrap();
            let legacy = "UPDATE providers SET custom_headers = '{\"x-org\":\"o\"}', custom_headers_sealed = NULL";
            testing::execute(store, legacy, legacy).await;
            let listed = store.list_providers(&sealer).await.unwrap();
            assert_eq!(listed[0].custom_headers["x-org"], "o");
        }
    }
}
