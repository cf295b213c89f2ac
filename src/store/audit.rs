//! The audit log: who changed what, from the CLI or the admin API.

use tokio_rusqlite::rusqlite::params;

use super::{Engine, Result, Store, now_ms};

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub action: &'static str,
    pub target: Option<String>,
    pub detail: Option<String>,
}

impl AuditEntry {
    pub fn new(actor: impl Into<String>, action: &'static str) -> Self {
        Self {
            actor: actor.into(),
            action,
            target: None,
            detail: None,
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl Store {
    pub async fn audit(&self, entry: AuditEntry) -> Result<()> {
        let now = now_ms();
        match &self.engine {
            Engine::Sqlite(db) => {
                db.write(move |conn| {
                    conn.execute(
                        "INSERT INTO audit_log (created_at, actor, action, target, detail)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![now, entry.actor, entry.action, entry.target, entry.detail],
                    )?;
                    Ok(())
                })
                .await
            }
            Engine::Postgres(db) => {
                db.client()
                    .await?
                    .execute(
                        "INSERT INTO audit_log (created_at, actor, action, target, detail)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[
                            &now,
                            &entry.actor,
                            &entry.action,
                            &entry.target,
                            &entry.detail,
                        ],
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// How many audit entries carry `action` (for tests and the console).
    pub async fn count_audit(&self, action: &'static str) -> Result<u64> {
        let n: i64 = match &self.engine {
            Engine::Sqlite(db) => {
                db.read(move |conn| {
                    Ok(conn.query_row(
                        "SELECT COUNT(*) FROM audit_log WHERE action = ?1",
                        [action],
                        |row| row.get(0),
                    )?)
                })
                .await?
            }
            Engine::Postgres(db) => db
                .client()
                .await?
                .query_one(
                    "SELECT COUNT(*) FROM audit_log WHERE action = $1",
                    &[&action],
                )
                .await?
                .try_get(0)?,
        };
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[tokio::test]
    async fn entries_are_recorded() {
        for test in testing::each().await {
            let store = &test.store;
            store
                .audit(
                    AuditEntry::new("cli", "key.create")
                        .target("k1")
                        .detail("name=ci"),
                )
                .await
                .unwrap();
            assert_eq!(store.count_audit("key.create").await.unwrap(), 1);
            assert_eq!(store.count_audit("key.revoke").await.unwrap(), 0);
        }
    }
}
