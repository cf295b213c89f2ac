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
//!
//! On SQLite, foreign keys are off while migrations run (SQLite ignores the
//! pragma inside a transaction, and rebuilding a referenced table with them
//! on would fire `ON DELETE` actions); `foreign_key_check` must come back
//! empty before the transaction commits. PostgreSQL alters tables in place.

use super::postgres::Postgres;
use super::sqlite::Sqlite;
use super::{Engine, Result, Store, StoreError};
use tokio_rusqlite::rusqlite;

/// SQLite's migrations, in order; migration N brings the schema to version N.
const SQLITE: &[&str] = &[
    include_str!("migrations/sqlite/0001_initial.sql"),
    include_str!("migrations/sqlite/0002_request_log_endpoint.sql"),
    include_str!("migrations/sqlite/0003_provider_fields.sql"),
    include_str!("migrations/sqlite/0004_identity.sql"),
    include_str!("migrations/sqlite/0005_provider_reasoning_efforts.sql"),
    include_str!("migrations/sqlite/0006_request_log_indexes.sql"),
];

/// PostgreSQL's twins of [`SQLITE`], one for one.
const POSTGRES: &[&str] = &[
    include_str!("migrations/postgres/0001_initial.sql"),
    include_str!("migrations/postgres/0002_request_log_endpoint.sql"),
    include_str!("migrations/postgres/0003_provider_fields.sql"),
    include_str!("migrations/postgres/0004_identity.sql"),
    include_str!("migrations/postgres/0005_provider_reasoning_efforts.sql"),
    include_str!("migrations/postgres/0006_request_log_indexes.sql"),
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
        conn.pragma_update(None, "foreign_keys", false)?;
        let result = migrate_sqlite_in_transaction(conn);
        conn.pragma_update(None, "foreign_keys", true)?;
        result
    })
    .await
}

fn migrate_sqlite_in_transaction(conn: &mut rusqlite::Connection) -> Result<MigrationReport> {
    // Take the write lock before reading the version: a deferred
    // transaction that upgrades later fails at once if another process
    // migrated in between.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let from: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    check_version(from)?;
    for sql in &SQLITE[from as usize..] {
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
    use crate::store::{Role, testing};

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

    #[tokio::test]
    async fn identity_migration_keeps_users_and_their_keys() {
        for test in testing::each_fresh().await {
            let seed = "INSERT INTO users (id, email, password_hash, role, created_at, updated_at)
                        VALUES (7, 'ops@example.com', 'h', 'viewer', 1, 1);
                        INSERT INTO api_keys (name, key_hash, prefix, owner_id, created_at)
                        VALUES ('k', x'00', 'sk-ab-x', 7, 1);";
            testing::execute(
                &test.store,
                &format!("{} {seed} PRAGMA user_version = 1;", SQLITE[0]),
                &format!(
                    "{} {} CREATE TABLE abridge_schema (version BIGINT NOT NULL);
                     INSERT INTO abridge_schema VALUES (1);",
                    POSTGRES[0],
                    seed.replace("x'00'", "'\\x00'")
                ),
            )
            .await;
            let report = test.store.migrate().await.unwrap();
            assert_eq!((report.from, report.to), (1, SCHEMA_VERSION));
            let keys = test.store.list_api_keys().await.unwrap();
            assert_eq!(keys[0].owner_id, Some(7));
            let user = test.store.user(7).await.unwrap();
            assert_eq!((user.token_version, user.role), (0, Role::Viewer));
            if let Engine::Sqlite(db) = &test.store.engine {
                let fk: i64 = db
                    .write(|conn| Ok(conn.query_row("PRAGMA foreign_keys", [], |row| row.get(0))?))
                    .await
                    .unwrap();
                assert_eq!(fk, 1, "foreign keys are back on after migrating");
            }
        }
    }
}
