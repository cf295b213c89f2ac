//! The command line: global flags, one subcommand per file, and the exit-code
//! policy (0 ok, 2 usage or configuration error, 1 runtime failure). Errors
//! print as one line with their whole cause chain, never a backtrace.

mod create_admin;
mod gen_keys;
mod init_db;
mod keys;
mod loadtest;
mod migrate_store;
mod providers;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, Overrides, Settings};

/// abridge: an Anthropic-compatible Messages API gateway in front of many LLM providers.
#[derive(Debug, Parser)]
#[command(name = "abridge", version, propagate_version = true)]
pub struct Cli {
    /// Config file (default: ./abridge.toml when present).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Database URL (default: sqlite://./abridge.db; env ABRIDGE_DATABASE).
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Serve(serve::Args),
    InitDb(init_db::Args),
    GenKeys(gen_keys::Args),
    CreateAdmin(create_admin::Args),
    #[command(subcommand)]
    Keys(keys::Command),
    #[command(subcommand)]
    Providers(providers::Command),
    Loadtest(loadtest::Args),
    MigrateStore(migrate_store::Args),
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            database: self.database.clone(),
            ..Overrides::default()
        }
    }
}

/// Loads settings with the global flags applied on top.
fn settings(overrides: &Overrides) -> anyhow::Result<Settings> {
    Ok(Settings::load(overrides)?)
}

/// Runs the parsed command line and maps the outcome to an exit code.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("abridge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let overrides = cli.overrides();
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(overrides, args).await,
            Command::InitDb(args) => init_db::run(overrides, args).await,
            Command::GenKeys(args) => gen_keys::run(args),
            Command::CreateAdmin(args) => create_admin::run(overrides, args).await,
            Command::Keys(cmd) => keys::run(overrides, cmd).await,
            Command::Providers(cmd) => providers::run(overrides, cmd).await,
            Command::MigrateStore(args) => migrate_store::run(overrides, args).await,
            // The generator fails only on bad flags or inputs: a usage error.
            Command::Loadtest(args) => loadtest::run(args)
                .await
                .map_err(|e| UsageError(format!("{e:#}")).into()),
        }
    });
    // Background tasks that did not stop on their own must not hold up exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("abridge: error: {e:#}");
            if e.chain()
                .any(|c| c.is::<ConfigError>() || c.is::<UsageError>())
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Bad input on the command line that clap cannot catch; exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
