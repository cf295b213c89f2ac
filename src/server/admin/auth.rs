//! `/api/auth/*`: password login, logout, who am I, changing one's own
//! password. Sign-on through a provider is [`super::sso`].
//!
//! Login answers the same `invalid email or password` whether the email is
//! unknown, the password wrong or the user disabled, after the same argon2
//! work (a dummy hash for unknown emails). Failed attempts are throttled per
//! account and per client address ([`super::throttle`]): early attempts get
//! 429 with `Retry-After` before any password is checked.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::access::{self, Permission};
use super::session::{self, ClientAddr, Session};
use super::users::UserView;
use super::{ApiError, ApiJson, ApiResult};
use crate::error::Error;
use crate::secrets::password;
use crate::server::AppState;
use crate::store::User;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// `true` from the browser console: the session goes into an HttpOnly
    /// cookie and the answer carries the CSRF token instead of the token.
    #[serde(default)]
    pub cookie: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// The bearer token (null for cookie sessions: the browser never sees it).
    pub token: Option<String>,
    pub token_type: &'static str,
    /// Unix seconds.
    pub expires_at: u64,
    /// For cookie sessions: send it as `x-csrf-token` on every unsafe request.
    pub csrf_token: Option<String>,
    pub user: UserView,
}

fn invalid_login() -> ApiError {
    ApiError::from(Error::Authentication("invalid email or password".into()))
}

fn too_many(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::from(Error::RateLimited(format!(
        "too many failed logins; try again in {secs} s"
    )))
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// Starts a session for `user`: a token in the body, or cookies.
fn start_session(
    state: &AppState,
    user: &User,
    request: &HeaderMap,
    cookie: bool,
) -> ApiResult<Response> {
    let (token, claims) = session::issue(state, user)?;
    let mut body = LoginResponse {
        token: None,
        token_type: "bearer",
        expires_at: claims.exp,
        csrf_token: None,
        user: user.into(),
    };
    if !cookie {
        body.token = Some(token);
        return Ok(ApiJson(body).into_response());
    }
    let csrf = state.identity.jwt.csrf_token(&claims.jti);
    body.csrf_token = Some(csrf.clone());
    let mut response = ApiJson(body).into_response();
    for value in session::session_cookies(request, &token, &csrf, state.identity.lifetime_secs) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Logs in with email and password.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest, security(()),
    responses((status = 200, body = LoginResponse), (status = 401, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody, description = "throttled; see Retry-After")))]
pub async fn login(
    state: AppState,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(request): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let email = request.email.trim().to_lowercase();
    let account_key = format!("account:{email}");
    let address_key = format!("address:{addr}");
    let wait = {
        let logins = state.identity.logins();
        let now = Instant::now();
        let account = logins.accounts.check(&account_key, now).err();
        let address = logins.addresses.check(&address_key, now).err();
        account.max(address)
    };
    if let Some(wait) = wait {
        return Ok(too_many(wait));
    }
    let user = state.store.find_user_by_email(&email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let matches = password::verify(request.password, stored).await;
    let user = match user {
        Some(user) if matches && !user.disabled => user,
        _ => {
            let mut logins = state.identity.logins();
            let now = Instant::now();
            logins.accounts.failed(&account_key, now);
            logins.addresses.failed(&address_key, now);
            tracing::info!(%addr, "failed login");
            return Err(invalid_login());
        }
    };
    state.identity.logins().accounts.succeeded(&account_key);
    state.store.record_login(user.id).await?;
    start_session(&state, &user, &headers, request.cookie)
}

/// Ends every session of the calling user (all devices) and clears the cookies.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = super::ErrorBody)))]
pub async fn logout(state: AppState, session: Session) -> ApiResult<Response> {
    let user = state.store.bump_token_version(session.user_id).await?;
    state.identity.remember(&user);
    let mut response = StatusCode::NO_CONTENT.into_response();
    for value in session::cleared_cookies() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeResponse {
    pub user: UserView,
    /// What this user may do, from their role.
    pub permissions: Vec<Permission>,
    /// When this session ends, Unix seconds.
    pub expires_at: u64,
}

/// The calling user, their permissions and their session's end.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth",
    responses((status = 200, body = MeResponse), (status = 401, body = super::ErrorBody)))]
pub async fn me(state: AppState, session: Session) -> ApiResult<ApiJson<MeResponse>> {
    let user = state.store.user(session.user_id).await?;
    Ok(ApiJson(MeResponse {
        user: (&user).into(),
        permissions: access::permissions(session.role),
        expires_at: session.claims.exp,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// At least 12 characters.
    pub new_password: String,
}

/// Changes the caller's password. Every other session of the user ends;
/// the answer starts a fresh one (a token, or new cookies for a cookie
/// session).
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 200, body = LoginResponse), (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody), (status = 429, body = super::ErrorBody)))]
pub async fn change_password(
    state: AppState,
    session: Session,
    headers: HeaderMap,
    ApiJson(change): ApiJson<PasswordChange>,
) -> ApiResult<Response> {
    password::check_strength(&change.new_password)
        .map_err(|e| Error::InvalidRequest(format!("new_password: {e}")))?;
    let account_key = format!("account:{}", session.email);
    if let Err(wait) = state
        .identity
        .logins()
        .accounts
        .check(&account_key, Instant::now())
    {
        return Ok(too_many(wait));
    }
    let user = state.store.user(session.user_id).await?;
    if !password::verify(change.current_password, Some(user.password_hash.clone())).await {
        state
            .identity
            .logins()
            .accounts
            .failed(&account_key, Instant::now());
        return Err(Error::Authentication("current_password is wrong".into()).into());
    }
    let hash = password::hash(change.new_password)
        .await
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let user = state.store.set_password(user.id, &hash).await?;
    state
        .store
        .audit(session.audit("user.password_change").target(&user.email))
        .await?;
    let cookie = !headers.contains_key(header::AUTHORIZATION);
    start_session(&state, &user, &headers, cookie)
}
