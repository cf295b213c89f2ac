//! Request logs: one row per `/v1` request, written in batches.

use std::borrow::Cow;
use std::sync::Arc;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_rusqlite::rusqlite::params;

use super::row::{Decode, Row};
use super::{Engine, Result, Store};

/// The `/v1` endpoint a request went to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Endpoint {
    #[default]
    Messages,
    CountTokens,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            "count_tokens" => Endpoint::CountTokens,
            _ => Endpoint::Messages,
        }
    }
}

/// What one request cost and how it went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRecord {
    pub created_at: i64,
    pub endpoint: Endpoint,
    pub api_key_id: Option<i64>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    /// The model name the client asked for.
    pub alias: String,
    pub stream: bool,
    pub status: u16,
    pub latency_ms: u64,
    pub ttfb_ms: Option<u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    /// A low-cardinality label (`timeout`, `upstream_5xx`, ...), `None` on success.
    pub error_kind: Option<Cow<'static, str>>,
}

/// The columns `insert_logs` writes, in order.
const INSERT_COLUMNS: &str = "created_at, api_key_id, provider, upstream_model, alias, stream,
    status, latency_ms, ttfb_ms, input_tokens, output_tokens, cache_read_tokens,
    cache_creation_tokens, error_kind, endpoint";

/// PostgreSQL types of [`INSERT_COLUMNS`], for `COPY ... (FORMAT binary)`.
const COPY_TYPES: &[Type] = &[
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
];

const SELECT_RECENT: &str =
    "SELECT created_at, api_key_id, provider, upstream_model, alias, stream,
        status, latency_ms, ttfb_ms, input_tokens, output_tokens, cache_read_tokens,
        cache_creation_tokens, error_kind, endpoint
    FROM request_logs ORDER BY id DESC LIMIT ";

impl Decode for LogRecord {
    fn decode(row: &impl Row) -> Result<Self> {
        let count = |i: usize| row.col::<i64>(i).map(|n| n as u64);
        Ok(LogRecord {
            created_at: row.col(0)?,
            api_key_id: row.col(1)?,
            provider: row.col(2)?,
            upstream_model: row.col(3)?,
            alias: row.col(4)?,
            stream: row.col(5)?,
            status: row.col::<i64>(6)? as u16,
            latency_ms: count(7)?,
            ttfb_ms: row.col::<Option<i64>>(8)?.map(|t| t as u64),
            input_tokens: count(9)?,
            output_tokens: count(10)?,
            cache_read_tokens: count(11)?,
            cache_creation_tokens: count(12)?,
            error_kind: row.col::<Option<String>>(13)?.map(Cow::Owned),
            endpoint: Endpoint::parse(&row.col::<String>(14)?),
        })
    }
}

impl Store {
    /// Inserts a batch of log records at once: one transaction on SQLite,
    /// one binary `COPY` on PostgreSQL (the cheapest bulk path it has). The
    /// batch is shared so that a failed write can be retried without copying it.
    pub async fn insert_logs(&self, batch: Arc<Vec<LogRecord>>) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(db) => {
                db.write(move |conn| {
                    let tx = conn.transaction()?;
                    {
                        let mut stmt = tx.prepare_cached(&format!(
                            "INSERT INTO request_logs ({INSERT_COLUMNS})
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                        ))?;
                        for r in batch.iter() {
                            stmt.execute(params![
                                r.created_at,
                                r.api_key_id,
                                r.provider,
                                r.upstream_model,
                                r.alias,
                                r.stream,
                                r.status,
                                r.latency_ms as i64,
                                r.ttfb_ms.map(|t| t as i64),
                                r.input_tokens as i64,
                                r.output_tokens as i64,
                                r.cache_read_tokens as i64,
                                r.cache_creation_tokens as i64,
                                r.error_kind,
                                r.endpoint.as_str(),
                            ])?;
                        }
                    }
                    tx.commit()?;
                    Ok(())
                })
                .await
            }
            Engine::Postgres(db) => {
                let client = db.client().await?;
                let sink = client
                    .copy_in(&format!(
                        "COPY request_logs ({INSERT_COLUMNS}) FROM STDIN (FORMAT binary)"
                    ))
                    .await?;
                let writer = BinaryCopyInWriter::new(sink, COPY_TYPES);
                let mut writer = std::pin::pin!(writer);
                for r in batch.iter() {
                    let status = i64::from(r.status);
                    let latency = r.latency_ms as i64;
                    let ttfb = r.ttfb_ms.map(|t| t as i64);
                    let input = r.input_tokens as i64;
                    let output = r.output_tokens as i64;
                    let cache_read = r.cache_read_tokens as i64;
                    let cache_creation = r.cache_creation_tokens as i64;
                    let kind = r.error_kind.as_deref();
                    let endpoint = r.endpoint.as_str();
                    writer
                        .as_mut()
                        .write(&[
                            &r.created_at,
                            &r.api_key_id,
                            &r.provider,
                            &r.upstream_model,
                            &r.alias,
                            &r.stream,
                            &status,
                            &latency,
                            &ttfb,
                            &input,
                            &output,
                            &cache_read,
                            &cache_creation,
                            &kind,
                            &endpoint,
                        ])
                        .await?;
                }
                writer.finish().await?;
                Ok(())
            }
        }
    }

    pub async fn count_logs(&self) -> Result<u64> {
        let n: i64 = match &self.engine {
            Engine::Sqlite(db) => {
                db.read(|conn| {
                    Ok(conn.query_row("SELECT COUNT(*) FROM request_logs", [], |r| r.get(0))?)
                })
                .await?
            }
            Engine::Postgres(db) => db
                .client()
                .await?
                .query_one("SELECT COUNT(*) FROM request_logs", &[])
                .await?
                .try_get(0)?,
        };
        Ok(n as u64)
    }

    /// The newest records, newest first.
    pub async fn recent_logs(&self, limit: u32) -> Result<Vec<LogRecord>> {
        self.all(format!("{SELECT_RECENT} {limit}")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[tokio::test]
    async fn records_round_trip_in_batches() {
        for test in testing::each().await {
            let store = &test.store;
            let key = store.create_api_key("k", None, None).await.unwrap();
            let full = LogRecord {
                created_at: 1_700_000_000_123,
                api_key_id: Some(key.record.id),
                provider: Some("p".into()),
                upstream_model: Some("m".into()),
                alias: "sonnet".into(),
                stream: true,
                status: 529,
                latency_ms: 1234,
                ttfb_ms: Some(56),
                input_tokens: 10,
                output_tokens: 20,
                cache_read_tokens: 3,
                cache_creation_tokens: 4,
                error_kind: Some(Cow::Borrowed("overloaded")),
                endpoint: Endpoint::CountTokens,
            };
            let bare = LogRecord {
                alias: "haiku".into(),
                status: 200,
                ..LogRecord::default()
            };
            store
                .insert_logs(Arc::new(vec![full.clone(), bare.clone()]))
                .await
                .unwrap();
            assert_eq!(store.count_logs().await.unwrap(), 2);
            assert_eq!(
                store.recent_logs(10).await.unwrap(),
                vec![bare, full],
                "{}",
                store.engine()
            );
        }
    }
}
