//! `abridge gen-keys`: fresh `JWT_SECRET_KEY` and `ENCRYPTION_KEY` lines.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::UsageError;

/// Print a fresh JWT_SECRET_KEY (512 random bits) and a 32-byte ENCRYPTION_KEY, base64, as env-file lines.
///
/// Example: abridge gen-keys --out /etc/abridge/abridge.env
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Write the lines to FILE (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Overwrite FILE if it exists.
    #[arg(long, requires = "out")]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let lines = crate::secrets::generate_env_lines();
    let Some(path) = args.out else {
        print!("{lines}");
        return Ok(ExitCode::SUCCESS);
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::Error::new(UsageError(format!(
                "{} already exists; pass --force to overwrite it",
                path.display()
            )))
        } else {
            anyhow::Error::new(e).context(format!("cannot create {}", path.display()))
        }
    })?;
    // An existing file keeps its old mode on truncate; tighten it.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("cannot set permissions on {}", path.display()))?;
    file.write_all(lines.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote JWT_SECRET_KEY and ENCRYPTION_KEY to {} (mode 0600)",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
