//! Numbered SQL migrations embedded in the binary, applied in one
//! transaction keyed on `PRAGMA user_version`.

use super::{Result, Store, StoreError};

/// The migrations, in order; migration N brings the schema to version N.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_request_log_endpoint.sql"),
    include_str!("migrations/0003_provider_fields.sql"),
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
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
            Ok(MigrationReport {
                from,
                to: SCHEMA_VERSION,
            })
        })
        .await
    }
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
}
