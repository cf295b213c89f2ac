//! The audit log: who changed what, when, and from where (the client
//! address on the admin API, `local` for the CLI), from the CLI or the admin
//! API. Details given as JSON have their secrets redacted before they are
//! stored ([`redact`]).

use tokio_rusqlite::rusqlite::params;

use super::{Result, Store, now_ms};

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub action: &'static str,
    pub target: Option<String>,
    pub detail: Option<String>,
    /// Where the change came from: a client address, or `local` for the CLI.
    pub client_addr: Option<String>,
}

/// Field names whose values never reach the audit log.
fn is_secret_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
    ]
    .iter()
    .any(|s| name.contains(s))
        || matches!(name.as_str(), "key" | "keys")
}

/// Replaces the value of every secret-looking field (at any depth) by `"*****"`.
pub fn redact(mut value: serde_json::Value) -> serde_json::Value {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (name, field) in map.iter_mut() {
                    if is_secret_field(name) {
                        *field = serde_json::Value::from("*****");
                    } else {
                        walk(field);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

impl AuditEntry {
    pub fn new(actor: impl Into<String>, action: &'static str) -> Self {
        Self {
            actor: actor.into(),
            action,
            target: None,
            detail: None,
            client_addr: None,
        }
    }

    /// An entry for a change made through the CLI on this machine.
    pub fn cli(action: &'static str) -> Self {
        Self::new("cli", action).client_addr("local")
    }

    pub fn client_addr(mut self, client_addr: impl Into<String>) -> Self {
        self.client_addr = Some(client_addr.into());
        self
    }

    /// Structured detail, stored as JSON with its secrets redacted.
    pub fn detail_json(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(redact(detail).to_string());
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl Store {
    pub async fn audit(&self, entry: AuditEntry) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO audit_log (created_at, actor, action, target, detail, client_addr)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    now_ms(),
                    entry.actor,
                    entry.action,
                    entry.target,
                    entry.detail,
                    entry.client_addr
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// How many audit entries carry `action` (for tests and the console).
    pub async fn count_audit(&self, action: &'static str) -> Result<u64> {
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM audit_log WHERE action = ?1",
                [action],
                |row| row.get::<_, i64>(0),
            )? as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[tokio::test]
    async fn entries_are_recorded() {
        let (store, _dir) = testing::store().await;
        store
            .audit(
                AuditEntry::new("cli", "key.create")
                    .target("k1")
                    .detail("name=ci"),
            )
            .await
            .unwrap();
        assert_eq!(store.count_audit("key.create").await.unwrap(), 1);
        assert_eq!(store.count_audit("key.revoke").await.unwrap(), 0);
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let detail = serde_json::json!({
            "email": "a@x.io",
            "password": "hunter2hunter2",
            "provider": {"name": "p", "api_keys": ["sk-1"], "headers": {"Authorization": "Bearer x"}},
            "items": [{"client_secret": "s", "role": "viewer"}],
            "key": "sk-ab-123",
            "key_prefix": "sk-ab-1",
        });
        let shown = redact(detail).to_string();
        for secret in ["hunter2", "sk-1", "Bearer x", "\"s\"", "sk-ab-123"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        for kept in ["a@x.io", "viewer", "sk-ab-1", "\"p\""] {
            assert!(shown.contains(kept), "{kept} lost: {shown}");
        }
    }
}
