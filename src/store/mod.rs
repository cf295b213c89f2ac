//! The store: SQLite in WAL mode through tokio-rusqlite.
//!
//! One writer connection and `DB_POOL_SIZE` read-only connections, each on
//! its own thread (tokio-rusqlite), so reads never queue behind writes. A
//! request that waits longer than `DB_POOL_TIMEOUT` for a reader fails with
//! [`StoreError::PoolTimeout`] instead of hanging. The files below hold the
//! only SQL in the crate, one file per table family; they take and return
//! domain types and hold no business rules.

mod api_keys;
mod audit;
pub mod log_writer;
mod migrations;
mod providers;
mod request_logs;
mod users;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio_rusqlite::{Connection, OpenFlags, rusqlite};

pub use api_keys::{ApiKey, NewApiKey};
pub use audit::{AuditEntry, redact};
pub use log_writer::LogWriter;
pub use migrations::{MigrationReport, SCHEMA_VERSION};
pub use request_logs::{Endpoint, LogRecord};
pub use users::{Role, User, UserChange};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database connection became free within {0:?} (DB_POOL_TIMEOUT)")]
    PoolTimeout(Duration),
    #[error("the database connection is closed")]
    Closed,
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
}

impl From<tokio_rusqlite::Error<StoreError>> for StoreError {
    fn from(e: tokio_rusqlite::Error<StoreError>) -> Self {
        match e {
            tokio_rusqlite::Error::Error(e) => e,
            _ => StoreError::Closed,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A parsed `ABRIDGE_DATABASE` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbUrl {
    pub path: PathBuf,
}

/// A database URL fit for messages and logs: a password in it is masked.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let host_start = rest.find('/').unwrap_or(rest.len());
    match rest[..host_start].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{}{user}:*****{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_string(),
    }
}

impl DbUrl {
    pub fn parse(url: &str) -> std::result::Result<Self, String> {
        let shown = redact_url(url);
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                if url.starts_with("postgres") {
                    format!(
                        "`{shown}`: PostgreSQL is not supported by this version; use sqlite://PATH"
                    )
                } else {
                    format!("`{shown}` is not a database URL; expected sqlite://PATH")
                }
            })?;
        if path.is_empty() {
            return Err(format!("`{shown}` names no file; expected sqlite://PATH"));
        }
        Ok(Self {
            path: PathBuf::from(path),
        })
    }
}

/// Current time as UTC Unix milliseconds, the one time format in the store.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Read-only connections handed out one request at a time.
struct Readers {
    conns: Vec<Connection>,
    free: Mutex<Vec<usize>>,
    permits: Semaphore,
    timeout: Duration,
}

/// A cheap-to-clone handle on the database.
#[derive(Clone)]
pub struct Store {
    writer: Connection,
    readers: Arc<Readers>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("readers", &self.readers.conns.len())
            .finish_non_exhaustive()
    }
}

/// Page cache of the writer: request-log inserts touch the table's tail and
/// its index, so a few MB keep them in memory without growing RSS with the log.
const WRITER_CACHE_KIB: i64 = 8 * 1024;
/// Page cache of each reader: readers serve small tables (keys, providers, users).
const READER_CACHE_KIB: i64 = 1024;

fn configure(conn: &mut rusqlite::Connection, cache_kib: i64) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{cache_kib};"
    ))
}

impl Store {
    /// Opens (creating if needed) the database, in WAL mode. Does not migrate.
    pub async fn open(url: &DbUrl, pool_size: usize, pool_timeout: Duration) -> Result<Self> {
        if let Some(dir) = url.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Corrupt(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let writer = Connection::open(&url.path).await?;
        writer
            .call(|conn| -> Result<()> {
                let mode: String =
                    conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(StoreError::Corrupt(format!(
                        "could not switch to WAL mode (got {mode})"
                    )));
                }
                configure(conn, WRITER_CACHE_KIB)?;
                Ok(())
            })
            .await?;
        let mut conns = Vec::with_capacity(pool_size);
        for _ in 0..pool_size {
            let reader = Connection::open_with_flags(
                &url.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .await?;
            reader
                .call(|conn| -> Result<()> { Ok(configure(conn, READER_CACHE_KIB)?) })
                .await?;
            conns.push(reader);
        }
        let readers = Readers {
            free: Mutex::new((0..conns.len()).collect()),
            permits: Semaphore::new(conns.len()),
            conns,
            timeout: pool_timeout,
        };
        Ok(Self {
            writer,
            readers: Arc::new(readers),
        })
    }

    /// Runs `f` on a free reader, waiting at most `DB_POOL_TIMEOUT` for one.
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let readers = &self.readers;
        let _permit = tokio::time::timeout(readers.timeout, readers.permits.acquire())
            .await
            .map_err(|_| StoreError::PoolTimeout(readers.timeout))?
            .map_err(|_| StoreError::Closed)?;
        let slot = Slot::take(readers).ok_or(StoreError::Closed)?;
        Ok(readers.conns[slot.index].call(move |conn| f(conn)).await?)
    }

    /// Runs `f` on the one writer connection.
    async fn write<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut rusqlite::Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        Ok(self.writer.call(f).await?)
    }

    /// Readiness check: a trivial query on a reader.
    pub async fn ping(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    /// The journal mode of the open database (`wal` once opened).
    pub async fn journal_mode(&self) -> Result<String> {
        self.read(|conn| Ok(conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?))
            .await
    }
}

/// A reader taken from the free list; returned on drop, so a cancelled
/// request (client gone) cannot leak it.
struct Slot<'a> {
    readers: &'a Readers,
    index: usize,
}

impl<'a> Slot<'a> {
    fn take(readers: &'a Readers) -> Option<Self> {
        let index = lock(&readers.free).pop()?;
        Some(Self { readers, index })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        lock(&self.readers.free).push(self.index);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A migrated store in a temporary directory that lives as long as the guard.
    pub async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = DbUrl {
            path: dir.path().join("test.db"),
        };
        let store = Store::open(&url, 2, Duration::from_secs(5)).await.unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_explain() {
        assert_eq!(
            DbUrl::parse("sqlite://./abridge.db").unwrap().path,
            PathBuf::from("./abridge.db")
        );
        assert_eq!(
            DbUrl::parse("sqlite:x.db").unwrap().path,
            PathBuf::from("x.db")
        );
        assert!(
            DbUrl::parse("postgres://localhost/x")
                .unwrap_err()
                .contains("PostgreSQL")
        );
        assert!(DbUrl::parse("mysql://x").is_err());
        assert!(DbUrl::parse("sqlite://").is_err());
        let err = DbUrl::parse("postgres://app:hunter2@db:5432/x").unwrap_err();
        assert!(
            !err.contains("hunter2") && err.contains("app:*****@db"),
            "{err}"
        );
        assert_eq!(redact_url("sqlite://./a.db"), "sqlite://./a.db");
    }

    #[tokio::test]
    async fn opens_in_wal_mode() {
        let (store, _dir) = testing::store().await;
        assert_eq!(store.journal_mode().await.unwrap(), "wal");
        store.ping().await.unwrap();
    }

    #[tokio::test]
    #[allow(clippy::disallowed_methods)] // a test task, not background work
    async fn waiting_for_a_reader_times_out_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let url = DbUrl {
            path: dir.path().join("t.db"),
        };
        let store = Store::open(&url, 1, Duration::from_millis(50))
            .await
            .unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let busy = store.clone();
        let blocker = tokio::spawn(async move {
            busy.read(move |_| {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
                Ok(())
            })
            .await
        });
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .unwrap()
            .unwrap();
        let err = store.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::PoolTimeout(_)), "{err}");
        assert!(err.to_string().contains("DB_POOL_TIMEOUT"));
        release_tx.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        store.ping().await.unwrap();
    }
}
