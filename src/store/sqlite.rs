//! The SQLite engine: one file in WAL mode through tokio-rusqlite.
//!
//! One writer connection and `DB_POOL_SIZE` read-only connections, each on
//! its own thread (tokio-rusqlite), so reads never queue behind writes. A
//! read that waits longer than `DB_POOL_TIMEOUT` for a reader fails with
//! [`StoreError::PoolTimeout`] instead of hanging. This file owns opening
//! and connection handling only; the SQL lives in the table-family files.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_rusqlite::{Connection, OpenFlags, rusqlite};

use super::{Result, StoreError};

/// Read-only connections handed out one request at a time.
struct Readers {
    conns: Vec<Connection>,
    free: Mutex<Vec<usize>>,
    permits: Semaphore,
    timeout: Duration,
}

/// A cheap-to-clone handle on one SQLite database.
#[derive(Clone)]
pub struct Sqlite {
    writer: Connection,
    readers: Arc<Readers>,
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

impl Sqlite {
    /// Opens (creating if needed) the database, in WAL mode. Does not migrate.
    pub async fn open(path: &Path, pool_size: usize, pool_timeout: Duration) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Corrupt(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let writer = Connection::open(path).await?;
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
                path,
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

    /// Reader connections (for `Debug`).
    pub fn readers(&self) -> usize {
        self.readers.conns.len()
    }

    /// Runs `f` on a free reader, waiting at most `DB_POOL_TIMEOUT` for one.
    pub async fn read<R, F>(&self, f: F) -> Result<R>
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
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut rusqlite::Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        Ok(self.writer.call(f).await?)
    }

    /// The journal mode of the open database (`wal` once opened).
    pub async fn journal_mode(&self) -> Result<String> {
        self.read(|conn| Ok(conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?))
            .await
    }
}

impl From<tokio_rusqlite::Error<StoreError>> for StoreError {
    fn from(e: tokio_rusqlite::Error<StoreError>) -> Self {
        match e {
            tokio_rusqlite::Error::Error(e) => e,
            _ => StoreError::Closed,
        }
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
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("t.db"), 1, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(db.journal_mode().await.unwrap(), "wal");
    }

    #[tokio::test]
    #[allow(clippy::disallowed_methods)] // a test task, not background work
    async fn waiting_for_a_reader_times_out_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("t.db"), 1, Duration::from_millis(50))
            .await
            .unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let busy = db.clone();
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
        let ping = || db.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?));
        let err = ping().await.unwrap_err();
        assert!(matches!(err, StoreError::PoolTimeout(_)), "{err}");
        assert!(err.to_string().contains("DB_POOL_TIMEOUT"));
        release_tx.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        ping().await.unwrap();
    }
}
