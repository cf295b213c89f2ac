//! `abridge providers`: list, import and test providers, through the same
//! store and upstream code the server uses.

use std::path::PathBuf;
use std::process::ExitCode;

use super::UsageError;
use crate::config::Overrides;
use crate::server::bootstrap;
use crate::store::AuditEntry;
use crate::upstream::catalog::Catalog;
use crate::upstream::{HttpClient, Router, probe, provider, sources};

/// Manage upstream providers (stored in the database; a providers file can add more).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List providers from the store and the providers file (a running server shows live breaker state on /ready).
    ///
    /// Example: abridge providers list --json
    #[command(verbatim_doc_comment)]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Import providers from a providers.toml or the original's provider.json into the store (keys sealed).
    ///
    /// Example: ENCRYPTION_KEY=... abridge providers import provider.json
    #[command(verbatim_doc_comment)]
    Import {
        /// providers.toml, or provider.json with ${ENV} substitution.
        file: PathBuf,
    },
    /// Send a one-token request to a provider and report the answer.
    ///
    /// Example: abridge providers test openrouter
    #[command(verbatim_doc_comment)]
    Test {
        /// Provider name.
        name: String,
    },
}

pub async fn run(overrides: Overrides, command: Command) -> anyhow::Result<ExitCode> {
    let settings = super::settings(&overrides)?;
    let secrets = bootstrap::load_secrets(&settings)?;
    let (store, _) = bootstrap::open_store(&settings).await?;
    let catalog = Catalog::new(&settings.catalog)?;
    // List and test see what a server would: the store plus the providers file.
    let load = || async {
        let router = Router::new(&settings.routing, catalog.clone());
        sources::load_all(&router, &store, &secrets.sealer, &settings)
            .await
            .map(|()| router)
    };
    match command {
        Command::Import { file } => {
            if secrets.ephemeral.contains(&"ENCRYPTION_KEY") {
                return Err(UsageError(
                    "ENCRYPTION_KEY is not set: keys sealed now could never be opened again; set it (abridge gen-keys) and retry".into(),
                )
                .into());
            }
            let loaded = provider::load_file(&file).map_err(UsageError)?;
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            if loaded.routing != crate::config::FileRouting::default() {
                eprintln!(
                    "warning: {}: fallback_strategy and circuit_breaker are not imported; set routing.* in abridge.toml (or ABRIDGE_STRATEGY, ABRIDGE_BREAKER_*) or use the file as ABRIDGE_PROVIDERS",
                    file.display()
                );
            }
            let specs = loaded.providers;
            for spec in &specs {
                store.upsert_provider(spec, &secrets.sealer).await?;
                store
                    .audit(
                        AuditEntry::cli("provider.upsert")
                            .target(&spec.name)
                            .detail(format!("from {}", file.display())),
                    )
                    .await?;
                println!(
                    "imported {} ({}, {} key(s))",
                    spec.name,
                    spec.api_format.as_str(),
                    spec.api_keys.len()
                );
            }
            println!("{} provider(s) imported", specs.len());
        }
        Command::List { json } => {
            let router = load().await?;
            let rows: Vec<serde_json::Value> = router
                .snapshot()
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "name": u.spec.name, "api_format": u.spec.api_format, "base_url": u.spec.base_url,
                        "priority": u.spec.priority, "weight": u.spec.weight, "enabled": u.spec.enabled,
                        "source": u.source, "keys": u.keys.counts(),
                        "models": u.spec.models,
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!(
                    "{:<20} {:<10} {:<5} {:<8} {:<6} {:<5} BASE URL",
                    "NAME", "FORMAT", "PRIO", "ENABLED", "SOURCE", "KEYS"
                );
                for u in router.snapshot().iter() {
                    println!(
                        "{:<20} {:<10} {:<5} {:<8} {:<6} {:<5} {}",
                        u.spec.name,
                        u.spec.api_format.as_str(),
                        u.spec.priority,
                        u.spec.enabled,
                        format!("{:?}", u.source).to_lowercase(),
                        u.keys.counts().total,
                        u.spec.base_url
                    );
                }
            }
        }
        Command::Test { name } => {
            let router = load().await?;
            let upstream = router
                .snapshot()
                .iter()
                .find(|u| u.spec.name == name)
                .cloned()
                .ok_or_else(|| UsageError(format!("no provider named `{name}`")))?;
            let http = HttpClient::new(&settings.http)?;
            let result = probe::probe(&http, upstream).await;
            println!("{}", serde_json::to_string_pretty(&result)?);
            if !result.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
