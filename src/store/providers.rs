//! Providers kept in the database; their API keys are sealed (AES-256-GCM).

use std::time::Duration;

use tokio_rusqlite::rusqlite::{self, params};

use super::{Result, Store, StoreError, now_ms};
use crate::config::Secret;
use crate::secrets::Sealer;
use crate::upstream::provider::{ApiFormat, Models, ProviderSpec};

struct Row {
    spec: ProviderSpec,
    sealed: Option<Vec<u8>>,
}

fn json_list(text: &str) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let format: String = row.get(1)?;
    let headers: String = row.get(9)?;
    Ok(Row {
        spec: ProviderSpec {
            name: row.get(0)?,
            api_format: ApiFormat::parse(&format).unwrap_or_default(),
            base_url: row.get(2)?,
            api_key: None,
            api_keys: Vec::new(),
            priority: row.get(4)?,
            weight: row.get(5)?,
            enabled: row.get(6)?,
            timeout: Duration::from_millis(row.get::<_, i64>(7)?.max(1) as u64),
            first_byte_timeout: None,
            max_retries: row.get(8)?,
            custom_headers: serde_json::from_str(&headers).unwrap_or_default(),
            models: Models {
                big: json_list(&row.get::<_, String>(10)?)?,
                middle: json_list(&row.get::<_, String>(11)?)?,
                small: json_list(&row.get::<_, String>(12)?)?,
                other: Default::default(),
            },
            max_tokens_limit: row.get(13)?,
            reasoning_efforts: Vec::new(),
            api_version: None,
        },
        sealed: row.get(3)?,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// Inserts or replaces a provider by name, sealing its keys.
    pub async fn upsert_provider(&self, spec: &ProviderSpec, sealer: &Sealer) -> Result<()> {
        let keys: Vec<&str> = spec.api_keys.iter().map(Secret::expose).collect();
        let sealed = (!keys.is_empty()).then(|| sealer.seal(&to_json(&keys)));
        let spec = spec.clone();
        self.write(move |conn| {
            let now = now_ms();
            conn.execute(
                "INSERT INTO providers (name, api_format, base_url, api_keys_sealed, priority, weight,
                    enabled, timeout_ms, max_retries, custom_headers, model_big, model_middle,
                    model_small, max_tokens_limit, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)
                 ON CONFLICT (name) DO UPDATE SET api_format = excluded.api_format,
                    base_url = excluded.base_url, api_keys_sealed = excluded.api_keys_sealed,
                    priority = excluded.priority, weight = excluded.weight, enabled = excluded.enabled,
                    timeout_ms = excluded.timeout_ms, max_retries = excluded.max_retries,
                    custom_headers = excluded.custom_headers, model_big = excluded.model_big,
                    model_middle = excluded.model_middle, model_small = excluded.model_small,
                    max_tokens_limit = excluded.max_tokens_limit, updated_at = excluded.updated_at",
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

    /// All providers with their keys opened. A key sealed under another
    /// `ENCRYPTION_KEY` is an error naming the provider.
    pub async fn list_providers(&self, sealer: &Sealer) -> Result<Vec<ProviderSpec>> {
        let rows = self
            .read(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT name, api_format, base_url, api_keys_sealed, priority, weight, enabled,
                            timeout_ms, max_retries, custom_headers, model_big, model_middle,
                            model_small, max_tokens_limit
                     FROM providers ORDER BY priority, name",
                )?;
                let rows = stmt.query_map([], from_row)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
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
        let (store, _dir) = testing::store().await;
        let sealer = Sealer::for_testing();
        store.upsert_provider(&spec("p"), &sealer).await.unwrap();
        store.upsert_provider(&spec("p"), &sealer).await.unwrap();
        let listed = store.list_providers(&sealer).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].api_keys[1].expose(), "sk-2");
        assert_eq!(listed[0].models.small, ["s"]);
        assert_eq!(listed[0].max_tokens_limit, Some(4096));
        let raw: Vec<u8> = store
            .read(|c| Ok(c.query_row("SELECT api_keys_sealed FROM providers", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("sk-1"));
        let other = Sealer::new(&[1u8; 32]).unwrap();
        let err = store.list_providers(&other).await.unwrap_err();
        assert!(err.to_string().contains("provider p"), "{err}");
    }
}
