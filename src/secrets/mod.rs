//! Secrets: generating and loading `JWT_SECRET_KEY` and `ENCRYPTION_KEY`,
//! sealing provider API keys ([`seal`]), hashing passwords ([`password`]).
//!
//! Missing keys are replaced by ephemeral ones with a loud warning, so a
//! developer can start the gateway with no setup; a malformed key is an error,
//! because silently replacing it would orphan every sealed value.

pub mod password;
pub mod seal;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore as _;

use crate::config::{ConfigError, SecretSettings};
pub use seal::Sealer;

/// Bytes of randomness in a generated `JWT_SECRET_KEY` (512 bits).
const JWT_KEY_BYTES: usize = 64;

/// The process's loaded secrets.
#[derive(Clone)]
pub struct Secrets {
    /// Signs admin session tokens.
    pub jwt_key: Vec<u8>,
    /// Seals and opens provider API keys.
    pub sealer: Sealer,
    /// Which keys were generated for this process only; shown as warnings.
    pub ephemeral: Vec<&'static str>,
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
    /// Loads the keys from settings; see the module doc for the rules.
    pub fn load(settings: &SecretSettings) -> Result<Self, ConfigError> {
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
            jwt_key,
            sealer,
            ephemeral,
        })
    }

    /// The warnings to print loudly at start-up, one per ephemeral key.
    pub fn warnings(&self) -> Vec<String> {
        self.ephemeral
            .iter()
            .map(|name| match *name {
                "JWT_SECRET_KEY" => "JWT_SECRET_KEY is not set: using a random key for this process only; admin sessions end when it stops. Run `abridge gen-keys` and set it.".to_string(),
                _ => "ENCRYPTION_KEY is not set: using a random key for this process only; provider API keys sealed now cannot be opened after a restart. Run `abridge gen-keys` and set it.".to_string(),
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
        assert!(secrets.jwt_key.len() * 8 >= 256);
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
