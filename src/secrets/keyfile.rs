//! The first-run key file, `abridge.secrets`, kept beside the SQLite database.
//!
//! When neither the environment nor `abridge.toml` sets `JWT_SECRET_KEY` or
//! `ENCRYPTION_KEY`, the gateway generates them once into this file (mode
//! 0600, the env-file form `abridge gen-keys` prints) and reads them back on
//! every start, so sessions and sealed provider keys survive a restart with
//! no setup. Production setups keep `gen-keys` and the environment. This
//! module only reads and writes that one file; the caller decides where it
//! lives (nowhere for PostgreSQL or an in-memory database).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use crate::config::{ConfigError, Secret};

/// The file's name, in the database's directory.
pub const FILE_NAME: &str = "abridge.secrets";

/// The keys found in (or just written to) the file.
#[derive(Debug, Default)]
pub struct FileKeys {
    pub jwt_secret_key: Option<Secret>,
    pub encryption_key: Option<Secret>,
    /// The file did not exist and was created now.
    pub created: bool,
    /// The file can be read by other users (it should be 0600).
    pub too_open: bool,
}

fn parse(text: &str, path: &Path) -> Result<FileKeys, ConfigError> {
    let mut keys = FileKeys::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(ConfigError(format!(
                "{}:{}: expected NAME=VALUE",
                path.display(),
                n + 1
            )));
        };
        let value = Some(Secret::new(value.trim()));
        match name.trim() {
            "JWT_SECRET_KEY" => keys.jwt_secret_key = value,
            "ENCRYPTION_KEY" => keys.encryption_key = value,
            other => {
                return Err(ConfigError(format!(
                    "{}:{}: unknown name `{other}` (expected JWT_SECRET_KEY or ENCRYPTION_KEY)",
                    path.display(),
                    n + 1
                )));
            }
        }
    }
    Ok(keys)
}

/// Reads the key file at `path`, creating it with fresh keys when absent.
/// Two processes starting at once agree: only one creates it, and the other
/// reads what the first wrote.
pub fn load_or_create(path: &Path) -> Result<FileKeys, ConfigError> {
    let io_error = |what: &str, e: std::io::Error| {
        ConfigError(format!("cannot {what} key file {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error("create the directory of the", e))?;
    }
    let created = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(super::generate_env_lines().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error("write the", e))?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io_error("create the", e)),
    };
    let text = std::fs::read_to_string(path).map_err(|e| io_error("read the", e))?;
    let mut keys = parse(&text, path)?;
    keys.created = created;
    keys.too_open = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o077 != 0)
        .unwrap_or(false);
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join(FILE_NAME);
        let first = load_or_create(&path).unwrap();
        assert!(first.created && !first.too_open);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create(&path).unwrap();
        assert!(!again.created);
        assert_eq!(again.jwt_secret_key, first.jwt_secret_key);
        assert_eq!(again.encryption_key, first.encryption_key);
        assert!(again.jwt_secret_key.is_some() && again.encryption_key.is_some());
    }

    #[test]
    fn a_readable_file_is_flagged_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "# keys\nJWT_SECRET_KEY=abc\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let keys = load_or_create(&path).unwrap();
        assert!(keys.too_open);
        assert_eq!(keys.jwt_secret_key, Some(Secret::new("abc")));
        assert!(keys.encryption_key.is_none());
        std::fs::write(&path, "OTHER=1\n").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(
            err.0.contains("OTHER") && err.0.contains(":1:"),
            "{}",
            err.0
        );
    }
}
