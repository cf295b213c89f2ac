//! Request logs: one row per `/v1` request, written in batches.

use std::borrow::Cow;
use std::sync::Arc;

use tokio_rusqlite::rusqlite::params;

use super::{Result, Store};

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

impl Store {
    /// Inserts a batch of log records in one transaction. The batch is
    /// shared so that a failed write can be retried without copying it.
    pub async fn insert_logs(&self, batch: Arc<Vec<LogRecord>>) -> Result<()> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO request_logs (created_at, api_key_id, provider, upstream_model, alias,
                        stream, status, latency_ms, ttfb_ms, input_tokens, output_tokens,
                        cache_read_tokens, cache_creation_tokens, error_kind, endpoint)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )?;
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

    pub async fn count_logs(&self) -> Result<u64> {
        self.read(|conn| {
            Ok(
                conn.query_row("SELECT COUNT(*) FROM request_logs", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            )
        })
        .await
    }

    /// The newest records, newest first.
    pub async fn recent_logs(&self, limit: u32) -> Result<Vec<LogRecord>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT created_at, api_key_id, provider, upstream_model, alias, stream, status,
                        latency_ms, ttfb_ms, input_tokens, output_tokens, cache_read_tokens,
                        cache_creation_tokens, error_kind, endpoint
                 FROM request_logs ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |row| {
                let kind: Option<String> = row.get(13)?;
                let endpoint: String = row.get(14)?;
                Ok(LogRecord {
                    created_at: row.get(0)?,
                    endpoint: Endpoint::parse(&endpoint),
                    api_key_id: row.get(1)?,
                    provider: row.get(2)?,
                    upstream_model: row.get(3)?,
                    alias: row.get(4)?,
                    stream: row.get(5)?,
                    status: row.get(6)?,
                    latency_ms: row.get::<_, i64>(7)? as u64,
                    ttfb_ms: row.get::<_, Option<i64>>(8)?.map(|t| t as u64),
                    input_tokens: row.get::<_, i64>(9)? as u64,
                    output_tokens: row.get::<_, i64>(10)? as u64,
                    cache_read_tokens: row.get::<_, i64>(11)? as u64,
                    cache_creation_tokens: row.get::<_, i64>(12)? as u64,
                    error_kind: kind.map(Cow::Owned),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
