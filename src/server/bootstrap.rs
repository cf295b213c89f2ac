//! Start-up steps shared by `serve`, `init-db` and the CLI's store commands:
//! load the secrets (from the first-run key file when the settings have
//! none), open and migrate the store, make sure an admin exists, build
//! `AppState`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admin::Identity;
use super::auth::KeyCache;
use super::{App, AppState};
use crate::config::Settings;
use crate::secrets::{Secrets, password};
use crate::store::{AuditEntry, DbUrl, LogWriter, MigrationReport, Role, Store, redact_url};
use crate::upstream::{HttpClient, Router};

/// Opens the configured database and brings its schema up to date.
pub async fn open_store(settings: &Settings) -> anyhow::Result<(Store, MigrationReport)> {
    let url = DbUrl::parse(&settings.database.url).map_err(crate::config::ConfigError)?;
    let store = Store::open(
        &url,
        settings.database.pool_size,
        settings.database.pool_timeout,
    )
    .await
    .with_context(|| {
        format!(
            "cannot open database {}",
            redact_url(&settings.database.url)
        )
    })?;
    let report = store.migrate().await.with_context(|| {
        format!(
            "cannot migrate database {}",
            redact_url(&settings.database.url)
        )
    })?;
    Ok((store, report))
}

/// Creates the first admin when none exists: with `ADMIN_PASSWORD`, or with a
/// generated password printed once. There is no default password.
pub async fn ensure_admin(store: &Store, settings: &Settings) -> anyhow::Result<()> {
    if store.count_active_admins().await? > 0 {
        return Ok(());
    }
    let (password, generated) = match &settings.admin.password {
        Some(p) => (p.expose().to_string(), false),
        None => (password::generate(), true),
    };
    let hash = password::hash(password.clone()).await?;
    let user = store
        .create_user(&settings.admin.email, &hash, Role::Admin)
        .await
        .context("cannot create the first admin")?;
    store
        .audit(
            AuditEntry::new("bootstrap", "user.create")
                .client_addr("local")
                .target(&user.email)
                .detail("role=admin"),
        )
        .await?;
    if generated {
        crate::note!(
            "\n=====================================================================\n\
             created the first admin user\n    email:    {}\n    password: {}\n\
             this password is shown once; store it now (or set ADMIN_PASSWORD)\n\
             =====================================================================\n",
            user.email,
            password
        );
    } else {
        crate::note!(
            "created the first admin user {} with ADMIN_PASSWORD",
            user.email
        );
    }
    Ok(())
}

/// Where the first-run key file lives: beside a SQLite database file. An
/// in-memory database has no such place, and neither has a server
/// database, whose replicas must share keys through the environment.
pub fn keyfile_path(settings: &Settings) -> Option<PathBuf> {
    let url = DbUrl::parse(&settings.database.url).ok()?;
    let name = url.path.to_str()?;
    if name == ":memory:" || name.starts_with("file::memory:") {
        return None;
    }
    let dir = url.path.parent().unwrap_or_else(|| Path::new(""));
    Some(dir.join(crate::secrets::keyfile::FILE_NAME))
}

/// Loads `JWT_SECRET_KEY` and `ENCRYPTION_KEY` as `serve` and the CLI both
/// must (the same keys, or sealed values would not open), and says where
/// they came from: one line for the key file, a loud warning for
/// ephemeral keys.
pub fn load_secrets(settings: &Settings) -> anyhow::Result<Secrets> {
    let secrets = Secrets::load_with_file(&settings.secrets, keyfile_path(settings).as_deref())?;
    if let Some(line) = secrets.keyfile_note() {
        crate::note!("{line}");
    }
    let warnings = secrets.warnings();
    if !warnings.is_empty() {
        let bar = "!".repeat(72);
        crate::note!("\n{bar}");
        for warning in &warnings {
            crate::note!("WARNING: {warning}");
        }
        crate::note!("{bar}\n");
    }
    Ok(secrets)
}

/// Everything `serve` needs, built from settings.
pub async fn build_state(settings: Settings) -> anyhow::Result<AppState> {
    let secrets = load_secrets(&settings)?;
    let (store, report) = open_store(&settings).await?;
    if report.changed() {
        tracing::info!(from = report.from, to = report.to, "database migrated");
    }
    ensure_admin(&store, &settings).await?;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let http = HttpClient::new(&settings.http).context("cannot build the HTTP client")?;
    let catalog = crate::upstream::catalog::Catalog::new(&settings.catalog)?;
    let router = Router::new(&settings.routing, catalog);
    crate::upstream::sources::load_all(&router, &store, &secrets.sealer, &settings).await?;
    if let Some(path) = settings.server.providers_file.clone() {
        crate::upstream::sources::watch(
            router.clone(),
            store.clone(),
            secrets.sealer.clone(),
            settings.clone(),
            path,
            &tracker,
            shutdown.clone(),
        );
    }
    let logs = LogWriter::spawn(store.clone(), &tracker, shutdown.clone());
    let keys = KeyCache::new(store.clone(), &tracker, shutdown.clone());
    let identity = Identity::start(
        &settings,
        secrets.jwt.clone(),
        store.clone(),
        &tracker,
        shutdown.clone(),
    )
    .await
    .context("cannot load the users")?;
    Ok(AppState(Arc::new(App {
        settings,
        store,
        secrets,
        keys,
        http,
        router,
        signatures: Default::default(),
        identity,
        logs,
        tracker,
        shutdown,
    })))
}
