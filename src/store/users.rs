//! Users of the admin API and console: email, argon2id hash, role, whether
//! disabled, and the token version that revokes every older session of the
//! user when it is bumped.
//!
//! The one rule kept here is an invariant of the table, checked inside the
//! writing transaction so two concurrent changes cannot both pass it: an
//! update or delete that would leave no active admin is rolled back with
//! [`StoreError::Conflict`].

use tokio_rusqlite::rusqlite::{self, OptionalExtension, params};

use super::{Result, Store, StoreError, now_ms};

/// What a user may do; the permission table is `server::admin::access`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    /// Sessions carry the version they were issued under; a bump ends them.
    pub token_version: i64,
    pub last_login_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A change to a user's role or disabled flag; `None` keeps the value.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

const COLUMNS: &str = "id, email, password_hash, role, disabled, token_version, last_login_at, created_at, updated_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(User, String)> {
    Ok((
        User {
            id: row.get(0)?,
            email: row.get(1)?,
            password_hash: row.get(2)?,
            role: Role::Member,
            disabled: row.get(4)?,
            token_version: row.get(5)?,
            last_login_at: row.get(6)?,
            created_at: row.get(7)?,
            updated_at: row.get(8)?,
        },
        row.get(3)?,
    ))
}

fn finish((mut user, role): (User, String)) -> Result<User> {
    user.role =
        Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role}")))?;
    Ok(user)
}

fn select_user(conn: &rusqlite::Connection, id: i64) -> Result<User> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()?
    .ok_or_else(|| StoreError::NotFound(format!("no user with id {id}")))
}

fn active_admins(conn: &rusqlite::Connection) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
        [],
        |row| row.get::<_, i64>(0),
    )? as u64)
}

fn require_an_admin(conn: &rusqlite::Connection) -> Result<()> {
    if active_admins(conn)? == 0 {
        return Err(StoreError::Conflict(
            "this would leave no active admin; make another user admin first".into(),
        ));
    }
    Ok(())
}

impl Store {
    /// Creates a user; an existing email (any case) is a conflict.
    pub async fn create_user(&self, email: &str, password_hash: &str, role: Role) -> Result<User> {
        let email = email.trim().to_lowercase();
        let hash = password_hash.to_string();
        self.write(move |conn| {
            let now = now_ms();
            let inserted = conn.execute(
                "INSERT INTO users (email, password_hash, role, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (email) DO NOTHING",
                params![email, hash, role.as_str(), now],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!(
                    "a user with email {email} already exists"
                )));
            }
            select_user(conn, conn.last_insert_rowid())
        })
        .await
    }

    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.trim().to_lowercase();
        self.read(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE email = ?1"),
                [email],
                from_row,
            )
            .optional()?
            .map(finish)
            .transpose()
        })
        .await
    }

    /// The user with this id, or [`StoreError::NotFound`].
    pub async fn user(&self, id: i64) -> Result<User> {
        self.read(move |conn| select_user(conn, id)).await
    }

    /// Every user, oldest first.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM users ORDER BY id"))?;
            let rows = stmt.query_map([], from_row)?;
            rows.map(|row| finish(row?)).collect()
        })
        .await
    }

    /// Admins that can log in; start-up creates one when there is none.
    pub async fn count_active_admins(&self) -> Result<u64> {
        self.read(active_admins).await
    }

    /// Changes role and/or disabled flag, bumping the token version so the
    /// user's sessions end; refused if no active admin would remain.
    pub async fn update_user(&self, id: i64, change: UserChange) -> Result<User> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let before = select_user(&tx, id)?;
            let role = change.role.unwrap_or(before.role);
            let disabled = change.disabled.unwrap_or(before.disabled);
            tx.execute(
                "UPDATE users SET role = ?2, disabled = ?3, token_version = token_version + 1,
                 updated_at = ?4 WHERE id = ?1",
                params![id, role.as_str(), disabled, now_ms()],
            )?;
            require_an_admin(&tx)?;
            let user = select_user(&tx, id)?;
            tx.commit()?;
            Ok(user)
        })
        .await
    }

    /// Deletes a user (their API keys keep working, ownerless); refused if
    /// no active admin would remain.
    pub async fn delete_user(&self, id: i64) -> Result<User> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let user = select_user(&tx, id)?;
            tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
            require_an_admin(&tx)?;
            tx.commit()?;
            Ok(user)
        })
        .await
    }

    /// Replaces the password hash and bumps the token version.
    pub async fn set_password(&self, id: i64, password_hash: &str) -> Result<User> {
        let hash = password_hash.to_string();
        self.write(move |conn| {
            let changed = conn.execute(
                "UPDATE users SET password_hash = ?2, token_version = token_version + 1,
                 updated_at = ?3 WHERE id = ?1",
                params![id, hash, now_ms()],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("no user with id {id}")));
            }
            select_user(conn, id)
        })
        .await
    }

    /// Ends every session of the user (logout); returns the new version.
    pub async fn bump_token_version(&self, id: i64) -> Result<User> {
        self.write(move |conn| {
            conn.execute(
                "UPDATE users SET token_version = token_version + 1, updated_at = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )?;
            select_user(conn, id)
        })
        .await
    }

    pub async fn record_login(&self, id: i64) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "UPDATE users SET last_login_at = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[tokio::test]
    async fn users_are_unique_by_email_case_insensitively() {
        let (store, _dir) = testing::store().await;
        assert_eq!(store.count_active_admins().await.unwrap(), 0);
        let user = store
            .create_user("Ops@Example.com", "$argon2id$x", Role::Admin)
            .await
            .unwrap();
        assert_eq!(user.email, "ops@example.com");
        let err = store
            .create_user("OPS@example.com", "h", Role::Viewer)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)));
        let found = store
            .find_user_by_email("ops@EXAMPLE.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.role, Role::Admin);
        assert_eq!(store.count_active_admins().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn the_last_active_admin_cannot_be_demoted_disabled_or_deleted() {
        let (store, _dir) = testing::store().await;
        let first = store.create_user("a@x.io", "h", Role::Admin).await.unwrap();
        let demote = UserChange {
            role: Some(Role::Viewer),
            ..UserChange::default()
        };
        let disable = UserChange {
            disabled: Some(true),
            ..UserChange::default()
        };
        for change in [demote, disable] {
            let err = store.update_user(first.id, change).await.unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        }
        assert!(matches!(
            store.delete_user(first.id).await.unwrap_err(),
            StoreError::Conflict(_)
        ));
        let unchanged = store.user(first.id).await.unwrap();
        assert_eq!((unchanged.role, unchanged.disabled), (Role::Admin, false));
        assert_eq!(unchanged.token_version, first.token_version, "rolled back");

        let second = store.create_user("b@x.io", "h", Role::Admin).await.unwrap();
        let demoted = store.update_user(first.id, demote).await.unwrap();
        assert_eq!(demoted.role, Role::Viewer);
        assert_eq!(demoted.token_version, first.token_version + 1);
        assert!(store.delete_user(second.id).await.is_err(), "now the last");
    }

    #[tokio::test]
    async fn password_changes_and_logouts_bump_the_token_version() {
        let (store, _dir) = testing::store().await;
        let user = store
            .create_user("m@x.io", "h", Role::Member)
            .await
            .unwrap();
        let after = store.set_password(user.id, "h2").await.unwrap();
        assert_eq!(after.password_hash, "h2");
        assert_eq!(after.token_version, user.token_version + 1);
        let after = store.bump_token_version(user.id).await.unwrap();
        assert_eq!(after.token_version, user.token_version + 2);
        assert!(matches!(
            store.set_password(999, "h").await.unwrap_err(),
            StoreError::NotFound(_)
        ));
        store.record_login(user.id).await.unwrap();
        assert!(store.user(user.id).await.unwrap().last_login_at.is_some());
        assert_eq!(store.list_users().await.unwrap().len(), 1);
    }
}
