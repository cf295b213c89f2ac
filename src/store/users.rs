//! Users of the admin API and console.

use tokio_rusqlite::rusqlite::params;

use super::row::{Row, sqlite_all};
use super::{Engine, Result, Store, StoreError, now_ms};

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

fn decode(row: &impl Row) -> Result<User> {
    Ok(User {
        id: row.col(0)?,
        email: row.col(1)?,
        password_hash: row.col(2)?,
        role: Role::parse(&row.col::<String>(3)?)?,
        disabled: row.col(4)?,
        created_at: row.col(5)?,
        updated_at: row.col(6)?,
    })
}

impl Store {
    /// Creates a user; an existing email (any case) is a conflict.
    pub async fn create_user(&self, email: &str, password_hash: &str, role: Role) -> Result<User> {
        let email = email.trim().to_lowercase();
        let hash = password_hash.to_string();
        let now = now_ms();
        let id = match &self.engine {
            Engine::Sqlite(db) => {
                let (email, hash) = (email.clone(), hash.clone());
                db.write(move |conn| {
                    let inserted = conn.execute(
                        "INSERT INTO users (email, password_hash, role, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (email) DO NOTHING",
                        params![email, hash, role.as_str(), now],
                    )?;
                    Ok((inserted == 1).then(|| conn.last_insert_rowid()))
                })
                .await?
            }
            Engine::Postgres(db) => db
                .client()
                .await?
                .query_opt(
                    "INSERT INTO users (email, password_hash, role, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING RETURNING id",
                    &[&email, &hash, &role.as_str(), &now],
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?,
        };
        let id = id.ok_or_else(|| {
            StoreError::Conflict(format!("a user with email {email} already exists"))
        })?;
        Ok(User {
            id,
            email,
            password_hash: hash,
            role,
            disabled: false,
            created_at: now,
            updated_at: now,
        })
    }

    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.trim().to_lowercase();
        match &self.engine {
            Engine::Sqlite(db) => {
                db.read(move |conn| {
                    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = ?1");
                    Ok(sqlite_all(conn, &sql, [email], |row| decode(row))?.pop())
                })
                .await
            }
            Engine::Postgres(db) => db
                .client()
                .await?
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM users WHERE lower(email) = $1"),
                    &[&email],
                )
                .await?
                .as_ref()
                .map(decode)
                .transpose(),
        }
    }

    /// Admins that can log in; start-up creates one when there is none.
    pub async fn count_active_admins(&self) -> Result<u64> {
        let n: i64 = match &self.engine {
            Engine::Sqlite(db) => {
                db.read(|conn| {
                    Ok(conn.query_row(
                        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
                        [],
                        |row| row.get(0),
                    )?)
                })
                .await?
            }
            Engine::Postgres(db) => db
                .client()
                .await?
                .query_one(
                    "SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled",
                    &[],
                )
                .await?
                .try_get(0)?,
        };
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[tokio::test]
    async fn users_are_unique_by_email_case_insensitively() {
        for test in testing::each().await {
            let store = &test.store;
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
}
