//! `abridge init-db`: create or migrate the database, and make sure an admin exists.

use std::process::ExitCode;

use crate::config::Overrides;
use crate::server::bootstrap;
use crate::store::redact_url;

/// Create or migrate the database and make sure an admin user exists; running it twice is harmless.
///
/// Examples: abridge --database sqlite:///var/lib/abridge/abridge.db init-db
///           abridge --database postgres://abridge:PASS@db/abridge?sslmode=require init-db
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {}

pub async fn run(overrides: Overrides, _args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::settings(&overrides)?;
    let (store, report) = bootstrap::open_store(&settings).await?;
    if report.changed() {
        println!(
            "migrated {} from schema version {} to {}",
            redact_url(&settings.database.url),
            report.from,
            report.to
        );
    } else {
        println!(
            "{} is up to date (schema version {})",
            redact_url(&settings.database.url),
            report.to
        );
    }
    println!("{}", store.describe().await?);
    bootstrap::ensure_admin(&store, &settings).await?;
    Ok(ExitCode::SUCCESS)
}
