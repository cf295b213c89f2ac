//! `/api/users`: users and roles, for admins. Passwords set here are
//! generated, shown once in the answer and never again; every change is
//! audited and takes effect on the user's sessions at once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::access::{Require, need};
use super::{ApiJson, ApiPath, ApiResult};
use crate::error::Error;
use crate::secrets::password;
use crate::server::AppState;
use crate::store::{Role, User, UserChange};

/// A user as the API shows it (never the password hash).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; null before the first login.
    pub last_login_at: Option<i64>,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        UserView {
            id: user.id,
            email: user.email.clone(),
            role: user.role,
            disabled: user.disabled,
            created_at: user.created_at,
            last_login_at: user.last_login_at,
        }
    }
}

/// A plausible email: one `@` with something on both sides, no spaces.
pub fn check_email(email: &str) -> Result<(), Error> {
    let valid = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !domain.contains('@')
    }) && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "`{email}` is not an email address"
        )))
    }
}

/// Lists every user.
#[utoipa::path(get, path = "/api/users", tag = "users",
    responses((status = 200, body = [UserView]), (status = 403, body = super::ErrorBody)))]
pub async fn list(
    state: AppState,
    _admin: Require<need::ManageUsers>,
) -> ApiResult<ApiJson<Vec<UserView>>> {
    let users = state.store.list_users().await?;
    Ok(ApiJson(users.iter().map(UserView::from).collect()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    pub role: Role,
    /// At least 12 characters; when left out, one is generated and returned once.
    pub password: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedUser {
    pub user: UserView,
    /// The generated password, shown only in this answer (null when one was given).
    pub password: Option<String>,
}

/// Creates a user.
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = CreatedUser), (status = 400, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody)))]
pub async fn create(
    state: AppState,
    admin: Require<need::ManageUsers>,
    ApiJson(new): ApiJson<NewUser>,
) -> ApiResult<Response> {
    let email = new.email.trim().to_lowercase();
    check_email(&email)?;
    let (password, generated) = match new.password {
        Some(p) => (p, false),
        None => (password::generate(), true),
    };
    let hash = password::hash(password.clone())
        .await
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let user = state.store.create_user(&email, &hash, new.role).await?;
    state.identity.remember(&user);
    state
        .store
        .audit(
            admin
                .audit("user.create")
                .target(&user.email)
                .detail_json(serde_json::json!({"role": user.role})),
        )
        .await?;
    let body = CreatedUser {
        user: (&user).into(),
        password: generated.then_some(password),
    };
    Ok((StatusCode::CREATED, ApiJson(body)).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// Changes a user's role or disables/enables them; ends their sessions.
/// The last active admin cannot be demoted or disabled (409).
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", request_body = UserUpdate,
    params(("id" = i64, Path)),
    responses((status = 200, body = UserView), (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody)))]
pub async fn update(
    state: AppState,
    admin: Require<need::ManageUsers>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(change): ApiJson<UserUpdate>,
) -> ApiResult<ApiJson<UserView>> {
    if change.role.is_none() && change.disabled.is_none() {
        return Err(
            Error::InvalidRequest("nothing to change: give role and/or disabled".into()).into(),
        );
    }
    let user = state
        .store
        .update_user(
            id,
            UserChange {
                role: change.role,
                disabled: change.disabled,
            },
        )
        .await?;
    state.identity.remember(&user);
    state
        .store
        .audit(
            admin
                .audit("user.update")
                .target(&user.email)
                .detail_json(serde_json::json!({"role": change.role, "disabled": change.disabled})),
        )
        .await?;
    Ok(ApiJson((&user).into()))
}

/// Deletes a user; their sessions end at once. The last active admin
/// cannot be deleted (409).
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody)))]
pub async fn delete(
    state: AppState,
    admin: Require<need::ManageUsers>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    let user = state.store.delete_user(id).await?;
    state.identity.forget(user.id);
    state
        .store
        .audit(admin.audit("user.delete").target(&user.email))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResetPassword {
    pub user: UserView,
    /// The new password, shown only in this answer.
    pub password: String,
}

/// Replaces a user's password with a generated one-time password, shown
/// once; the user's sessions end.
#[utoipa::path(post, path = "/api/users/{id}/password", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = ResetPassword), (status = 404, body = super::ErrorBody)))]
pub async fn reset_password(
    state: AppState,
    admin: Require<need::ManageUsers>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<ResetPassword>> {
    let password = password::generate();
    let hash = password::hash(password.clone())
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    let user = state.store.set_password(id, &hash).await?;
    state.identity.remember(&user);
    state
        .store
        .audit(admin.audit("user.password_reset").target(&user.email))
        .await?;
    Ok(ApiJson(ResetPassword {
        user: (&user).into(),
        password,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_loosely() {
        for ok in ["a@b.io", "first.last+tag@sub.example.com"] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "@b.io", "a@b", "a@@b.io", "a b@c.io", "a@b.io "] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
