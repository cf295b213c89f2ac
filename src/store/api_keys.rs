//! Client API keys: only a SHA-256 hash and a display prefix are stored.

use tokio_rusqlite::rusqlite::params;

use super::row::{Decode, Row, sqlite_all};
use super::{Engine, Result, Store, StoreError, now_ms};
use crate::secrets;

/// A key record as stored (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub owner_id: Option<i64>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl ApiKey {
    /// Whether the key may authenticate a request at `now` (Unix ms).
    pub fn is_usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A freshly created key: the secret is shown once and never stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewApiKey {
    pub key: String,
    #[serde(flatten)]
    pub record: ApiKey,
}

const COLUMNS: &str =
    "id, name, prefix, owner_id, created_at, last_used_at, revoked_at, expires_at";

impl Decode for ApiKey {
    fn decode(row: &impl Row) -> Result<Self> {
        Ok(ApiKey {
            id: row.col(0)?,
            name: row.col(1)?,
            prefix: row.col(2)?,
            owner_id: row.col(3)?,
            created_at: row.col(4)?,
            last_used_at: row.col(5)?,
            revoked_at: row.col(6)?,
            expires_at: row.col(7)?,
        })
    }
}

/// The one key `selector` names, or why not.
fn single(selector: &str, found: Vec<ApiKey>) -> Result<ApiKey> {
    let mut found = found.into_iter();
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(StoreError::NotFound(format!(
            "no API key with id or prefix `{selector}`"
        ))),
        (Some(_), Some(_)) => Err(StoreError::Conflict(format!(
            "`{selector}` matches several keys; use the id"
        ))),
    }
}

impl Store {
    pub async fn create_api_key(
        &self,
        name: &str,
        owner_id: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<NewApiKey> {
        let key = secrets::generate_api_key();
        let hash = secrets::hash_api_key(&key);
        let prefix = key[..secrets::API_KEY_DISPLAY_LEN].to_string();
        let name = name.to_string();
        let now = now_ms();
        let id = match &self.engine {
            Engine::Sqlite(db) => {
                let (name, prefix) = (name.clone(), prefix.clone());
                db.write(move |conn| {
                    conn.execute(
                        "INSERT INTO api_keys (name, key_hash, prefix, owner_id, created_at, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![name, hash.as_slice(), prefix, owner_id, now, expires_at],
                    )?;
                    Ok(conn.last_insert_rowid())
                })
                .await?
            }
            Engine::Postgres(db) => db
                .client()
                .await?
                .query_one(
                    "INSERT INTO api_keys (name, key_hash, prefix, owner_id, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[&name, &hash.as_slice(), &prefix, &owner_id, &now, &expires_at],
                )
                .await?
                .try_get(0)?,
        };
        let record = ApiKey {
            id,
            name,
            prefix,
            owner_id,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
            expires_at,
        };
        Ok(NewApiKey { key, record })
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        self.all(format!("SELECT {COLUMNS} FROM api_keys ORDER BY id"))
            .await
    }

    /// The record for a key hash, whatever its state (callers check `is_usable`).
    pub async fn find_api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKey>> {
        match &self.engine {
            Engine::Sqlite(db) => {
                db.read(move |conn| {
                    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE key_hash = ?1");
                    Ok(sqlite_all(conn, &sql, [hash.as_slice()], |row| ApiKey::decode(row))?.pop())
                })
                .await
            }
            Engine::Postgres(db) => {
                let client = db.client().await?;
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1"
                    ))
                    .await?;
                client
                    .query_opt(&stmt, &[&hash.as_slice()])
                    .await?
                    .as_ref()
                    .map(ApiKey::decode)
                    .transpose()
            }
        }
    }

    /// Revokes a key named by id or by its display prefix.
    pub async fn revoke_api_key(&self, id_or_prefix: &str) -> Result<ApiKey> {
        let selector = id_or_prefix.trim().to_string();
        let now = now_ms();
        match &self.engine {
            Engine::Sqlite(db) => {
                db.write(move |conn| {
                    let tx = conn.transaction()?;
                    let found = sqlite_all(
                        &tx,
                        &format!(
                            "SELECT {COLUMNS} FROM api_keys WHERE CAST(id AS TEXT) = ?1 OR prefix = ?1"
                        ),
                        [&selector],
                        |row| ApiKey::decode(row),
                    )?;
                    let mut key = single(&selector, found)?;
                    if key.revoked_at.is_none() {
                        tx.execute(
                            "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2",
                            params![now, key.id],
                        )?;
                        key.revoked_at = Some(now);
                    }
                    tx.commit()?;
                    Ok(key)
                })
                .await
            }
            Engine::Postgres(db) => {
                let mut client = db.client().await?;
                let tx = client.transaction().await?;
                let found = tx
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM api_keys WHERE id::text = $1 OR prefix = $1 FOR UPDATE"
                        ),
                        &[&selector],
                    )
                    .await?
                    .iter()
                    .map(ApiKey::decode)
                    .collect::<Result<Vec<_>>>()?;
                let mut key = single(&selector, found)?;
                if key.revoked_at.is_none() {
                    tx.execute(
                        "UPDATE api_keys SET revoked_at = $1 WHERE id = $2",
                        &[&now, &key.id],
                    )
                    .await?;
                    key.revoked_at = Some(now);
                }
                tx.commit().await?;
                Ok(key)
            }
        }
    }

    /// Records when keys were last used, in one transaction.
    pub async fn touch_api_keys(&self, uses: Vec<(i64, i64)>) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(db) => {
                db.write(move |conn| {
                    let tx = conn.transaction()?;
                    {
                        let mut stmt = tx.prepare_cached(
                            "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?2) WHERE id = ?1",
                        )?;
                        for (id, at) in uses {
                            stmt.execute(params![id, at])?;
                        }
                    }
                    tx.commit()?;
                    Ok(())
                })
                .await
            }
            Engine::Postgres(db) => {
                let (ids, ats): (Vec<i64>, Vec<i64>) = uses.into_iter().unzip();
                db.client()
                    .await?
                    .execute(
                        "UPDATE api_keys AS k SET last_used_at = GREATEST(COALESCE(k.last_used_at, 0), u.at)
                         FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS u (id, at) WHERE k.id = u.id",
                        &[&ids, &ats],
                    )
                    .await?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[tokio::test]
    async fn keys_are_found_by_hash_only_and_revocable() {
        for test in testing::each().await {
            let store = &test.store;
            let created = store.create_api_key("ci", None, None).await.unwrap();
            assert!(created.key.starts_with("sk-ab-"));
            assert!(created.key.starts_with(&created.record.prefix));
            let found = store
                .find_api_key(secrets::hash_api_key(&created.key))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(found, created.record);
            assert!(found.is_usable(now_ms()));
            assert!(
                store
                    .find_api_key(secrets::hash_api_key("sk-ab-nope"))
                    .await
                    .unwrap()
                    .is_none()
            );

            let revoked = store.revoke_api_key(&created.record.prefix).await.unwrap();
            assert!(!revoked.is_usable(now_ms()));
            assert!(matches!(
                store.revoke_api_key("999").await,
                Err(StoreError::NotFound(_))
            ));
        }
    }

    #[tokio::test]
    async fn expiry_and_last_used() {
        for test in testing::each().await {
            let store = &test.store;
            let k = store
                .create_api_key("old", None, Some(now_ms() - 1))
                .await
                .unwrap();
            assert!(!k.record.is_usable(now_ms()));
            store.touch_api_keys(vec![(k.record.id, 42)]).await.unwrap();
            let listed = store.list_api_keys().await.unwrap();
            assert_eq!(listed[0].last_used_at, Some(42));
        }
    }
}
