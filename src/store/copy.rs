//! Copying a single-node SQLite database into PostgreSQL
//! (`abridge migrate-store`), verified table by table.
//!
//! Columns are read from each engine's own catalogue, so a column added by
//! a later migration is copied without this file changing; a table this file
//! does not list is refused rather than left behind. Everything is written
//! in one PostgreSQL transaction: the rows (binary `COPY`), the identity
//! sequences moved past the copied ids, then a verification that reads every
//! table back and compares its row count and a SHA-256 over its rows (in id
//! order, each value in one canonical encoding) with the source's. Only a
//! copy that verifies is committed. It never writes to the source.

use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio_postgres::types::{ToSql, Type};
use tokio_rusqlite::rusqlite::types::Value;

use super::{Engine, Result, Store, StoreError};

/// Every table, parents before children (foreign keys).
pub const TABLES: &[&str] = &[
    "users",
    "api_keys",
    "providers",
    "request_logs",
    "audit_log",
];

/// Rows read from SQLite per round trip.
const PAGE: i64 = 5000;

/// What was copied into one table, and whether it checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    pub source_rows: u64,
    pub target_rows: u64,
    pub source_sha256: String,
    pub target_sha256: String,
}

impl TableReport {
    pub fn verified(&self) -> bool {
        self.source_rows == self.target_rows && self.source_sha256 == self.target_sha256
    }
}

/// A canonical encoding of values, the same whichever engine they came from.
#[derive(Default)]
struct Checksum {
    hash: Sha256,
    rows: u64,
}

impl Checksum {
    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.hash.update([0]),
            Value::Integer(i) => {
                self.hash.update([1]);
                self.hash.update(i.to_le_bytes());
            }
            Value::Real(f) => {
                self.hash.update([2]);
                self.hash.update(f.to_bits().to_le_bytes());
            }
            Value::Text(s) => self.bytes(3, s.as_bytes()),
            Value::Blob(b) => self.bytes(4, b),
        }
    }

    fn bytes(&mut self, tag: u8, bytes: &[u8]) {
        self.hash.update([tag]);
        self.hash.update((bytes.len() as u64).to_le_bytes());
        self.hash.update(bytes);
    }

    fn finish(self) -> (u64, String) {
        (self.rows, hex::encode(self.hash.finalize()))
    }
}

/// A PostgreSQL column's type, as far as the copy needs it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int8,
    Int4,
    Bool,
    Float8,
    Text,
    Bytea,
}

impl Kind {
    fn parse(table: &str, column: &str, data_type: &str) -> Result<Self> {
        Ok(match data_type {
            "bigint" => Kind::Int8,
            "integer" | "smallint" => Kind::Int4,
            "boolean" => Kind::Bool,
            "double precision" | "real" => Kind::Float8,
            "text" | "character varying" => Kind::Text,
            "bytea" => Kind::Bytea,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "{table}.{column}: cannot copy PostgreSQL type {other}"
                )));
            }
        })
    }

    fn pg_type(self) -> Type {
        match self {
            Kind::Int8 => Type::INT8,
            Kind::Int4 => Type::INT4,
            Kind::Bool => Type::BOOL,
            Kind::Float8 => Type::FLOAT8,
            Kind::Text => Type::TEXT,
            Kind::Bytea => Type::BYTEA,
        }
    }

    /// The SQLite value as this PostgreSQL type.
    fn convert(self, value: Value, at: &str) -> Result<Box<dyn ToSql + Send + Sync>> {
        let bad = |v: &Value| StoreError::Corrupt(format!("{at}: cannot store {v:?} as {self:?}"));
        Ok(match (self, value) {
            (Kind::Int8, Value::Null) => Box::new(None::<i64>),
            (Kind::Int4, Value::Null) => Box::new(None::<i32>),
            (Kind::Bool, Value::Null) => Box::new(None::<bool>),
            (Kind::Float8, Value::Null) => Box::new(None::<f64>),
            (Kind::Text, Value::Null) => Box::new(None::<String>),
            (Kind::Bytea, Value::Null) => Box::new(None::<Vec<u8>>),
            (Kind::Int8, Value::Integer(i)) => Box::new(i),
            (Kind::Int4, Value::Integer(i)) => {
                Box::new(i32::try_from(i).map_err(|_| bad(&Value::Integer(i)))?)
            }
            (Kind::Bool, Value::Integer(i @ (0 | 1))) => Box::new(i == 1),
            (Kind::Float8, Value::Real(f)) => Box::new(f),
            (Kind::Float8, Value::Integer(i)) => Box::new(i as f64),
            (Kind::Text, Value::Text(s)) => Box::new(s),
            (Kind::Bytea, Value::Blob(b)) => Box::new(b),
            (_, other) => return Err(bad(&other)),
        })
    }

    /// Column `i` of a PostgreSQL row, in the checksum's vocabulary.
    fn read(self, row: &tokio_postgres::Row, i: usize) -> Result<Value> {
        let value = match self {
            Kind::Int8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Integer),
            Kind::Int4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|n| Value::Integer(n.into())),
            Kind::Bool => row
                .try_get::<_, Option<bool>>(i)?
                .map(|b| Value::Integer(b.into())),
            Kind::Float8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Kind::Text => row.try_get::<_, Option<String>>(i)?.map(Value::Text),
            Kind::Bytea => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
        };
        Ok(value.unwrap_or(Value::Null))
    }
}

/// Copies every table of `source` (SQLite) into `target` (PostgreSQL).
/// Both must be migrated to the same schema version. A target holding any
/// row is refused unless `force`, which empties it first.
pub async fn sqlite_to_postgres(
    source: &Store,
    target: &Store,
    force: bool,
) -> Result<Vec<TableReport>> {
    let (Engine::Sqlite(sqlite), Engine::Postgres(pg)) = (&source.engine, &target.engine) else {
        return Err(StoreError::Conflict(
            "migrate-store copies a sqlite:// database into a postgres:// one".into(),
        ));
    };
    let (from, to) = (
        source.schema_version().await?,
        target.schema_version().await?,
    );
    if from != to {
        return Err(StoreError::Conflict(format!(
            "schema versions differ (source {from}, target {to})"
        )));
    }
    let tables: Vec<String> = sqlite
        .read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await?;
    if let Some(unknown) = tables.iter().find(|t| !TABLES.contains(&t.as_str())) {
        return Err(StoreError::Corrupt(format!(
            "the source has a table `{unknown}` that migrate-store does not know how to copy"
        )));
    }

    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    for table in TABLES {
        let has_rows: bool = tx
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
            .await?
            .get(0);
        if has_rows && !force {
            return Err(StoreError::Conflict(format!(
                "the target is not empty (table {table} has rows); use --force to replace its contents"
            )));
        }
    }
    if force {
        tx.batch_execute(&format!("TRUNCATE {} RESTART IDENTITY", TABLES.join(", ")))
            .await?;
    }

    let mut reports = Vec::new();
    for &table in TABLES {
        let columns: Vec<String> = sqlite
            .read(move |conn| {
                let mut stmt = conn.prepare(&format!(
                    "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
                ))?;
                let rows = stmt.query_map([], |row| row.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        let kinds = {
            let rows = tx
                .query(
                    "SELECT column_name, data_type FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = $1",
                    &[&table],
                )
                .await?;
            columns
                .iter()
                .map(|column| {
                    let row = rows
                        .iter()
                        .find(|r| r.get::<_, &str>(0) == column)
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "{table}.{column} has no column in PostgreSQL"
                            ))
                        })?;
                    Kind::parse(table, column, row.get(1))
                })
                .collect::<Result<Vec<Kind>>>()?
        };
        let list = columns.join(", ");

        // Copy, hashing the source rows on the way.
        let mut source_sum = Checksum::default();
        let sink = tx
            .copy_in(&format!("COPY {table} ({list}) FROM STDIN (FORMAT binary)"))
            .await?;
        let types: Vec<Type> = kinds.iter().map(|k| k.pg_type()).collect();
        let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        let mut after = i64::MIN;
        loop {
            let select =
                format!("SELECT id, {list} FROM {table} WHERE id > ?1 ORDER BY id LIMIT ?2");
            let width = columns.len();
            let page: Vec<(i64, Vec<Value>)> = sqlite
                .read(move |conn| {
                    let mut stmt = conn.prepare(&select)?;
                    let rows = stmt.query_map([after, PAGE], |row| {
                        let values = (1..=width)
                            .map(|i| row.get::<_, Value>(i))
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok((row.get::<_, i64>(0)?, values))
                    })?;
                    Ok(rows.collect::<Result<_, _>>()?)
                })
                .await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = *last;
            for (id, values) in page {
                let mut params = Vec::with_capacity(values.len());
                for ((value, kind), column) in values.into_iter().zip(&kinds).zip(&columns) {
                    source_sum.value(&value);
                    params.push(kind.convert(value, &format!("{table}.{column} (id {id})"))?);
                }
                source_sum.rows += 1;
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                writer.as_mut().write(&refs).await?;
            }
        }
        writer.finish().await?;
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id)) FROM {table}"
            ),
            &[],
        )
        .await?;

        // Read back what PostgreSQL now holds.
        let mut target_sum = Checksum::default();
        let rows = tx
            .query_raw(
                &format!("SELECT {list} FROM {table} ORDER BY id"),
                std::iter::empty::<i64>(),
            )
            .await?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.next().await {
            let row = row?;
            for (i, kind) in kinds.iter().enumerate() {
                target_sum.value(&kind.read(&row, i)?);
            }
            target_sum.rows += 1;
        }
        let (source_rows, source_sha256) = source_sum.finish();
        let (target_rows, target_sha256) = target_sum.finish();
        reports.push(TableReport {
            table,
            source_rows,
            target_rows,
            source_sha256,
            target_sha256,
        });
    }
    if let Some(bad) = reports.iter().find(|r| !r.verified()) {
        return Err(StoreError::Corrupt(format!(
            "table {} did not verify ({} rows read, {} written; nothing was committed)",
            bad.table, bad.source_rows, bad.target_rows
        )));
    }
    tx.commit().await?;
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Sealer;
    use crate::store::{AuditEntry, LogRecord, Role, testing};

    #[tokio::test]
    async fn every_table_the_schema_has_is_copied() {
        let test = testing::sqlite().await;
        let Engine::Sqlite(db) = &test.store.engine else {
            unreachable!()
        };
        let mut tables: Vec<String> = db
            .read(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )?;
                let rows = stmt.query_map([], |row| row.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        let mut known: Vec<&str> = TABLES.to_vec();
        known.sort_unstable();
        tables.sort_unstable();
        assert_eq!(tables, known);
    }

    /// A SQLite database with rows in every table.
    async fn filled() -> testing::TestStore {
        let test = testing::sqlite().await;
        let store = &test.store;
        let user = store
            .create_user("Ops@Example.com", "$argon2id$h", Role::Admin)
            .await
            .unwrap();
        let key = store
            .create_api_key("ci", Some(user.id), Some(42))
            .await
            .unwrap();
        store.create_api_key("other", None, None).await.unwrap();
        store.revoke_api_key("2").await.unwrap();
        store
            .touch_api_keys(vec![(key.record.id, 7)])
            .await
            .unwrap();
        let spec: crate::upstream::provider::ProviderSpec =
            serde_json::from_value(serde_json::json!({
                "name": "p", "base_url": "http://127.0.0.1:1/v1", "api_keys": ["sk-1"],
                "models": {"big": ["b"]}, "custom_headers": {"x-a": "1"}, "enabled": false
            }))
            .unwrap();
        store
            .upsert_provider(&spec, &Sealer::for_testing())
            .await
            .unwrap();
        let logs: Vec<LogRecord> = (0..12_000)
            .map(|i| LogRecord {
                created_at: 1_700_000_000_000 + i,
                api_key_id: (i % 2 == 0).then_some(key.record.id),
                provider: Some("p".into()),
                upstream_model: (i % 3 == 0).then(|| "m".to_string()),
                alias: format!("alias-{i}"),
                stream: i % 5 == 0,
                status: 200,
                latency_ms: i as u64,
                ttfb_ms: (i % 7 == 0).then_some(3),
                input_tokens: 1,
                output_tokens: 2,
                error_kind: (i % 11 == 0).then_some(std::borrow::Cow::Borrowed("timeout")),
                endpoint: if i % 13 == 0 {
                    crate::store::Endpoint::CountTokens
                } else {
                    crate::store::Endpoint::Messages
                },
                ..LogRecord::default()
            })
            .collect();
        store.insert_logs(std::sync::Arc::new(logs)).await.unwrap();
        store
            .audit(
                AuditEntry::new("cli", "key.create")
                    .target("ci")
                    .detail("é ✓"),
            )
            .await
            .unwrap();
        test
    }

    #[tokio::test]
    async fn a_filled_sqlite_database_is_copied_and_verified() {
        let source = filled().await;
        let Some(target) = testing::postgres().await else {
            return;
        };
        let reports = sqlite_to_postgres(&source.store, &target.store, false)
            .await
            .unwrap();
        let rows: Vec<(&str, u64)> = reports.iter().map(|r| (r.table, r.target_rows)).collect();
        assert_eq!(
            rows,
            [
                ("users", 1),
                ("api_keys", 2),
                ("providers", 1),
                ("request_logs", 12_000),
                ("audit_log", 1)
            ]
        );
        assert!(reports.iter().all(TableReport::verified), "{reports:?}");

        // The copy reads back through the store as the source does.
        let sealer = Sealer::for_testing();
        let (a, b) = (&source.store, &target.store);
        assert_eq!(
            a.list_api_keys().await.unwrap(),
            b.list_api_keys().await.unwrap()
        );
        assert_eq!(
            a.recent_logs(50).await.unwrap(),
            b.recent_logs(50).await.unwrap()
        );
        let (pa, pb) = (
            a.list_providers(&sealer).await.unwrap(),
            b.list_providers(&sealer).await.unwrap(),
        );
        assert_eq!(
            serde_json::to_value(&pa).unwrap(),
            serde_json::to_value(&pb).unwrap()
        );
        assert_eq!(pb[0].api_keys[0].expose(), "sk-1");
        assert!(
            b.find_user_by_email("ops@example.com")
                .await
                .unwrap()
                .is_some()
        );

        // Identities continue after the copied ids.
        let next = b.create_api_key("after", None, None).await.unwrap();
        assert_eq!(next.record.id, 3);

        // A second copy is refused, unless forced.
        let err = sqlite_to_postgres(a, b, false).await.unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        let again = sqlite_to_postgres(a, b, true).await.unwrap();
        assert_eq!(again, reports);
        assert_eq!(b.list_api_keys().await.unwrap().len(), 2);
    }

    #[test]
    fn checksums_see_every_value_and_its_kind() {
        let sum = |values: &[Value]| {
            let mut c = Checksum::default();
            values.iter().for_each(|v| c.value(v));
            c.finish().1
        };
        let base = sum(&[Value::Integer(1), Value::Text("a".into())]);
        assert_ne!(base, sum(&[Value::Integer(1), Value::Text("b".into())]));
        assert_ne!(base, sum(&[Value::Integer(1), Value::Blob(b"a".to_vec())]));
        assert_ne!(base, sum(&[Value::Integer(1), Value::Null]));
        assert_ne!(
            sum(&[Value::Text("ab".into()), Value::Text(String::new())]),
            sum(&[Value::Text("a".into()), Value::Text("b".into())])
        );
    }
}
