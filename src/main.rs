//! The `abridge` binary: parse the command line and hand over to `cli`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = abridge::cli::Cli::parse();
    abridge::cli::main(cli)
}
