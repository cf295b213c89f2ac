//! Numbered SQL migrations embedded in the binary, applied in one
//! transaction keyed on `PRAGMA user_version`.
//!
//! Foreign keys are off while migrations run (SQLite ignores the pragma
//! inside a transaction, and rebuilding a referenced table with them on
//! would fire `ON DELETE` actions); `foreign_key_check` must come back empty
//! before the transaction commits.

use super::{Result, Store, StoreError};

/// The migrations, in order; migration N brings the schema to version N.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_request_log_endpoint.sql"),
    include_str!("migrations/0003_provider_fields.sql"),
    include_str!("migrations/0004_identity.sql"),
    include_str!("migrations/0005_provider_reasoning_efforts.sql"),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What `migrate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    pub from: i64,
    pub to: i64,
}

impl MigrationReport {
    pub fn changed(&self) -> bool {
        self.from != self.to
    }
}

impl Store {
    /// Brings the schema up to date; harmless when it already is. A database
    /// written by a newer abridge is refused rather than guessed at.
    pub async fn migrate(&self) -> Result<MigrationReport> {
        self.write(|conn| {
            conn.pragma_update(None, "foreign_keys", false)?;
            let result = migrate_in_transaction(conn);
            conn.pragma_update(None, "foreign_keys", true)?;
            result
        })
        .await
    }
}

fn migrate_in_transaction(
    conn: &mut tokio_rusqlite::rusqlite::Connection,
) -> Result<MigrationReport> {
    let tx = conn.transaction()?;
    let from: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if from > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: from,
            known: SCHEMA_VERSION,
        });
    }
    for sql in &MIGRATIONS[from as usize..] {
        tx.execute_batch(sql)?;
    }
    let dangling: i64 =
        tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |row| {
            row.get(0)
        })?;
    if dangling > 0 {
        return Err(StoreError::Corrupt(format!(
            "{dangling} rows reference missing rows after migrating"
        )));
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(MigrationReport {
        from,
        to: SCHEMA_VERSION,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[tokio::test]
    async fn migrating_twice_is_harmless() {
        let (store, _dir) = testing::store().await;
        let again = store.migrate().await.unwrap();
        assert_eq!(
            again,
            MigrationReport {
                from: SCHEMA_VERSION,
                to: SCHEMA_VERSION
            }
        );
        assert!(!again.changed());
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let (store, _dir) = testing::store().await;
        store
            .write(|conn| Ok(conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?))
            .await
            .unwrap();
        let err = store.migrate().await.unwrap_err();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("upgrade abridge"));
    }

    #[tokio::test]
    async fn identity_migration_keeps_users_and_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::store::DbUrl {
            path: dir.path().join("v1.db"),
        };
        let store = Store::open(&url, 1, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        store
            .write(|conn| {
                let tx = conn.transaction()?;
                tx.execute_batch(MIGRATIONS[0])?;
                tx.execute_batch(
                    "INSERT INTO users (id, email, password_hash, role, created_at, updated_at)
                     VALUES (7, 'ops@example.com', 'h', 'viewer', 1, 1);
                     INSERT INTO api_keys (name, key_hash, prefix, owner_id, created_at)
                     VALUES ('k', x'00', 'sk-ab-x', 7, 1);",
                )?;
                tx.pragma_update(None, "user_version", 1)?;
                tx.commit()?;
                Ok(())
            })
            .await
            .unwrap();
        let report = store.migrate().await.unwrap();
        assert_eq!((report.from, report.to), (1, SCHEMA_VERSION));
        let (owner, version, role): (Option<i64>, i64, String) = store
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT k.owner_id, u.token_version, u.role
                     FROM api_keys k JOIN users u ON u.id = k.owner_id",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!((owner, version, role.as_str()), (Some(7), 0, "viewer"));
        let fk: i64 = store
            .write(|conn| Ok(conn.query_row("PRAGMA foreign_keys", [], |row| row.get(0))?))
            .await
            .unwrap();
        assert_eq!(fk, 1, "foreign keys are back on after migrating");
    }
}
