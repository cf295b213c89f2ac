//! `abridge serve`: run the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::{Overrides, Settings};
use crate::server;

/// Run the gateway: the Anthropic Messages API on /v1, probes on /health and /ready.
///
/// Example: ABRIDGE_PROVIDERS=providers.toml abridge serve --listen 0.0.0.0:8080
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Address to listen on (env ABRIDGE_LISTEN; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Providers file, TOML or the original's provider.json (env ABRIDGE_PROVIDERS).
    #[arg(long, value_name = "FILE")]
    providers: Option<PathBuf>,
    /// Print the effective settings as TOML (secrets masked) and exit.
    #[arg(long)]
    print_config: bool,
}

pub async fn run(mut overrides: Overrides, args: Args) -> anyhow::Result<ExitCode> {
    overrides.listen = args.listen;
    overrides.providers_file = args.providers;
    let settings = Settings::load(&overrides)?;
    if args.print_config {
        print!("{}", settings.to_masked_toml());
        return Ok(ExitCode::SUCCESS);
    }
    crate::telemetry::init(&settings.server.log);
    let listen = settings.server.listen;
    let state = server::bootstrap::build_state(settings).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!("listening on http://{addr}");
    crate::note!("abridge listening on http://{addr}");
    server::run(listener, state, server::shutdown::signal()).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
