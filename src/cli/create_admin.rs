//! `abridge create-admin`: add an admin user.

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;

use anyhow::Context as _;

use super::UsageError;
use crate::config::Overrides;
use crate::secrets::password;
use crate::server::bootstrap;
use crate::store::{AuditEntry, Role};

/// Create an admin user. The password comes from --password-stdin, or is asked twice on a terminal; at least 12 characters.
///
/// Example: printf '%s' "$PASSWORD" | abridge create-admin --email ops@example.com --password-stdin
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Email address of the new admin.
    #[arg(long)]
    email: String,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            UsageError("no terminal to ask for a password; pass --password-stdin".into()).into(),
        );
    }
    let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
    let second =
        rpassword::prompt_password("Repeat password: ").context("cannot read the password")?;
    if first != second {
        return Err(UsageError("the passwords do not match".into()).into());
    }
    Ok(first)
}

pub async fn run(overrides: Overrides, args: Args) -> anyhow::Result<ExitCode> {
    let email = args.email.trim().to_string();
    if !email.contains('@') || email.starts_with('@') || email.ends_with('@') {
        return Err(UsageError(format!("`{email}` is not an email address")).into());
    }
    let password = read_password(args.password_stdin)?;
    password::check_strength(&password).map_err(|e| UsageError(e.to_string()))?;
    let settings = super::settings(&overrides)?;
    let (store, _) = bootstrap::open_store(&settings).await?;
    let hash = password::hash(password).await?;
    let user = store.create_user(&email, &hash, Role::Admin).await?;
    store
        .audit(
            AuditEntry::cli("user.create")
                .target(&user.email)
                .detail("role=admin"),
        )
        .await?;
    println!("created admin {} (id {})", user.email, user.id);
    Ok(ExitCode::SUCCESS)
}
