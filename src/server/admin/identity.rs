//! The identity state a server keeps in memory: the session signing keys,
//! every user's current role, disabled flag and token version (so a token
//! check needs no store round trip), the failed-login throttles, and the
//! single sign-on configuration.
//!
//! The directory is loaded at start, updated at once by this server's own
//! changes ([`Identity::remember`]), and reloaded from the store every
//! [`REFRESH_EVERY`] by a background task, so a change made by another
//! replica or the CLI ends old sessions here within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::sso::Sso;
use super::throttle::{Policy, Throttle};
use crate::config::Settings;
use crate::secrets::JwtKeys;
use crate::store::{Role, Store, User};

/// How often the directory is reloaded from the store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// What a token check needs to know about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub token_version: i64,
}

impl From<&User> for Account {
    fn from(user: &User) -> Self {
        Account {
            email: user.email.clone(),
            role: user.role,
            disabled: user.disabled,
            token_version: user.token_version,
        }
    }
}

#[derive(Debug, Clone)]
struct Known {
    account: Account,
    /// When this entry was last written; a reload that started earlier
    /// must not overwrite it with what it read.
    written: Instant,
}

/// Failed-login throttles, one per key family.
#[derive(Debug)]
pub struct Logins {
    pub accounts: Throttle,
    pub addresses: Throttle,
}

#[derive(Debug)]
pub struct Identity {
    /// Signs and verifies session tokens (`JWT_SECRET_KEY`).
    pub jwt: JwtKeys,
    /// Session lifetime in seconds (`JWT_TOKEN_EXPIRE_MINUTES`).
    pub lifetime_secs: u64,
    directory: Arc<RwLock<HashMap<i64, Known>>>,
    pub logins: Mutex<Logins>,
    /// Single sign-on providers (none unless configured).
    pub sso: Sso,
}

impl Identity {
    /// Loads the directory and starts its refresher on `tracker`.
    pub async fn start(
        settings: &Settings,
        jwt: JwtKeys,
        store: Store,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let directory = Arc::new(RwLock::new(HashMap::new()));
        reload(&store, &directory).await?;
        tracker.spawn(refresh(store, directory.clone(), shutdown));
        Ok(Self {
            jwt,
            lifetime_secs: settings.secrets.jwt_token_expire_minutes * 60,
            directory,
            logins: Mutex::new(Logins {
                accounts: Throttle::new(Policy::ACCOUNT),
                addresses: Throttle::new(Policy::ADDRESS),
            }),
            sso: Sso::new(&settings.sso)?,
        })
    }

    /// The user's current state, if the user exists.
    pub fn account(&self, user_id: i64) -> Option<Account> {
        read(&self.directory)
            .get(&user_id)
            .map(|known| known.account.clone())
    }

    /// Takes a change this server just wrote, effective at once.
    pub fn remember(&self, user: &User) {
        write(&self.directory).insert(
            user.id,
            Known {
                account: user.into(),
                written: Instant::now(),
            },
        );
    }

    /// Drops a deleted user: their tokens stop working at once.
    pub fn forget(&self, user_id: i64) {
        write(&self.directory).remove(&user_id);
    }

    /// Locks the login throttles.
    pub fn logins(&self) -> std::sync::MutexGuard<'_, Logins> {
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

async fn reload(
    store: &Store,
    directory: &RwLock<HashMap<i64, Known>>,
) -> Result<(), crate::store::StoreError> {
    let started = Instant::now();
    let users = store.list_users().await?;
    let mut map = write(directory);
    let fresh: HashMap<i64, Known> = users
        .iter()
        .map(|u| {
            let known = match map.get(&u.id) {
                Some(local) if local.written >= started => local.clone(),
                _ => Known {
                    account: u.into(),
                    written: started,
                },
            };
            (u.id, known)
        })
        .collect();
    // Users created here after the read started are not in it yet: keep them.
    let newer: Vec<(i64, Known)> = map
        .iter()
        .filter(|(id, k)| k.written > started && !fresh.contains_key(id))
        .map(|(id, k)| (*id, k.clone()))
        .collect();
    *map = fresh;
    map.extend(newer);
    Ok(())
}

async fn refresh(
    store: Store,
    directory: Arc<RwLock<HashMap<i64, Known>>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        if let Err(e) = reload(&store, &directory).await {
            tracing::warn!(error = %e, "could not refresh the user directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{UserChange, testing};

    #[tokio::test]
    async fn reload_sees_changes_by_others_but_keeps_newer_local_ones() {
        let (store, _dir) = testing::store().await;
        let a = store.create_user("a@x.io", "h", Role::Admin).await.unwrap();
        let directory = RwLock::new(HashMap::new());
        reload(&store, &directory).await.unwrap();
        assert_eq!(read(&directory)[&a.id].account.token_version, 0);

        // Another replica (or the CLI) demotes the user.
        store.create_user("b@x.io", "h", Role::Admin).await.unwrap();
        let changed = store
            .update_user(
                a.id,
                UserChange {
                    role: Some(Role::Viewer),
                    ..UserChange::default()
                },
            )
            .await
            .unwrap();
        reload(&store, &directory).await.unwrap();
        let seen = read(&directory)[&a.id].account.clone();
        assert_eq!((seen.role, seen.token_version), (Role::Viewer, 1));
        assert_eq!(read(&directory).len(), 2);

        // A local write newer than the reload's start survives it.
        let mut local = changed.clone();
        local.token_version = 9;
        write(&directory).insert(
            a.id,
            Known {
                account: (&local).into(),
                written: Instant::now() + Duration::from_secs(60),
            },
        );
        reload(&store, &directory).await.unwrap();
        assert_eq!(read(&directory)[&a.id].account.token_version, 9);

        store.delete_user(a.id).await.unwrap();
        write(&directory).get_mut(&a.id).unwrap().written = Instant::now();
        reload(&store, &directory).await.unwrap();
        assert!(!read(&directory).contains_key(&a.id), "deleted elsewhere");
    }
}
