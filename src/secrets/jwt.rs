//! Session tokens of the admin API: HS256 JWTs signed with `JWT_SECRET_KEY`,
//! and the CSRF token that goes with a cookie session.
//!
//! Verification is explicit: only HS256, `exp` required and checked with no
//! leeway, `sub`/`iat`/`exp`/`jti` required. Whether the token's version is
//! still current (revocation) is the caller's check, not this module's.
//! This module never reads the store or the clock of the runtime: `now` is
//! passed in, so expiry is testable.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac as _};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string (RFC 7519 `sub`).
    pub sub: String,
    /// The user's role when the token was issued.
    pub role: String,
    /// The user's token version when issued; a bump revokes the token.
    pub ver: i64,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// A random id, so two tokens issued in the same second differ.
    pub jti: String,
}

impl Claims {
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the session has expired; log in again")]
    Expired,
    #[error("invalid session token")]
    Invalid,
}

/// Signs and verifies session tokens under `JWT_SECRET_KEY`.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Derives CSRF tokens; the same secret, used through HMAC with a label.
    raw: Vec<u8>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(*****)")
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64URL.encode(bytes)
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self {
            encoding: EncodingKey::from_secret(secret)?,
            decoding: DecodingKey::from_secret(secret)?,
            raw: secret.to_vec(),
        })
    }

    /// Issues a token for `user_id` valid for `lifetime_secs` from `now`.
    pub fn issue(
        &self,
        user_id: i64,
        role: &str,
        version: i64,
        now: u64,
        lifetime_secs: u64,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: user_id.to_string(),
            role: role.to_string(),
            ver: version,
            iat: now,
            exp: now + lifetime_secs,
            jti: random_id(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// Checks signature, algorithm and expiry (against `now`, Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = false; // checked below against `now`
        validation.set_required_spec_claims(&["sub", "iat", "exp", "jti"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// The CSRF token of a cookie session: HMAC-SHA256 of its `jti`, so it
    /// cannot be forged without the key and needs no storage.
    pub fn csrf_token(&self, jti: &str) -> String {
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(&self.raw).expect("HMAC accepts any key length");
        mac.update(b"abridge-csrf:");
        mac.update(jti.as_bytes());
        B64URL.encode(mac.finalize().into_bytes())
    }

    /// Compares a presented CSRF token with the expected one in constant time.
    pub fn csrf_matches(&self, jti: &str, presented: &str) -> bool {
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(&self.raw).expect("HMAC accepts any key length");
        mac.update(b"abridge-csrf:");
        mac.update(jti.as_bytes());
        match B64URL.decode(presented) {
            Ok(tag) => mac.verify_slice(&tag).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn keys() -> JwtKeys {
        JwtKeys::new(b"a-test-secret-that-is-long-enough-for-hs256").unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_claims() {
        let (token, claims) = keys().issue(42, "operator", 3, NOW, 60).unwrap();
        let verified = keys().verify(&token, NOW + 59).unwrap();
        assert_eq!(verified, claims);
        assert_eq!(verified.user_id(), Some(42));
        assert_eq!((verified.role.as_str(), verified.ver), ("operator", 3));
        let (_, other) = keys().issue(42, "operator", 3, NOW, 60).unwrap();
        assert_ne!(other.jti, claims.jti);
    }

    #[test]
    fn expired_tampered_foreign_and_unsigned_tokens_fail() {
        let (token, _) = keys().issue(1, "admin", 0, NOW, 60).unwrap();
        assert_eq!(keys().verify(&token, NOW + 60), Err(TokenError::Expired));
        let foreign = JwtKeys::new(b"another-secret-another-secret-another").unwrap();
        assert_eq!(foreign.verify(&token, NOW), Err(TokenError::Invalid));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = B64URL.encode(
            serde_json::json!({"sub":"1","role":"admin","ver":0,"iat":NOW,"exp":NOW+60,"jti":"x"})
                .to_string(),
        );
        parts[1] = &forged_claims;
        assert_eq!(
            keys().verify(&parts.join("."), NOW),
            Err(TokenError::Invalid)
        );
        let none_header = B64URL.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{forged_claims}.");
        assert_eq!(keys().verify(&unsigned, NOW), Err(TokenError::Invalid));
        assert_eq!(
            keys().verify("sk-ab-notajwt", NOW),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session_and_key() {
        let token = keys().csrf_token("jti-1");
        assert!(keys().csrf_matches("jti-1", &token));
        assert!(!keys().csrf_matches("jti-2", &token));
        let other = JwtKeys::new(b"other-key-other-key-other-key-00").unwrap();
        assert!(!other.csrf_matches("jti-1", &token));
        assert!(!keys().csrf_matches("jti-1", "not base64 !"));
    }
}
