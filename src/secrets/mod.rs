//! Secrets: generating and loading `JWT_SECRET_KEY` and `ENCRYPTION_KEY`,
//! session tokens ([`jwt`]), sealing provider API keys ([`seal`]), hashing
//! passwords ([`password`]), the first-run key file ([`keyfile`]).
//!
//! A key missing from the settings comes from the first-run key file when
//! the caller names one (a SQLite database has a directory to keep it in);
//! otherwise it is replaced by an ephemeral one with a loud warning, so a
//! developer can start the gateway with no setup. A malformed key is an
//! error, because silently replacing it would orphan every sealed value.

pub mod jwt;
pub mod keyfile;
pub mod password;
pub mod seal;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore as _;

use crate::config::{ConfigError, SecretSettings};
pub use jwt::JwtKeys;
pub use seal::Sealer;

/// Bytes of randomness in a generated `JWT_SECRET_KEY` (512 bits).
const JWT_KEY_BYTES: usize = 64;

/// The process's loaded secrets.
#[derive(Clone)]
pub struct Secrets {
    /// Signs admin session tokens.
    pub jwt: JwtKeys,
    /// Seals and opens provider API keys.
    pub sealer: Sealer,
    /// Which keys were generated for this process only; shown as warnings.
    pub ephemeral: Vec<&'static str>,
    /// The first-run key file the missing keys came from, if any.
    pub keyfile: Option<KeyFileUse>,
}

/// How the first-run key file was used, for the start-up line.
#[derive(Debug, Clone)]
pub struct KeyFileUse {
    pub path: PathBuf,
    pub created: bool,
    pub too_open: bool,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("ephemeral", &self.ephemeral)
            .finish_non_exhaustive()
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Marks keys issued by abridge, so they are recognisable in a leak scan.
pub const API_KEY_PREFIX: &str = "sk-ab-";
/// Characters of a key kept for display (`sk-ab-` and 6 more).
pub const API_KEY_DISPLAY_LEN: usize = 12;

/// A fresh client API key: `sk-ab-` and 48 random alphanumerics (≈ 285 bits).
pub fn generate_api_key() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    let body: String = (0..48)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{API_KEY_PREFIX}{body}")
}

/// How a client key is looked up: the store keeps only this hash.
pub fn hash_api_key(key: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(key.as_bytes()).into()
}

/// Fresh keys in env-file form, as `abridge gen-keys` prints them.
pub fn generate_env_lines() -> String {
    format!(
        "JWT_SECRET_KEY={}\nENCRYPTION_KEY={}\n",
        B64.encode(random_bytes(JWT_KEY_BYTES)),
        B64.encode(random_bytes(seal::KEY_LEN)),
    )
}

impl Secrets {
    /// Loads the keys from settings alone; missing ones are ephemeral.
    pub fn load(settings: &SecretSettings) -> Result<Self, ConfigError> {
        Self::load_with_file(settings, None)
    }

    /// Loads the keys from settings, taking missing ones from the key file
    /// at `keyfile` (created on first use); see the module doc.
    pub fn load_with_file(
        settings: &SecretSettings,
        keyfile: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        // Keys given in the settings are checked first, so their errors
        // name the setting and not the file.
        let given = Self::from_settings(settings)?;
        let Some(path) = keyfile.filter(|_| !given.ephemeral.is_empty()) else {
            return Ok(given);
        };
        let keys = keyfile::load_or_create(path)?;
        let mut settings = settings.clone();
        if settings.jwt_secret_key.is_none() {
            settings.jwt_secret_key = keys.jwt_secret_key;
        }
        if settings.encryption_key.is_none() {
            settings.encryption_key = keys.encryption_key;
        }
        let mut loaded = Self::from_settings(&settings)
            .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))?;
        loaded.keyfile = Some(KeyFileUse {
            path: path.to_path_buf(),
            created: keys.created,
            too_open: keys.too_open,
        });
        Ok(loaded)
    }

    fn from_settings(settings: &SecretSettings) -> Result<Self, ConfigError> {
        let mut ephemeral = Vec::new();
        let jwt_key = match &settings.jwt_secret_key {
            Some(key) if key.expose().len() < 32 => {
                return Err(ConfigError(
                    "JWT_SECRET_KEY: must be at least 32 characters (generate one with `abridge gen-keys`)"
                        .into(),
                ));
            }
            Some(key) => key.expose().as_bytes().to_vec(),
            None => {
                ephemeral.push("JWT_SECRET_KEY");
                random_bytes(JWT_KEY_BYTES)
            }
        };
        let sealer = match &settings.encryption_key {
            Some(key) => Sealer::from_base64(key.expose())
                .map_err(|e| ConfigError(format!("ENCRYPTION_KEY: {e}")))?,
            None => {
                ephemeral.push("ENCRYPTION_KEY");
                Sealer::new(&random_bytes(seal::KEY_LEN))
                    .map_err(|e| ConfigError(format!("ENCRYPTION_KEY: {e}")))?
            }
        };
        Ok(Self {
            jwt: JwtKeys::new(&jwt_key).map_err(|e| ConfigError(format!("JWT_SECRET_KEY: {e}")))?,
            sealer,
            ephemeral,
            keyfile: None,
        })
    }

    /// The one start-up line about the key file, when one was used.
    pub fn keyfile_note(&self) -> Option<String> {
        let used = self.keyfile.as_ref()?;
        let verb = if used.created { "generated" } else { "using" };
        let mut line = format!(
            "{verb} JWT_SECRET_KEY/ENCRYPTION_KEY in {} (first-run key file; production: set them from `abridge gen-keys`)",
            used.path.display()
        );
        if used.too_open {
            line.push_str(&format!(
                "; WARNING: other users can read it, run chmod 600 {}",
                used.path.display()
            ));
        }
        Some(line)
    }

    /// The warnings to print loudly at start-up, one per ephemeral key.
    pub fn warnings(&self) -> Vec<String> {
        self.ephemeral
            .iter()
            .map(|name| match *name {
                "JWT_SECRET_KEY" => "JWT_SECRET_KEY is not set: using a random key for this process only; admin sessions end when it stops, and replicas must share one. Run `abridge gen-keys` and set it.".to_string(),
                _ => "ENCRYPTION_KEY is not set: using a random key for this process only; provider API keys sealed now cannot be opened after a restart or by another replica. Run `abridge gen-keys` and set it.".to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn generated_lines_load_back() {
        let text = generate_env_lines();
        let mut settings = SecretSettings::default();
        for line in text.lines() {
            let (k, v) = line.split_once('=').unwrap();
            match k {
                "JWT_SECRET_KEY" => settings.jwt_secret_key = Some(Secret::new(v)),
                "ENCRYPTION_KEY" => settings.encryption_key = Some(Secret::new(v)),
                other => panic!("unexpected {other}"),
            }
        }
        let secrets = Secrets::load(&settings).unwrap();
        assert!(secrets.ephemeral.is_empty());
        assert!(secrets.keyfile_note().is_none());
    }

    #[test]
    fn missing_keys_come_from_the_key_file_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(keyfile::FILE_NAME);
        let first = Secrets::load_with_file(&SecretSettings::default(), Some(&path)).unwrap();
        assert!(first.ephemeral.is_empty());
        assert!(first.keyfile_note().unwrap().starts_with("generated"));
        let sealed = first.sealer.seal("sk-provider");
        let (token, _) = first.jwt.issue(1, "admin", 0, 100, 60).unwrap();

        let second = Secrets::load_with_file(&SecretSettings::default(), Some(&path)).unwrap();
        assert!(second.keyfile_note().unwrap().starts_with("using"));
        assert_eq!(second.sealer.open(&sealed).unwrap(), "sk-provider");
        assert!(second.jwt.verify(&token, 120).is_ok());
    }

    #[test]
    fn a_bad_key_in_the_settings_is_named_and_no_file_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(keyfile::FILE_NAME);
        let settings = SecretSettings {
            encryption_key: Some(Secret::new("garbage!!")),
            ..SecretSettings::default()
        };
        let err = Secrets::load_with_file(&settings, Some(&path)).unwrap_err();
        assert!(err.0.starts_with("ENCRYPTION_KEY"), "{}", err.0);
        assert!(!path.exists());
    }

    #[test]
    fn keys_set_in_settings_win_over_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(keyfile::FILE_NAME);
        let mut settings = SecretSettings::default();
        for line in generate_env_lines().lines() {
            let (k, v) = line.split_once('=').unwrap();
            match k {
                "JWT_SECRET_KEY" => settings.jwt_secret_key = Some(Secret::new(v)),
                _ => settings.encryption_key = Some(Secret::new(v)),
            }
        }
        let loaded = Secrets::load_with_file(&settings, Some(&path)).unwrap();
        assert!(loaded.keyfile.is_none() && !path.exists());

        settings.encryption_key = None;
        let env_sealer = Secrets::load(&SecretSettings {
            encryption_key: Some(Secret::new(
                generate_env_lines()
                    .lines()
                    .nth(1)
                    .unwrap()
                    .split_once('=')
                    .unwrap()
                    .1,
            )),
            ..SecretSettings::default()
        })
        .unwrap();
        let mixed = Secrets::load_with_file(&settings, Some(&path)).unwrap();
        assert!(path.exists() && mixed.ephemeral.is_empty());
        let (token, _) = Secrets::load(&settings)
            .unwrap()
            .jwt
            .issue(1, "admin", 0, 100, 60)
            .unwrap();
        assert!(
            mixed.jwt.verify(&token, 120).is_ok(),
            "JWT key from settings"
        );
        let sealed = env_sealer.sealer.seal("x");
        assert!(
            mixed.sealer.open(&sealed).is_err(),
            "encryption key from the file"
        );
    }

    #[test]
    fn missing_keys_are_ephemeral_with_warnings() {
        let secrets = Secrets::load(&SecretSettings::default()).unwrap();
        assert_eq!(secrets.ephemeral, ["JWT_SECRET_KEY", "ENCRYPTION_KEY"]);
        assert_eq!(secrets.warnings().len(), 2);
    }

    #[test]
    fn malformed_encryption_key_is_refused_by_name() {
        for bad in ["garbage!!", "c2hvcnQ="] {
            let settings = SecretSettings {
                encryption_key: Some(Secret::new(bad)),
                ..SecretSettings::default()
            };
            let err = Secrets::load(&settings).unwrap_err();
            assert!(err.0.starts_with("ENCRYPTION_KEY"), "{}", err.0);
        }
    }
}
