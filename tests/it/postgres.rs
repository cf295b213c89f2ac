//! The gateway on PostgreSQL: replicas sharing one database, the database
//! going away and coming back, start-up against an unreachable server, and
//! `migrate-store`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use abridge::store::{DbUrl, Store};

use crate::cli::{Served, abridge, run};
use crate::harness::{MockUpstream, Reply, TestApp, hello, openai_text, providers_toml};
use crate::pg::{Chaos, PgSchema};

async fn open(url: &str) -> Store {
    Store::open(&DbUrl::parse(url).unwrap(), 1, Duration::from_secs(10))
        .await
        .unwrap()
}

/// The binary on the PostgreSQL database at `url`.
fn on(dir: &Path, url: &str) -> Command {
    let mut cmd = abridge(dir);
    cmd.env("ABRIDGE_DATABASE", url);
    cmd
}

/// Polls `check` every 50 ms until it holds; fails after `secs` seconds.
async fn until<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(client: &reqwest::Client, url: &str, key: &str) -> u16 {
    client
        .post(url)
        .header("x-api-key", key)
        .json(&hello("sonnet"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn two_replicas_share_keys_revocations_and_request_logs() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let mock = MockUpstream::start(|_, _| Reply::Json(200, openai_text("hi"))).await;
    let dir = mock.providers_dir();
    let url = schema.url();
    let serve = || {
        let mut cmd = on(dir.path(), &url);
        cmd.env("ABRIDGE_PROVIDERS", "providers.toml")
            .env("ABRIDGE_KEY_CACHE_TTL", "1s")
            .arg("serve");
        cmd
    };
    // Both start at once on the fresh database: one migrates, one creates the admin.
    let (mut first, mut second) = (serve(), serve());
    let (a, b) = tokio::join!(Served::start(&mut first), Served::start(&mut second));

    let (code, out, err) =
        run(on(dir.path(), &url).args(["keys", "create", "--name", "t", "--json"]));
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key = created["key"].as_str().unwrap();
    let client = reqwest::Client::new();
    let mut accepted = 0;
    for server in [&a, &b] {
        assert_eq!(post(&client, &server.url("/v1/messages"), key).await, 200);
        accepted += 1;
    }

    let prefix = created["prefix"].as_str().unwrap();
    let (code, _, err) = run(on(dir.path(), &url).args(["keys", "revoke", prefix]));
    assert_eq!(code, 0, "{err}");
    // Each replica refuses the key once its cached record expires (1 s).
    for server in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match post(&client, &server.url("/v1/messages"), key).await {
                401 => break,
                200 => accepted += 1,
                other => panic!("unexpected status {other}"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} still accepts a revoked key",
                server.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    for server in [a, b] {
        let (exit, log) = server.stop().await;
        assert!(exit.success(), "{exit:?}: {log}");
    }
    // Every accepted request, from either replica, is in the one table.
    assert_eq!(open(&url).await.count_logs().await.unwrap(), accepted);
}

#[tokio::test]
async fn a_store_outage_is_503_for_what_needs_it_and_heals_on_its_own() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let chaos = Chaos::start(schema.addr).await;
    let mock = MockUpstream::start(|_, _| Reply::Json(200, openai_text("hi"))).await;
    let url = schema.url_via(chaos.addr);
    let app = TestApp::spawn_with(&providers_toml(&[("p", "openai", &mock.url(), 1)]), |s| {
        s.database.url = url.clone();
        s.database.pool_timeout = Duration::from_secs(2);
    })
    .await;
    assert_eq!(app.state.store.engine(), "postgres");
    let uncached = app
        .state
        .store
        .create_api_key("later", None, None)
        .await
        .unwrap()
        .key;
    let v1 = app.url("/v1/messages");
    assert_eq!(post(&app.client, &v1, &app.key).await, 200);
    until("the first record is written", 5, || async {
        app.state.logs.counts().written == 1
    })
    .await;

    chaos.cut();
    // A key already looked up keeps working: the request needs no database.
    assert_eq!(post(&app.client, &v1, &app.key).await, 200);
    // One that must be looked up gets a retryable 503 in Anthropic's shape.
    let r = app
        .client
        .post(&v1)
        .header("x-api-key", &uncached)
        .json(&hello("sonnet"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-abridge-error-source"], "gateway");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
    assert!(
        !body.to_string().contains(&chaos.addr.port().to_string()),
        "{body}"
    );
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    // The record of the request served meanwhile cannot be written: it waits.
    until("a failed write is retried", 5, || async {
        app.state.logs.counts().retried > 0
    })
    .await;
    assert_eq!(app.state.logs.counts().written, 1);

    chaos.restore();
    // The pool reconnects by itself.
    until("the store answers again", 10, || async {
        post(&app.client, &v1, &uncached).await == 200
    })
    .await;
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // All three served requests are in the table, none lost.
    until("the queued record is written", 15, || async {
        app.state.store.count_logs().await.unwrap() == 3
    })
    .await;
    let state = app.stop().await;
    assert_eq!(state.store.count_logs().await.unwrap(), 3);
    let counts = state.logs.counts();
    assert_eq!((counts.written, counts.lost()), (3, 0), "{counts:?}");
}

#[test]
fn an_unreachable_postgresql_at_start_is_one_line_naming_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://gw:hunter2-secret@127.0.0.1:{port}/gateway");
    let (code, out, err) = run(on(dir.path(), &url)
        // Set, so that no warning about ephemeral secrets precedes the error.
        .env("JWT_SECRET_KEY", "a-jwt-secret-key-for-this-test-only")
        .env(
            "ENCRYPTION_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .arg("serve"));
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("127.0.0.1:{port}/gateway")), "{err}");
    assert!(
        !err.contains("hunter2") && !out.contains("hunter2"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn init_db_and_migrate_store_on_postgresql() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Trust authentication ignores the password; it must still never show.
    let url = schema
        .url()
        .replacen("://postgres@", "://postgres:pw-never-shown@", 1);
    let sqlite = format!("sqlite://{}", dir.path().join("a.db").display());

    let (code, _, err) = run(abridge(dir.path()).args(["keys", "create", "--name", "ci"]));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(on(dir.path(), &url).arg("init-db"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("server: PostgreSQL"), "{out}");
    assert!(!out.contains("pw-never-shown"), "{out}");

    let mut copy = abridge(dir.path());
    copy.args(["migrate-store", "--from", &sqlite, "--to", &url]);
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut copy))
        .await
        .unwrap();
    // init-db created an admin in PostgreSQL already: the target is not empty.
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("--force") && err.trim().lines().count() == 1,
        "{err}"
    );

    let mut forced = abridge(dir.path());
    forced.args(["migrate-store", "--from", &sqlite, "--to", &url, "--force"]);
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut forced))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("pw-never-shown") && !err.contains("pw-never-shown"));
    for table in [
        "users",
        "api_keys",
        "providers",
        "request_logs",
        "audit_log",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(table))
            .unwrap_or_else(|| panic!("no line for {table}: {out}"));
        assert!(line.ends_with("ok"), "{line}");
    }
    assert!(out.contains("every table verified"), "{out}");
    let keys = open(&url).await.list_api_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].name, "ci");
}
