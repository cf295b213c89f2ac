//! `abridge migrate-store`: copy a single-node SQLite database into
//! PostgreSQL, verified table by table (the copying is `store::copy`'s).

use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::Overrides;
use crate::server::bootstrap;
use crate::store::{copy, redact_url};

/// Copy a SQLite database into PostgreSQL, verifying row counts and a SHA-256 per table.
///
/// Both databases are brought to the current schema first. A target that
/// holds any row is refused unless --force, which empties it. Nothing is
/// committed unless every table verifies.
///
/// Example: abridge migrate-store --from sqlite://./abridge.db --to postgres://abridge:PASS@db/abridge
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The SQLite database to copy (sqlite://PATH); it is only read.
    #[arg(long, value_name = "URL")]
    from: String,
    /// The PostgreSQL database to fill (postgres://...).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Replace the target's contents when it is not empty.
    #[arg(long)]
    force: bool,
}

pub async fn run(overrides: Overrides, args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::settings(&overrides)?;
    let (from, to) = (redact_url(&args.from), redact_url(&args.to));
    let (source, _) = bootstrap::open_url(&args.from, &settings).await?;
    let (target, _) = bootstrap::open_url(&args.to, &settings).await?;
    println!("copying {from} into {to}");
    let reports = copy::sqlite_to_postgres(&source, &target, args.force)
        .await
        .with_context(|| format!("cannot copy {from} into {to}"))?;
    println!(
        "{:<14} {:>10} {:>10}  {:<16}  verified",
        "table", "source", "target", "sha256"
    );
    let mut rows = 0;
    for r in &reports {
        println!(
            "{:<14} {:>10} {:>10}  {:<16}  {}",
            r.table,
            r.source_rows,
            r.target_rows,
            &r.target_sha256[..16],
            if r.verified() { "ok" } else { "MISMATCH" }
        );
        rows += r.target_rows;
    }
    println!(
        "copied {} tables, {rows} rows; every table verified",
        reports.len()
    );
    Ok(ExitCode::SUCCESS)
}
