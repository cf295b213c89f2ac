//! Roles and permissions of the admin API: which role may do what (a pure
//! table, [`allows`]), and the [`Require`] extractor that makes a handler's
//! requirement part of its signature.
//!
//! The table, by role:
//! - `admin`: everything.
//! - `operator`: providers, all client keys, routing config, health (read
//!   and run checks), plus the viewer's read-only stats and logs.
//! - `viewer`: read-only stats, logs, health.
//! - `member`: the chat playground, their own conversations and their own
//!   client keys. Every role has these three.
//!
//! This module never authenticates: [`super::session`] does, before any
//! handler runs, and leaves the [`Session`] in the request extensions.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiError;
use super::session::Session;
use crate::error::Error;
use crate::store::Role;

/// Declares [`Permission`], its list [`Permission::ALL`], and one marker
/// type per permission in [`need`], from a single list.
macro_rules! permissions {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// One thing a user may do through `/api`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum Permission {
            $($(#[doc = $doc])* $name,)*
        }

        impl Permission {
            pub const ALL: &[Permission] = &[$(Permission::$name,)*];
        }

        /// Marker types for [`Require`], one per [`Permission`].
        pub mod need {
            $(
                #[doc = concat!("Needs [`Permission::", stringify!($name), "`](super::Permission::", stringify!($name), ").")]
                #[derive(Debug)]
                pub struct $name;
                impl super::Need for $name {
                    const PERMISSION: super::Permission = super::Permission::$name;
                }
            )*
        }
    };
}

permissions!(
    /// Users and roles: list, create, change, delete, reset passwords.
    ManageUsers,
    /// Read the audit log.
    ReadAudit,
    /// See providers (never their secrets).
    ReadProviders,
    /// Create, change, delete, enable, test providers.
    WriteProviders,
    /// See and manage every client API key.
    ManageKeys,
    /// Create, list and revoke one's own client API keys.
    OwnKeys,
    /// Read the live routing config.
    ReadRouting,
    /// Change the live routing config.
    WriteRouting,
    /// Read provider health and its history.
    ReadHealth,
    /// Run a health check now.
    RunHealth,
    /// Read usage statistics.
    ReadStats,
    /// Read request logs.
    ReadLogs,
    /// Use the chat playground.
    Playground,
    /// Create, read, rename, delete one's own conversations.
    OwnConversations,
);

/// Whether `role` has `permission`: the whole policy, as one match.
pub fn allows(role: Role, permission: Permission) -> bool {
    use Permission::*;
    match role {
        Role::Admin => true,
        Role::Operator => !matches!(permission, ManageUsers | ReadAudit),
        Role::Viewer => matches!(
            permission,
            ReadStats | ReadLogs | ReadHealth | Playground | OwnConversations | OwnKeys
        ),
        Role::Member => matches!(permission, Playground | OwnConversations | OwnKeys),
    }
}

/// Every permission of `role`, in [`Permission::ALL`] order (for `/api/auth/me`).
pub fn permissions(role: Role) -> Vec<Permission> {
    Permission::ALL
        .iter()
        .copied()
        .filter(|p| allows(role, *p))
        .collect()
}

/// A type naming one permission, so handlers can write `Require<need::ManageUsers>`.
pub trait Need {
    const PERMISSION: Permission;
}

/// The session of a user who has permission `P`; 401 without a session,
/// 403 without the permission.
#[derive(Debug)]
pub struct Require<P: Need>(pub Session, PhantomData<P>);

impl<P: Need> std::ops::Deref for Require<P> {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.0
    }
}

impl<S: Send + Sync, P: Need> FromRequestParts<S> for Require<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let session = Session::from_request_parts(parts, state).await?;
        if !allows(session.role, P::PERMISSION) {
            return Err(Error::PermissionDenied(format!(
                "your role ({}) lacks the {} permission",
                session.role.as_str(),
                serde_json::to_value(P::PERMISSION)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ))
            .into());
        }
        Ok(Require(session, PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn role_permission_table() {
        // (permission, admin, operator, viewer, member)
        let table = [
            (ManageUsers, true, false, false, false),
            (ReadAudit, true, false, false, false),
            (ReadProviders, true, true, false, false),
            (WriteProviders, true, true, false, false),
            (ManageKeys, true, true, false, false),
            (OwnKeys, true, true, true, true),
            (ReadRouting, true, true, false, false),
            (WriteRouting, true, true, false, false),
            (ReadHealth, true, true, true, false),
            (RunHealth, true, true, false, false),
            (ReadStats, true, true, true, false),
            (ReadLogs, true, true, true, false),
            (Playground, true, true, true, true),
            (OwnConversations, true, true, true, true),
        ];
        assert_eq!(
            table.len(),
            Permission::ALL.len(),
            "every permission listed"
        );
        for (permission, admin, operator, viewer, member) in table {
            for (role, expected) in [
                (Role::Admin, admin),
                (Role::Operator, operator),
                (Role::Viewer, viewer),
                (Role::Member, member),
            ] {
                assert_eq!(
                    allows(role, permission),
                    expected,
                    "{role:?} {permission:?}"
                );
            }
        }
        assert_eq!(
            permissions(Role::Member),
            [OwnKeys, Playground, OwnConversations]
        );
    }
}
