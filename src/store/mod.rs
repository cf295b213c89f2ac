//! The store: one interface over two engines, SQLite (embedded, the
//! default) and PostgreSQL (shared by several replicas).
//!
//! [`Store`] wraps an enum of the two engines rather than a trait object:
//! calls dispatch statically, each table-family file (users, api_keys,
//! providers, request_logs, audit) holds both engines' SQL side by side in
//! one `match`, so a table cannot gain a column on one engine and not the
//! other without the difference being in plain sight, and no method needs
//! boxing to be async. [`sqlite`] and [`postgres`] own connections only;
//! `row` lets each table family decode a row of either engine in one
//! function; `migrations` keeps the twin migration lists; [`log_writer`]
//! batches request logs off the request path; [`retention`] prunes old ones;
//! [`copy`] moves a SQLite database into PostgreSQL. The table-family files
//! hold the only SQL in the crate; they take and return domain types and
//! hold no business rules. Times are UTC Unix milliseconds (`BIGINT`) on
//! both engines.

mod api_keys;
mod audit;
pub mod copy;
pub mod log_writer;
mod migrations;
pub mod postgres;
mod providers;
mod request_logs;
pub mod retention;
mod row;
pub mod sqlite;
mod users;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use api_keys::{ApiKey, NewApiKey};
pub use audit::{AuditEntry, redact};
pub use log_writer::LogWriter;
pub use migrations::{MigrationReport, SCHEMA_VERSION};
pub use postgres::PgUrl;
pub use request_logs::{Endpoint, LogRecord};
pub use users::{Role, User, UserChange};

use postgres::Postgres;
use sqlite::Sqlite;
use tokio_rusqlite::rusqlite;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database connection became free within {0:?} (DB_POOL_TIMEOUT)")]
    PoolTimeout(Duration),
    #[error("the database connection is closed")]
    Closed,
    /// The database server cannot be reached (PostgreSQL down, network cut).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error(
        "database schema version {found} is newer than this abridge understands ({known}); upgrade abridge"
    )]
    TooNew { found: i64, known: i64 },
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {}", postgres::error_text(.0))]
    Postgres(tokio_postgres::Error),
}

impl StoreError {
    /// The database could not be reached or had no free connection: worth
    /// answering `503` and trying again, unlike a bug or bad data.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::PoolTimeout(_) | StoreError::Closed | StoreError::Unavailable(_)
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A parsed `ABRIDGE_DATABASE` URL.
#[derive(Debug, Clone)]
pub enum DbUrl {
    /// `sqlite://PATH` (or `sqlite:PATH`).
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`.
    Postgres(Box<PgUrl>),
}

/// A database URL fit for messages and logs: a password in it is masked.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let host_start = rest.find(['/', '?']).unwrap_or(rest.len());
    let masked = match rest[..host_start].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{}{user}:*****{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_string(),
    };
    // `?password=...` is the other place libpq URLs carry one.
    match masked.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some(("password", _)) => "password=*****".to_string(),
                    _ => p.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => masked,
    }
}

impl DbUrl {
    pub fn parse(url: &str) -> std::result::Result<Self, String> {
        let shown = redact_url(url);
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return PgUrl::parse(url)
                .map(|url| DbUrl::Postgres(Box::new(url)))
                .map_err(|e| format!("`{shown}`: {e}"));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                format!("`{shown}` is not a database URL; expected sqlite://PATH or postgres://...")
            })?;
        if path.is_empty() {
            return Err(format!("`{shown}` names no file; expected sqlite://PATH"));
        }
        Ok(DbUrl::Sqlite(PathBuf::from(path)))
    }
}

/// Current time as UTC Unix milliseconds, the one time format in the store.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The two engines; the table-family files `match` on it.
#[derive(Clone)]
enum Engine {
    Sqlite(Sqlite),
    Postgres(Postgres),
}

/// A cheap-to-clone handle on the database, whichever engine holds it.
#[derive(Clone)]
pub struct Store {
    engine: Engine,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.engine {
            Engine::Sqlite(db) => f
                .debug_struct("Store::Sqlite")
                .field("readers", &db.readers())
                .finish_non_exhaustive(),
            Engine::Postgres(db) => f
                .debug_struct("Store::Postgres")
                .field("target", &db.target())
                .field("connections", &db.size())
                .finish_non_exhaustive(),
        }
    }
}

impl Store {
    /// Opens the database: creates a SQLite file in WAL mode, or connects to
    /// PostgreSQL (failing at once when it cannot be reached). Does not migrate.
    pub async fn open(url: &DbUrl, pool_size: usize, pool_timeout: Duration) -> Result<Self> {
        let engine = match url {
            DbUrl::Sqlite(path) => {
                Engine::Sqlite(Sqlite::open(path, pool_size, pool_timeout).await?)
            }
            DbUrl::Postgres(url) => {
                Engine::Postgres(Postgres::open(url, pool_size, pool_timeout).await?)
            }
        };
        Ok(Self { engine })
    }

    /// `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        match &self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// Readiness check: a trivial query.
    pub async fn ping(&self) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(db) => {
                db.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
                    .await
            }
            Engine::Postgres(db) => {
                db.client().await?.query_one("SELECT 1", &[]).await?;
                Ok(())
            }
        }
    }

    /// One line about the engine for `init-db`: SQLite's journal mode or
    /// PostgreSQL's version.
    pub async fn describe(&self) -> Result<String> {
        match &self.engine {
            Engine::Sqlite(db) => Ok(format!("journal mode: {}", db.journal_mode().await?)),
            Engine::Postgres(db) => Ok(format!("server: {}", db.server_version().await?)),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Stores for tests: every store test runs on SQLite and, when
    //! `DATABASE_URL` points at a PostgreSQL server, on PostgreSQL too, each
    //! in a fresh database (a temporary file, or a schema of its own that is
    //! dropped afterwards), so tests run in parallel.

    use super::*;

    /// A store on a fresh database; the database goes away with it.
    pub struct TestStore {
        pub store: Store,
        /// How to open the same database again (a second replica).
        pub url: DbUrl,
        /// Deletes the database when the test is done (a directory or a schema).
        _guard: Box<dyn Send + Sync>,
    }

    /// Drops a test schema, on a thread of its own because `Drop` cannot
    /// await. The test's own connections are ended first (they carry the
    /// schema's name as `application_name`): the test runtime is blocked
    /// while this runs, so they could not finish an open transaction.
    struct DropSchema {
        server: PgUrl,
        name: String,
    }

    impl Drop for DropSchema {
        #[allow(clippy::disallowed_methods)] // test clean-up
        fn drop(&mut self) {
            let server = self.server.clone();
            let name = self.name.clone();
            let done = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let pg = Postgres::open(&server, 1, Duration::from_secs(10)).await?;
                    let client = pg.client().await?;
                    client
                        .execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                             WHERE application_name = $1",
                            &[&name],
                        )
                        .await?;
                    client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await?;
                    Ok::<_, StoreError>(())
                })
            });
            if let Ok(Err(e)) = done.join() {
                eprintln!("could not drop test schema {}: {e}", self.name);
            }
        }
    }

    /// A migrated SQLite store.
    pub async fn sqlite() -> TestStore {
        let test = sqlite_fresh().await;
        test.store.migrate().await.unwrap();
        test
    }

    /// An empty SQLite database, not migrated.
    pub async fn sqlite_fresh() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let url = DbUrl::Sqlite(dir.path().join("test.db"));
        let store = Store::open(&url, 2, Duration::from_secs(5)).await.unwrap();
        TestStore {
            store,
            url,
            _guard: Box::new(dir),
        }
    }

    /// The PostgreSQL server named by `DATABASE_URL`, or `None` with a
    /// notice; under `ABRIDGE_REQUIRE_SERVICES=1` a missing server fails.
    pub fn postgres_server() -> Option<PgUrl> {
        let required = std::env::var("ABRIDGE_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(PgUrl::parse(&url).unwrap()),
            _ if required => panic!("ABRIDGE_REQUIRE_SERVICES=1 but DATABASE_URL is not set"),
            _ => {
                eprintln!("skipped on PostgreSQL: DATABASE_URL is not set");
                None
            }
        }
    }

    /// An empty schema of its own on the `DATABASE_URL` server, not migrated.
    pub async fn postgres_fresh() -> Option<TestStore> {
        let server = postgres_server()?;
        let required = std::env::var("ABRIDGE_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        let admin = match Postgres::open(&server, 1, Duration::from_secs(10)).await {
            Ok(pg) => pg,
            Err(e) if required => panic!("ABRIDGE_REQUIRE_SERVICES=1 but {e}"),
            Err(e) => {
                eprintln!("skipped on PostgreSQL: {e}");
                return None;
            }
        };
        let name = format!("abridge_test_{:016x}", rand::random::<u64>());
        admin
            .client()
            .await
            .unwrap()
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        let guard = DropSchema {
            server: server.clone(),
            name: name.clone(),
        };
        let url = DbUrl::Postgres(Box::new(server.with_schema(&name)));
        let store = Store::open(&url, 4, Duration::from_secs(10)).await.unwrap();
        Some(TestStore {
            store,
            url,
            _guard: Box::new(guard),
        })
    }

    /// A migrated PostgreSQL store, when a server is available.
    pub async fn postgres() -> Option<TestStore> {
        let test = postgres_fresh().await?;
        test.store.migrate().await.unwrap();
        Some(test)
    }

    /// Runs `sqlite` or `postgres` (statements separated by `;`), whichever
    /// suits the store's engine: for tests that reach past the interface.
    pub async fn execute(store: &Store, sqlite: &str, postgres: &str) {
        match &store.engine {
            Engine::Sqlite(db) => {
                let sql = sqlite.to_string();
                db.write(move |conn| Ok(conn.execute_batch(&sql)?))
                    .await
                    .unwrap()
            }
            Engine::Postgres(db) => db
                .client()
                .await
                .unwrap()
                .batch_execute(postgres)
                .await
                .unwrap(),
        }
    }

    /// A migrated store on each engine available: SQLite, then PostgreSQL.
    pub async fn each() -> Vec<TestStore> {
        let mut all = vec![sqlite().await];
        all.extend(postgres().await);
        all
    }

    /// An unmigrated store on each engine available.
    pub async fn each_fresh() -> Vec<TestStore> {
        let mut all = vec![sqlite_fresh().await];
        all.extend(postgres_fresh().await);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_explain() {
        let DbUrl::Sqlite(path) = DbUrl::parse("sqlite://./abridge.db").unwrap() else {
            panic!("not sqlite")
        };
        assert_eq!(path, PathBuf::from("./abridge.db"));
        assert!(
            matches!(DbUrl::parse("sqlite:x.db"), Ok(DbUrl::Sqlite(p)) if p.as_os_str() == "x.db")
        );
        let DbUrl::Postgres(pg) = DbUrl::parse("postgres://app:pw@db:5433/gw").unwrap() else {
            panic!("not postgres")
        };
        assert_eq!(pg.target(), "db:5433/gw");
        assert!(matches!(
            DbUrl::parse("postgresql://localhost/x"),
            Ok(DbUrl::Postgres(_))
        ));
        assert!(DbUrl::parse("mysql://x").is_err());
        assert!(DbUrl::parse("sqlite://").is_err());
        let err = DbUrl::parse("postgres://app:hunter2@db:5432/x?sslmode=maybe").unwrap_err();
        assert!(
            !err.contains("hunter2") && err.contains("app:*****@db"),
            "{err}"
        );
        assert_eq!(redact_url("sqlite://./a.db"), "sqlite://./a.db");
        assert_eq!(
            redact_url("postgres://db/x?user=a&password=hunter2"),
            "postgres://db/x?user=a&password=*****"
        );
    }

    #[tokio::test]
    async fn every_engine_answers_a_ping() {
        for test in testing::each().await {
            test.store.ping().await.unwrap();
            let detail = test.store.describe().await.unwrap();
            match test.store.engine() {
                "sqlite" => assert_eq!(detail, "journal mode: wal"),
                _ => assert!(detail.starts_with("server: PostgreSQL"), "{detail}"),
            }
        }
    }
}
