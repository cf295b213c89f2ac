//! The `abridge` binary: parse the command line and hand over to `cli`.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's allocator: the request path makes ~130 small
/// allocations per proxied request (hyper, axum, reqwest), and glibc spent
/// ~15 % of the gateway's CPU in malloc, free and fastbin consolidation.
/// Transparent huge pages are off so RSS grows by pages, not by 2 MiB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = abridge::cli::Cli::parse();
    abridge::cli::main(cli)
}
