//! Providers kept in the database; their API keys are sealed (AES-256-GCM).

use std::time::Duration;

use tokio_rusqlite::rusqlite::params;

use super::{Engine, Result, Store, StoreError, now_ms};
use crate::config::Secret;
use crate::secrets::Sealer;
use crate::upstream::provider::{ApiFormat, Models, ProviderSpec};

struct Row {
    spec: ProviderSpec,
    sealed: Option<Vec<u8>>,
}

fn decode(row: &impl super::row::Row) -> Result<Row> {
    let list = |i: usize| -> Result<Vec<String>> {
        serde_json::from_str(&row.col::<String>(i)?).map_err(|e| StoreError::Corrupt(e.to_string()))
    };
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
            timeout: Duration::from_millis(row.col::<i64>(7)?.max(1) as u64),
            first_byte_timeout: None,
            max_retries: row.col::<i64>(8)? as u32,
            custom_headers: serde_json::from_str(&row.col::<String>(9)?).unwrap_or_default(),
            models: Models {
                big: list(10)?,
                middle: list(11)?,
                small: list(12)?,
                other: Default::default(),
            },
            max_tokens_limit: row.col::<Option<i64>>(13)?.map(|n| n as u32),
            api_version: None,
        },
        sealed: row.col(3)?,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

const SELECT: &str =
    "SELECT name, api_format, base_url, api_keys_sealed, priority, weight, enabled,
        timeout_ms, max_retries, custom_headers, model_big, model_middle, model_small,
        max_tokens_limit
    FROM providers ORDER BY priority, name";

/// The upsert, the same text on both engines.
const UPSERT: &str = "INSERT INTO providers (name, api_format, base_url, api_keys_sealed, priority,
        weight, enabled, timeout_ms, max_retries, custom_headers, model_big, model_middle,
        model_small, max_tokens_limit, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)
    ON CONFLICT (name) DO UPDATE SET api_format = excluded.api_format,
        base_url = excluded.base_url, api_keys_sealed = excluded.api_keys_sealed,
        priority = excluded.priority, weight = excluded.weight, enabled = excluded.enabled,
        timeout_ms = excluded.timeout_ms, max_retries = excluded.max_retries,
        custom_headers = excluded.custom_headers, model_big = excluded.model_big,
        model_middle = excluded.model_middle, model_small = excluded.model_small,
        max_tokens_limit = excluded.max_tokens_limit, updated_at = excluded.updated_at";

impl Store {
    /// Inserts or replaces a provider by name, sealing its keys.
    pub async fn upsert_provider(&self, spec: &ProviderSpec, sealer: &Sealer) -> Result<()> {
        let keys: Vec<&str> = spec.api_keys.iter().map(Secret::expose).collect();
        let sealed = (!keys.is_empty()).then(|| sealer.seal(&to_json(&keys)));
        let now = now_ms();
        let spec = spec.clone();
        match &self.engine {
            Engine::Sqlite(db) => {
                db.write(move |conn| {
                    // SQLite numbers `$N` parameters in order of first use: here, N.
                    conn.execute(
                        UPSERT,
                        params![
                            spec.name,
                            spec.api_format.as_str(),
                            spec.base_url,
                            sealed,
                            spec.priority,
                            spec.weight,
                            spec.enabled,
                            spec.timeout.as_millis() as i64,
                            spec.max_retries,
                            to_json(&spec.custom_headers),
                            to_json(&spec.models.big),
                            to_json(&spec.models.middle),
                            to_json(&spec.models.small),
                            spec.max_tokens_limit,
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
                            &sealed,
                            &spec.priority,
                            &i64::from(spec.weight),
                            &spec.enabled,
                            &(spec.timeout.as_millis() as i64),
                            &i64::from(spec.max_retries),
                            &to_json(&spec.custom_headers),
                            &to_json(&spec.models.big),
                            &to_json(&spec.models.middle),
                            &to_json(&spec.models.small),
                            &spec.max_tokens_limit.map(i64::from),
                            &now,
                        ],
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// All providers with their keys opened. A key sealed under another
    /// `ENCRYPTION_KEY` is an error naming the provider.
    pub async fn list_providers(&self, sealer: &Sealer) -> Result<Vec<ProviderSpec>> {
        let rows = match &self.engine {
            Engine::Sqlite(db) => {
                db.read(|conn| super::row::sqlite_all(conn, SELECT, [], |row| decode(row)))
                    .await?
            }
            Engine::Postgres(db) => db
                .client()
                .await?
                .query(SELECT, &[])
                .await?
                .iter()
                .map(decode)
                .collect::<Result<Vec<_>>>()?,
        };
        rows.into_iter()
            .map(|Row { mut spec, sealed }| {
                if let Some(sealed) = sealed {
                    let opened = sealer.open(&sealed).map_err(|e| {
                        StoreError::Corrupt(format!("provider {}: API keys: {e}", spec.name))
                    })?;
                    let keys: Vec<String> = serde_json::from_str(&opened).map_err(|e| {
                        StoreError::Corrupt(format!("provider {}: API keys: {e}", spec.name))
                    })?;
                    spec.api_keys = keys.into_iter().map(Secret::new).collect();
                }
                Ok(spec)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    fn spec(name: &str) -> ProviderSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "base_url": "http://127.0.0.1:1/v1", "api_keys": ["sk-1", "sk-2"],
            "models": {"big": ["b"], "middle": ["m"], "small": ["s"]}, "max_tokens_limit": 4096
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn keys_are_sealed_at_rest_and_opened_on_read() {
        for test in testing::each().await {
            let store = &test.store;
            let sealer = Sealer::for_testing();
            store.upsert_provider(&spec("p"), &sealer).await.unwrap();
            store.upsert_provider(&spec("p"), &sealer).await.unwrap();
            let listed = store.list_providers(&sealer).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].api_keys[1].expose(), "sk-2");
            assert_eq!(listed[0].models.small, ["s"]);
            assert_eq!(listed[0].max_tokens_limit, Some(4096));
            let raw: Vec<u8> = match &store.engine {
                Engine::Sqlite(db) => db
                    .read(|c| {
                        Ok(c.query_row("SELECT api_keys_sealed FROM providers", [], |r| r.get(0))?)
                    })
                    .await
                    .unwrap(),
                Engine::Postgres(db) => db
                    .client()
                    .await
                    .unwrap()
                    .query_one("SELECT api_keys_sealed FROM providers", &[])
                    .await
                    .unwrap()
                    .get(0),
            };
            assert!(!String::from_utf8_lossy(&raw).contains("sk-1"));
            let other = Sealer::new(&[1u8; 32]).unwrap();
            let err = store.list_providers(&other).await.unwrap_err();
            assert!(err.to_string().contains("provider p"), "{err}");
        }
    }
}
