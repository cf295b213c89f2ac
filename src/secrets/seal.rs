//! AES-256-GCM sealing of provider API keys at rest.
//!
//! Layout of a sealed value: `[key id: 1 byte][nonce: 12 bytes][ciphertext + tag]`.
//! The key id is the first byte of SHA-256(key), so a value sealed under an
//! older key is recognised as such (and reported clearly) once keys rotate.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// Length of an `ENCRYPTION_KEY` in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("not valid base64")]
    BadBase64,
    #[error("must decode to {KEY_LEN} bytes, got {0}")]
    BadLength(usize),
    #[error("sealed value is too short")]
    Truncated,
    #[error("sealed under another key (key id {0:#04x}); was ENCRYPTION_KEY changed?")]
    WrongKey(u8),
    #[error("sealed value failed authentication (tampered or corrupt)")]
    Tampered,
}

/// Seals and opens secrets under one key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
    key_id: u8,
}

impl Sealer {
    pub fn new(key: &[u8]) -> Result<Self, SealError> {
        if key.len() != KEY_LEN {
            return Err(SealError::BadLength(key.len()));
        }
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| SealError::BadLength(key.len()))?;
        Ok(Self {
            cipher,
            key_id: Sha256::digest(key)[0],
        })
    }

    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let key = B64.decode(text.trim()).map_err(|_| SealError::BadBase64)?;
        Self::new(&key)
    }

    /// A sealer with a fixed key, for tests only.
    #[cfg(test)]
    pub fn for_testing() -> Self {
        Self::new(&[7u8; KEY_LEN]).expect("fixed key has the right length")
    }

    pub fn seal(&self, plaintext: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and a 12-byte nonce cannot fail.
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(self.key_id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<String, SealError> {
        if sealed.len() < 1 + NONCE_LEN + 16 {
            return Err(SealError::Truncated);
        }
        if sealed[0] != self.key_id {
            return Err(SealError::WrongKey(sealed[0]));
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SealError::Tampered)?;
        String::from_utf8(plain).map_err(|_| SealError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_fresh_nonces() {
        let sealer = Sealer::for_testing();
        let a = sealer.seal("sk-upstream-secret");
        let b = sealer.seal("sk-upstream-secret");
        assert_ne!(a, b, "each value gets its own nonce");
        assert_eq!(sealer.open(&a).unwrap(), "sk-upstream-secret");
        assert_eq!(sealer.open(&b).unwrap(), "sk-upstream-secret");
    }

    #[test]
    fn tampering_is_detected() {
        let sealer = Sealer::for_testing();
        let mut sealed = sealer.seal("secret");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(sealer.open(&sealed), Err(SealError::Tampered));
        assert_eq!(sealer.open(&sealed[..10]), Err(SealError::Truncated));
    }

    #[test]
    fn wrong_key_is_reported() {
        let sealed = Sealer::for_testing().seal("secret");
        let other = Sealer::new(&[9u8; KEY_LEN]).unwrap();
        assert!(matches!(other.open(&sealed), Err(SealError::WrongKey(_))));
    }

    #[test]
    fn bad_keys_are_rejected() {
        assert_eq!(
            Sealer::from_base64("garbage!!").err(),
            Some(SealError::BadBase64)
        );
        assert_eq!(
            Sealer::from_base64("c2hvcnQ=").err(),
            Some(SealError::BadLength(5))
        );
    }
}
