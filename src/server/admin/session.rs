//! Who is calling `/api`: the [`Session`] of a logged-in user, taken from a
//! bearer token (scripts) or the session cookie (the browser console).
//!
//! Cookie sessions are `HttpOnly; SameSite=Strict`, and every unsafe method
//! (anything but GET, HEAD, OPTIONS) must also carry the `x-csrf-token`
//! header: an HMAC of the session's `jti` under the JWT key, handed to the
//! console at login and in the readable `abridge_csrf` cookie (a signed
//! double-submit token). A bearer token needs no CSRF token, since browsers
//! never attach one on their own. A client API key (`sk-ab-…`) is refused
//! outright: it never grants any `/api` right.
//!
//! A token is accepted only while its version matches the user's current
//! token version in [`super::Identity`] (memory, refreshed from the store),
//! so logout, a password or role change, or disabling the user ends older
//! tokens at once without a store round trip per call.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};

use super::ApiError;
use crate::error::Error;
use crate::secrets::jwt::Claims;
use crate::server::AppState;
use crate::store::{AuditEntry, Role, User};

/// The HttpOnly cookie holding the browser's session token.
pub const SESSION_COOKIE: &str = "abridge_session";
/// The readable cookie holding the CSRF token of that session.
pub const CSRF_COOKIE: &str = "abridge_csrf";
/// The header that must repeat the CSRF token on unsafe cookie requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller of `/api`.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: i64,
    pub email: String,
    /// The user's current role (not the one in the token: a change revokes it).
    pub role: Role,
    pub claims: Claims,
    /// The peer address the request came from, for the audit log.
    pub client_addr: String,
}

impl Session {
    /// An audit entry for a change made by this user, from this address.
    pub fn audit(&self, action: &'static str) -> AuditEntry {
        AuditEntry::new(&self.email, action).client_addr(&self.client_addr)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            ApiError::from(Error::Authentication(
                "this route needs a session; log in at POST /api/auth/login".into(),
            ))
        })
    }
}

/// The address of the peer that sent the request (`unknown` in tests that
/// bypass the listener).
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl ClientAddr {
    fn of(parts: &Parts) -> Self {
        ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string())
                .unwrap_or_else(|| "unknown".into()),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr::of(parts))
    }
}

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

#[derive(Clone, Copy)]
enum Presented<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
}

fn presented(headers: &HeaderMap) -> Result<Presented<'_>, Error> {
    let refuse_client_key = || {
        Error::Authentication(
            "client API keys do not grant access to the admin API; log in at POST /api/auth/login"
                .into(),
        )
    };
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = auth
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| Error::Authentication("expected Authorization: Bearer TOKEN".into()))?;
        if token.starts_with("sk-") {
            return Err(refuse_client_key());
        }
        return Ok(Presented::Bearer(token));
    }
    if headers.contains_key("x-api-key") {
        return Err(refuse_client_key());
    }
    cookie(headers, SESSION_COOKIE)
        .filter(|v| !v.is_empty())
        .map(Presented::Cookie)
        .ok_or_else(|| {
            Error::Authentication(
                "not logged in: send Authorization: Bearer TOKEN (from POST /api/auth/login) or the session cookie"
                    .into(),
            )
        })
}

/// Current time in Unix seconds, the unit of JWT claims.
pub fn unix_now() -> u64 {
    (crate::store::now_ms() / 1000).max(0) as u64
}

/// Checks the presented token, its CSRF token when it came in a cookie,
/// and its version against the user's current one.
pub async fn authenticate(state: &AppState, parts: &Parts) -> Result<Session, ApiError> {
    let presented = presented(&parts.headers)?;
    let token = match presented {
        Presented::Bearer(token) | Presented::Cookie(token) => token,
    };
    let claims = state
        .identity
        .jwt
        .verify(token, unix_now())
        .map_err(|e| Error::Authentication(e.to_string()))?;
    if matches!(presented, Presented::Cookie(_))
        && !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
    {
        let csrf = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !state.identity.jwt.csrf_matches(&claims.jti, csrf) {
            return Err(Error::PermissionDenied(format!(
                "missing or wrong {CSRF_HEADER} header (cookie sessions must repeat the CSRF token from login)"
            ))
            .into());
        }
    }
    let user_id = claims
        .user_id()
        .ok_or_else(|| Error::Authentication("invalid session token".into()))?;
    let account = state
        .identity
        .account(user_id)
        .filter(|a| !a.disabled && a.token_version == claims.ver)
        .ok_or_else(|| {
            Error::Authentication(
                "this session has ended (logged out, password or role changed, or user disabled); log in again"
                    .into(),
            )
        })?;
    Ok(Session {
        user_id,
        email: account.email,
        role: account.role,
        claims,
        client_addr: ClientAddr::of(parts).0,
    })
}

/// Issues a session token for `user` at their current token version.
pub fn issue(state: &AppState, user: &User) -> Result<(String, Claims), Error> {
    state.identity.remember(user);
    state
        .identity
        .jwt
        .issue(
            user.id,
            user.role.as_str(),
            user.token_version,
            unix_now(),
            state.identity.lifetime_secs,
        )
        .map_err(|e| Error::Internal(e.into()))
}

/// Whether the browser reached us over HTTPS (directly or through a proxy
/// that says so), so cookies can be marked `Secure`.
fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn cookie_header(text: String) -> HeaderValue {
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` values that start a browser session.
pub fn session_cookies(
    request: &HeaderMap,
    token: &str,
    csrf: &str,
    max_age: u64,
) -> [HeaderValue; 2] {
    let secure = if secure(request) { "; Secure" } else { "" };
    [
        cookie_header(format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        )),
        cookie_header(format!(
            "{CSRF_COOKIE}={csrf}; Path=/; SameSite=Strict; Max-Age={max_age}{secure}"
        )),
    ]
}

/// `Set-Cookie` values that end a browser session.
pub fn cleared_cookies() -> [HeaderValue; 2] {
    [
        HeaderValue::from_static("abridge_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        HeaderValue::from_static("abridge_csrf=; Path=/; SameSite=Strict; Max-Age=0"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[
            ("cookie", "a=1; abridge_session=tok; b=2"),
            ("cookie", "c=3"),
        ]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "abridge"), None);
    }

    #[test]
    fn client_keys_and_odd_schemes_are_refused() {
        for h in [
            headers(&[("authorization", "Bearer sk-ab-123")]),
            headers(&[("x-api-key", "sk-ab-123")]),
        ] {
            let err = presented(&h).err().unwrap();
            assert!(err.to_string().contains("client API keys"), "{err}");
        }
        assert!(presented(&headers(&[("authorization", "Basic eDp5")])).is_err());
        assert!(presented(&headers(&[])).is_err());
        assert!(matches!(
            presented(&headers(&[("authorization", "bearer abc")])),
            Ok(Presented::Bearer("abc"))
        ));
    }

    #[test]
    fn session_cookies_are_strict_and_secure_behind_https() {
        let plain = session_cookies(&headers(&[]), "t", "c", 60);
        let plain = plain[0].to_str().unwrap();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        let tls = session_cookies(&headers(&[("x-forwarded-proto", "https")]), "t", "c", 60);
        assert!(tls[0].to_str().unwrap().ends_with("; Secure"));
        assert!(
            !tls[1].to_str().unwrap().contains("HttpOnly"),
            "the console reads it"
        );
    }
}
