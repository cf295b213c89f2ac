//! `abridge keys`: issue, list and revoke client API keys.

use std::process::ExitCode;
use std::time::Duration;

use super::UsageError;
use crate::config::Overrides;
use crate::server::bootstrap;
use crate::store::{ApiKey, AuditEntry, now_ms};

/// Manage client API keys (shown once at creation; the store keeps only a hash).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a key and print it once.
    ///
    /// Example: abridge keys create --name claude-code --expires-in 90d --json
    #[command(verbatim_doc_comment)]
    Create {
        /// A name saying who or what uses the key.
        #[arg(long)]
        name: String,
        /// Lifetime, e.g. 30d or 12h (default: no expiry).
        #[arg(long, value_parser = crate::config::parse_duration)]
        expires_in: Option<Duration>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List keys (prefixes only, never the keys).
    ///
    /// Example: abridge keys list --json
    #[command(verbatim_doc_comment)]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id or display prefix; takes effect on running servers within 30 s.
    ///
    /// Example: abridge keys revoke sk-ab-Xy12Ab
    #[command(verbatim_doc_comment)]
    Revoke {
        /// Key id or display prefix.
        key: String,
    },
}

fn state(key: &ApiKey, now: i64) -> &'static str {
    if key.revoked_at.is_some() {
        "revoked"
    } else if !key.is_usable(now) {
        "expired"
    } else {
        "active"
    }
}

fn when(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms > 0 => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_millis(ms as u64),
        )
        .to_string(),
        _ => "-".into(),
    }
}

pub async fn run(overrides: Overrides, command: Command) -> anyhow::Result<ExitCode> {
    let settings = super::settings(&overrides)?;
    let (store, _) = bootstrap::open_store(&settings).await?;
    match command {
        Command::Create {
            name,
            expires_in,
            json,
        } => {
            let name = name.trim();
            if name.is_empty() {
                return Err(UsageError("--name must not be empty".into()).into());
            }
            let expires_at = expires_in.map(|d| now_ms() + d.as_millis() as i64);
            let created = store.create_api_key(name, None, expires_at).await?;
            store
                .audit(
                    AuditEntry::cli("key.create")
                        .target(&created.record.prefix)
                        .detail(format!("name={name}")),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&created)?);
            } else {
                println!("{}", created.key);
                eprintln!(
                    "created key {} (id {}, prefix {}); it is shown only now, store it safely",
                    name, created.record.id, created.record.prefix
                );
            }
        }
        Command::List { json } => {
            let keys = store.list_api_keys().await?;
            if json {
                println!("{}", serde_json::to_string(&keys)?);
            } else {
                let now = now_ms();
                println!(
                    "{:<5} {:<14} {:<8} {:<21} {:<21} NAME",
                    "ID", "PREFIX", "STATE", "LAST USED", "EXPIRES"
                );
                for k in &keys {
                    println!(
                        "{:<5} {:<14} {:<8} {:<21} {:<21} {}",
                        k.id,
                        k.prefix,
                        state(k, now),
                        when(k.last_used_at),
                        when(k.expires_at),
                        k.name
                    );
                }
            }
        }
        Command::Revoke { key } => {
            let revoked = store.revoke_api_key(&key).await?;
            store
                .audit(AuditEntry::cli("key.revoke").target(&revoked.prefix))
                .await?;
            println!(
                "revoked key {} ({}, id {})",
                revoked.name, revoked.prefix, revoked.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
