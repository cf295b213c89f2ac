//! Users of the admin API and console: email, argon2id hash, role, whether
//! disabled, and the token version that revokes every older session of the
//! user when it is bumped.
//!
//! The one rule kept here is an invariant of the table, checked inside the
//! writing transaction so two concurrent changes cannot both pass it (SQLite
//! has one writer; PostgreSQL takes an advisory lock first): an update or
//! delete that would leave no active admin is rolled back with
//! [`StoreError::Conflict`].

use tokio_postgres::GenericClient;
use tokio_rusqlite::rusqlite::{self, params};

use super::row::{Decode, Row, sqlite_all};
use super::{Engine, Result, Store, StoreError, now_ms};

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

/// Key of the advisory lock that serializes changes to roles and accounts
/// on PostgreSQL, so the last-admin check cannot race.
const USERS_LOCK: i64 = 0x61_6272_6964_6701;

const NO_ADMIN_LEFT: &str = "this would leave no active admin; make another user admin first";

impl Decode for User {
    fn decode(row: &impl Row) -> Result<Self> {
        let role: String = row.col(3)?;
        Ok(User {
            id: row.col(0)?,
            email: row.col(1)?,
            password_hash: row.col(2)?,
            role: Role::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role}")))?,
            disabled: row.col(4)?,
            token_version: row.col(5)?,
            last_login_at: row.col(6)?,
            created_at: row.col(7)?,
            updated_at: row.col(8)?,
        })
    }
}

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound(format!("no user with id {id}"))
}

fn select_user(conn: &rusqlite::Connection, id: i64) -> Result<User> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
    sqlite_all(conn, &sql, [id], |row| User::decode(row))?
        .pop()
        .ok_or_else(|| not_found(id))
}

async fn pg_select_user(client: &impl GenericClient, id: i64) -> Result<User> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    client
        .query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(User::decode)
        .transpose()?
        .ok_or_else(|| not_found(id))
}

const COUNT_ADMINS_SQLITE: &str =
    "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0";
const COUNT_ADMINS_PG: &str = "SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled";

fn require_an_admin(conn: &rusqlite::Connection) -> Result<()> {
    let n: i64 = conn.query_row(COUNT_ADMINS_SQLITE, [], |row| row.get(0))?;
    if n == 0 {
        return Err(StoreError::Conflict(NO_ADMIN_LEFT.into()));
    }
    Ok(())
}

async fn pg_require_an_admin(client: &impl GenericClient) -> Result<()> {
    let n: i64 = client.query_one(COUNT_ADMINS_PG, &[]).await?.try_get(0)?;
    if n == 0 {
        return Err(StoreError::Conflict(NO_ADMIN_LEFT.into()));
    }
    Ok(())
}

impl Store {
    /// Creates a user; an existing email (any case) is a conflict.
    pub async fn create_user(&self, email: &str, password_hash: &str, role: Role) -> Result<User> {
        let email = email.trim().to_lowercase();
        let hash = password_hash.to_string();
        let now = now_ms();
        let created = match &self.engine {
            Engine::Sqlite(db) => {
                let email = email.clone();
                db.write(move |conn| {
                    let inserted = conn.execute(
                        "INSERT INTO users (email, password_hash, role, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (email) DO NOTHING",
                        params![email, hash, role.as_str(), now],
                    )?;
                    (inserted == 1)
                        .then(|| select_user(conn, conn.last_insert_rowid()))
                        .transpose()
                })
                .await?
            }
            Engine::Postgres(db) => db
                .client()
                .await?
                .query_opt(
                    &format!(
                        "INSERT INTO users (email, password_hash, role, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
                    ),
                    &[&email, &hash, &role.as_str(), &now],
                )
                .await?
                .as_ref()
                .map(User::decode)
                .transpose()?,
        };
        created.ok_or_else(|| {
            StoreError::Conflict(format!("a user with email {email} already exists"))
        })
    }

    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.trim().to_lowercase();
        match &self.engine {
            Engine::Sqlite(db) => {
                db.read(move |conn| {
                    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = ?1");
                    Ok(sqlite_all(conn, &sql, [email], |row| User::decode(row))?.pop())
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
                .map(User::decode)
                .transpose(),
        }
    }

    /// The user with this id, or [`StoreError::NotFound`].
    pub async fn user(&self, id: i64) -> Result<User> {
        match &self.engine {
            Engine::Sqlite(db) => db.read(move |conn| select_user(conn, id)).await,
            Engine::Postgres(db) => pg_select_user(&**db.client().await?, id).await,
        }
    }

    /// Every user, oldest first.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.all(format!("SELECT {COLUMNS} FROM users ORDER BY id"))
            .await
    }

    /// Admins that can log in; start-up creates one when there is none.
    pub async fn count_active_admins(&self) -> Result<u64> {
        let n: i64 = match &self.engine {
            Engine::Sqlite(db) => {
                db.read(|conn| Ok(conn.query_row(COUNT_ADMINS_SQLITE, [], |row| row.get(0))?))
                    .await?
            }
            Engine::Postgres(db) => db
                .client()
                .await?
                .query_one(COUNT_ADMINS_PG, &[])
                .await?
                .try_get(0)?,
        };
        Ok(n as u64)
    }

    /// Changes role and/or disabled flag, bumping the token version so the
    /// user's sessions end; refused if no active admin would remain.
    pub async fn update_user(&self, id: i64, change: UserChange) -> Result<User> {
        let now = now_ms();
        let apply = move |before: &User| {
            (
                change.role.unwrap_or(before.role).as_str(),
                change.disabled.unwrap_or(before.disabled),
            )
        };
        match &self.engine {
            Engine::Sqlite(db) => {
                db.write(move |conn| {
                    let tx = conn.transaction()?;
                    let (role, disabled) = apply(&select_user(&tx, id)?);
                    tx.execute(
                        "UPDATE users SET role = ?2, disabled = ?3, token_version = token_version + 1,
                         updated_at = ?4 WHERE id = ?1",
                        params![id, role, disabled, now],
                    )?;
                    require_an_admin(&tx)?;
                    let user = select_user(&tx, id)?;
                    tx.commit()?;
                    Ok(user)
                })
                .await
            }
            Engine::Postgres(db) => {
                let mut client = db.client().await?;
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&USERS_LOCK])
                    .await?;
                let (role, disabled) = apply(&pg_select_user(&*tx, id).await?);
                tx.execute(
                    "UPDATE users SET role = $2, disabled = $3, token_version = token_version + 1,
                     updated_at = $4 WHERE id = $1",
                    &[&id, &role, &disabled, &now],
                )
                .await?;
                pg_require_an_admin(&*tx).await?;
                let user = pg_select_user(&*tx, id).await?;
                tx.commit().await?;
                Ok(user)
            }
        }
    }

    /// Deletes a user (their API keys keep working, ownerless); refused if
    /// no active admin would remain.
    pub async fn delete_user(&self, id: i64) -> Result<User> {
        match &self.engine {
            Engine::Sqlite(db) => {
                db.write(move |conn| {
                    let tx = conn.transaction()?;
                    let user = select_user(&tx, id)?;
                    tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
                    require_an_admin(&tx)?;
                    tx.commit()?;
                    Ok(user)
                })
                .await
            }
            Engine::Postgres(db) => {
                let mut client = db.client().await?;
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&USERS_LOCK])
                    .await?;
                let user = pg_select_user(&*tx, id).await?;
                tx.execute("DELETE FROM users WHERE id = $1", &[&id])
                    .await?;
                pg_require_an_admin(&*tx).await?;
                tx.commit().await?;
                Ok(user)
            }
        }
    }

    /// Runs one `UPDATE users ... WHERE id = $1` (the same text on both
    /// engines, `$2` being now) and returns the user as it is after it.
    async fn update_one(&self, id: i64, set: &'static str, value: Option<String>) -> Result<User> {
        let now = now_ms();
        let sql = format!("UPDATE users SET {set} WHERE id = $1");
        match &self.engine {
            Engine::Sqlite(db) => {
                // SQLite's `?N` is PostgreSQL's `$N`.
                let sql = sql.replace('$', "?");
                db.write(move |conn| {
                    let changed = match value {
                        Some(v) => conn.execute(&sql, params![id, now, v])?,
                        None => conn.execute(&sql, params![id, now])?,
                    };
                    if changed == 0 {
                        return Err(not_found(id));
                    }
                    select_user(conn, id)
                })
                .await
            }
            Engine::Postgres(db) => {
                let client = db.client().await?;
                let changed = match &value {
                    Some(v) => client.execute(&sql, &[&id, &now, v]).await?,
                    None => client.execute(&sql, &[&id, &now]).await?,
                };
                if changed == 0 {
                    return Err(not_found(id));
                }
                pg_select_user(&**client, id).await
            }
        }
    }

    /// Replaces the password hash and bumps the token version.
    pub async fn set_password(&self, id: i64, password_hash: &str) -> Result<User> {
        self.update_one(
            id,
            "password_hash = $3, token_version = token_version + 1, updated_at = $2",
            Some(password_hash.to_string()),
        )
        .await
    }

    /// Ends every session of the user (logout); returns the new version.
    pub async fn bump_token_version(&self, id: i64) -> Result<User> {
        self.update_one(
            id,
            "token_version = token_version + 1, updated_at = $2",
            None,
        )
        .await
    }

    pub async fn record_login(&self, id: i64) -> Result<()> {
        self.update_one(id, "last_login_at = $2", None).await?;
        Ok(())
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

    #[tokio::test]
    async fn the_last_active_admin_cannot_be_demoted_disabled_or_deleted() {
        for test in testing::each().await {
            let store = &test.store;
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
    }

    #[tokio::test]
    async fn password_changes_and_logouts_bump_the_token_version() {
        for test in testing::each().await {
            let store = &test.store;
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
}
