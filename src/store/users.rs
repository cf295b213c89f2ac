//! Users of the admin API and console.

use tokio_rusqlite::rusqlite::{self, OptionalExtension, params};

use super::{Result, Store, StoreError, now_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            other => Err(StoreError::Corrupt(format!("unknown role {other}"))),
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
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, email, password_hash, role, disabled, created_at, updated_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(User, String)> {
    let role: String = row.get(3)?;
    Ok((
        User {
            id: row.get(0)?,
            email: row.get(1)?,
            password_hash: row.get(2)?,
            role: Role::Viewer,
            disabled: row.get(4)?,
            created_at: row.get(5)?,
            updated_at: row.get(6)?,
        },
        role,
    ))
}

fn finish((mut user, role): (User, String)) -> Result<User> {
    user.role = Role::parse(&role)?;
    Ok(user)
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
            Ok(User {
                id: conn.last_insert_rowid(),
                email,
                password_hash: hash,
                role,
                disabled: false,
                created_at: now,
                updated_at: now,
            })
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

    /// Admins that can log in; start-up creates one when there is none.
    pub async fn count_active_admins(&self) -> Result<u64> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
                [],
                |row| row.get::<_, i64>(0),
            )? as u64)
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
}
