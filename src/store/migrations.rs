//! Numbered SQL migrations embedded in the binary, one list per engine,
//! each applied in one transaction.
//!
//! Migration N exists for both engines and brings either to schema version
//! N, so a version number means the same tables everywhere (and
//! `migrate-store` can copy between them). SQLite keeps the version in
//! `PRAGMA user_version`; PostgreSQL in the one-row table `abridge_schema`,
//! read and written under a transaction-scoped advisory lock, so replicas
//! starting at once on a fresh database migrate it once: the others wait,
//! then find it up to date.

use super::postgres::Postgres;
use super::sqlite::Sqlite;
use super::{Engine, Result, Store, StoreError};
use tokio_rusqlite::rusqlite;

/// SQLite's migrations, in order; migration N brings the schema to version N.
const SQLITE: &[&str] = &[
    include_str!("migrations/sqlite/0001_initial.sql"),
    include_str!("migrations/sqlite/0002_request_log_endpoint.sql"),
    include_str!("migrations/sqlite/0003_request_log_indexes.sql"),
];

/// PostgreSQL's twins of [`SQLITE`], one for one.
const POSTGRES: &[&str] = &[
    include_str!("migrations/postgres/0001_initial.sql"),
    include_str!("migrations/postgres/0002_request_log_endpoint.sql"),
    include_str!("migrations/postgres/0003_request_log_indexes.sql"),
];

const _: () = assert!(
    SQLITE.len() == POSTGRES.len(),
    "every migration needs its twin on the other engine"
);

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = SQLITE.len() as i64;

/// Key of the advisory lock held while PostgreSQL is migrated ("abridge").
const MIGRATION_LOCK: i64 = 0x61_6272_6964_6765;

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

fn check_version(from: i64) -> Result<()> {
    if from > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: from,
            known: SCHEMA_VERSION,
        });
    }
    Ok(())
}

impl Store {
    /// Brings the schema up to date; harmless when it already is. A database
    /// written by a newer abridge is refused rather than guessed at.
    pub async fn migrate(&self) -> Result<MigrationReport> {
        match &self.engine {
            Engine::Sqlite(db) => migrate_sqlite(db).await,
            Engine::Postgres(db) => migrate_postgres(db).await,
        }
    }

    /// The schema version recorded in the database (0 when never migrated).
    pub async fn schema_version(&self) -> Result<i64> {
        match &self.engine {
            Engine::Sqlite(db) => {
                db.read(|conn| Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?))
                    .await
            }
            Engine::Postgres(db) => {
                let client = db.client().await?;
                let exists: bool = client
                    .query_one("SELECT to_regclass('abridge_schema') IS NOT NULL", &[])
                    .await?
                    .get(0);
                if !exists {
                    return Ok(0);
                }
                Ok(client
                    .query_one("SELECT COALESCE(MAX(version), 0) FROM abridge_schema", &[])
                    .await?
                    .get(0))
            }
        }
    }
}

async fn migrate_sqlite(db: &Sqlite) -> Result<MigrationReport> {
    db.write(|conn| {
        // Take the write lock before reading the version: a deferred
        // transaction that upgrades later fails at once if another process
        // migrated in between.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let from: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        check_version(from)?;
        for sql in &SQLITE[from as usize..] {
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

async fn migrate_postgres(db: &Postgres) -> Result<MigrationReport> {
    let mut client = db.client().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS abridge_schema (version BIGINT NOT NULL)")
        .await?;
    let from: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM abridge_schema", &[])
        .await?
        .get(0);
    check_version(from)?;
    for sql in &POSTGRES[from as usize..] {
        tx.batch_execute(sql).await?;
    }
    tx.execute("DELETE FROM abridge_schema", &[]).await?;
    tx.execute(
        "INSERT INTO abridge_schema (version) VALUES ($1)",
        &[&SCHEMA_VERSION],
    )
    .await?;
    tx.commit().await?;
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
        for test in testing::each().await {
            let again = test.store.migrate().await.unwrap();
            assert_eq!(
                again,
                MigrationReport {
                    from: SCHEMA_VERSION,
                    to: SCHEMA_VERSION
                },
                "{}",
                test.store.engine()
            );
            assert!(!again.changed());
            assert_eq!(test.store.schema_version().await.unwrap(), SCHEMA_VERSION);
        }
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        for test in testing::each().await {
            match &test.store.engine {
                Engine::Sqlite(db) => db
                    .write(|conn| {
                        Ok(conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?)
                    })
                    .await
                    .unwrap(),
                Engine::Postgres(db) => {
                    db.client()
                        .await
                        .unwrap()
                        .execute("UPDATE abridge_schema SET version = version + 1", &[])
                        .await
                        .unwrap();
                }
            }
            let err = test.store.migrate().await.unwrap_err();
            assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
            assert!(err.to_string().contains("upgrade abridge"));
        }
    }

    #[tokio::test]
    async fn replicas_starting_at_once_migrate_once() {
        for test in testing::each_fresh().await {
            let second = Store::open(&test.url, 2, std::time::Duration::from_secs(10))
                .await
                .unwrap();
            let (a, b) = tokio::join!(test.store.migrate(), second.migrate());
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(
                [a.changed(), b.changed()].iter().filter(|c| **c).count(),
                1,
                "{}: {a:?} {b:?}",
                test.store.engine()
            );
            assert_eq!(second.schema_version().await.unwrap(), SCHEMA_VERSION);
        }
    }
}
