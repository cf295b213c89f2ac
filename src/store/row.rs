//! Reading a result row the same way on both engines, so each table family
//! decodes its rows in one function whichever engine they came from.

use tokio_rusqlite::rusqlite;

use super::Result;

/// A column value either engine can decode (`i64`, `bool`, `String`,
/// `Vec<u8>` and their `Option`s).
pub trait Value: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a> {}

impl<T> Value for T where T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a> {}

/// A row of either engine, read by column index.
pub trait Row {
    fn col<T: Value>(&self, i: usize) -> Result<T>;
}

impl Row for rusqlite::Row<'_> {
    fn col<T: Value>(&self, i: usize) -> Result<T> {
        Ok(self.get(i)?)
    }
}

impl Row for tokio_postgres::Row {
    fn col<T: Value>(&self, i: usize) -> Result<T> {
        Ok(self.try_get(i)?)
    }
}

/// Every row a SQLite query returns, decoded.
pub fn sqlite_all<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// A domain type read from one row of either engine.
pub trait Decode: Sized + Send + 'static {
    fn decode(row: &impl Row) -> Result<Self>;
}

impl super::Store {
    /// Every row of `sql`, a query without parameters (the same text on
    /// both engines), decoded.
    pub(super) async fn all<T: Decode>(&self, sql: String) -> Result<Vec<T>> {
        match &self.engine {
            super::Engine::Sqlite(db) => {
                db.read(move |conn| sqlite_all(conn, &sql, [], |row| T::decode(row)))
                    .await
            }
            super::Engine::Postgres(db) => db
                .client()
                .await?
                .query(&sql, &[])
                .await?
                .iter()
                .map(T::decode)
                .collect(),
        }
    }
}
