//! The binary itself: exit codes, messages, files it writes, and a real
//! `serve` stopped by SIGTERM.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{MockUpstream, Reply, hello, openai_text, providers_toml};

fn abridge(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_abridge"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "ABRIDGE_DATABASE",
            format!("sqlite://{}", dir.join("a.db").display()),
        )
        .env("ADMIN_PASSWORD", "cli-test-password-123")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn gen_keys_prints_two_lines_and_writes_0600_files() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(abridge(dir.path()).arg("gen-keys"));
    assert_eq!(code, 0);
    assert_eq!(out.lines().filter(|l| l.contains('=')).count(), 2);
    assert!(out.starts_with("JWT_SECRET_KEY=") && out.contains("\nENCRYPTION_KEY="));

    let file = dir.path().join("keys.env");
    assert_eq!(
        run(abridge(dir.path()).args(["gen-keys", "--out"]).arg(&file)).0,
        0
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (code, _, err) = run(abridge(dir.path()).args(["gen-keys", "--out"]).arg(&file));
    assert_eq!(code, 2, "refuses to overwrite");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        run(abridge(dir.path())
            .args(["gen-keys", "--force", "--out"])
            .arg(&file))
        .0,
        0
    );
}

#[test]
fn init_db_twice_is_harmless_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(abridge(dir.path()).arg("init-db"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("migrated") && out.contains("journal mode: wal"),
        "{out}"
    );
    let (code, out, _) = run(abridge(dir.path()).arg("init-db"));
    assert_eq!(code, 0);
    assert!(out.contains("up to date"), "{out}");
    let header = std::fs::read(dir.path().join("a.db")).unwrap();
    assert_eq!(
        (header[18], header[19]),
        (2, 2),
        "WAL mode is recorded in the file header"
    );
}

#[test]
fn bad_configuration_exits_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("ENCRYPTION_KEY", "garbage"),
        ("DB_POOL_SIZE", "0"),
        ("CACHE_TYPE", "disk"),
        ("DB_POOL_TIMEOUT", "soon"),
        ("ADMIN_PASSWORD", "short"),
    ] {
        let (code, _, err) = run(abridge(dir.path()).env(var, value).arg("serve"));
        assert_eq!(code, 2, "{var}={value}: {err}");
        assert!(err.contains(var), "{var}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("panicked"));
    }
    std::fs::write(
        dir.path().join("abridge.toml"),
        "[server]\nlisten_addr = \"x\"\n",
    )
    .unwrap();
    let (code, _, err) = run(abridge(dir.path()).arg("serve"));
    assert_eq!(code, 2);
    assert!(err.contains("server.listen_addr"), "{err}");
}

#[test]
fn print_config_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(abridge(dir.path())
        .env("JWT_SECRET_KEY", "a-very-secret-jwt-key-of-enough-length")
        .args(["serve", "--print-config"]));
    assert_eq!(code, 0);
    assert!(
        !out.contains("a-very-secret") && !out.contains("cli-test-password"),
        "{out}"
    );
    assert!(out.contains("jwt_secret_key = \"*****\""), "{out}");
}

/// Runs `create-admin` with `password` on standard input.
fn create_admin(dir: &Path, password: &str) -> Output {
    let mut child = abridge(dir)
        .args([
            "create-admin",
            "--email",
            "ops@example.com",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn create_admin_enforces_length_and_hashes_with_argon2id() {
    let dir = tempfile::tempdir().unwrap();
    let out = create_admin(dir.path(), "elevenchars");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("12"));

    let out = create_admin(dir.path(), "twelve chars");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = abridge::store::DbUrl::parse(&format!(
            "sqlite://{}",
            dir.path().join("a.db").display()
        ))
        .unwrap();
        let store = abridge::store::Store::open(&url, 1, Duration::from_secs(5))
            .await
            .unwrap();
        let user = store
            .find_user_by_email("ops@example.com")
            .await
            .unwrap()
            .unwrap();
        assert!(user.password_hash.starts_with("$argon2id$"));
    });
}

#[test]
fn keys_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) =
        run(abridge(dir.path()).args(["keys", "create", "--name", "ci", "--json"]));
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("sk-ab-"));
    let (_, listed, _) = run(abridge(dir.path()).args(["keys", "list", "--json"]));
    assert!(!listed.contains(key), "the key itself is never listed");
    assert!(listed.contains(created["prefix"].as_str().unwrap()));
    let (code, out, _) =
        run(abridge(dir.path()).args(["keys", "revoke", created["prefix"].as_str().unwrap()]));
    assert_eq!(code, 0);
    assert!(out.contains("revoked"));
    let (code, _, err) = run(abridge(dir.path()).args(["keys", "revoke", "nope"]));
    assert_eq!(code, 1);
    assert!(err.contains("nope"));
}

#[tokio::test]
async fn sigterm_drains_and_flushes_every_log_record() {
    let mock = MockUpstream::start(|_, _| Reply::Json(200, openai_text("hi"))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("providers.toml"),
        providers_toml(&[("p", "openai", &mock.url(), 1)]),
    )
    .unwrap();
    let (_, out, _) = run(abridge(dir.path()).args(["keys", "create", "--name", "t", "--json"]));
    let key = serde_json::from_str::<serde_json::Value>(&out).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut child = abridge(dir.path())
        .env("ABRIDGE_LISTEN", "127.0.0.1:0")
        .env("ABRIDGE_PROVIDERS", "providers.toml")
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
    // Keep reading stderr until the process exits, so its writes never fail.
    let log = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if let Some(addr) = line.strip_prefix("abridge listening on http://") {
                let _ = addr_tx.send(addr.to_string());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let addr = tokio::task::spawn_blocking(move || {
        addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server never said where it listens")
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    const N: usize = 40;
    let mut sends = Vec::new();
    for _ in 0..N {
        let r = client
            .post(format!("http://{addr}/v1/messages"))
            .header("x-api-key", &key)
            .json(&hello("sonnet"))
            .send();
        sends.push(r);
    }
    for r in futures_util::future::join_all(sends).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let log = log.join().unwrap();
    assert!(exit.success(), "{exit:?}: {log}");

    let url =
        abridge::store::DbUrl::parse(&format!("sqlite://{}", dir.path().join("a.db").display()))
            .unwrap();
    let store = abridge::store::Store::open(&url, 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(store.count_logs().await.unwrap(), N as u64);
}

#[tokio::test]
async fn providers_import_list_and_test_use_the_store() {
    let mock = MockUpstream::start(|_, _| Reply::Json(200, openai_text("pong"))).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, providers_toml(&[("up", "openai", &mock.url(), 1)])).unwrap();
    let keyed = |cmd: &mut Command| {
        cmd.env(
            "ENCRYPTION_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        );
    };
    let mut import = abridge(dir.path());
    import.args(["providers", "import"]).arg(&file);
    keyed(&mut import);
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut import))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported up"), "{out}");

    let mut list = abridge(dir.path());
    list.args(["providers", "list", "--json"]);
    keyed(&mut list);
    let (code, out, _) = tokio::task::spawn_blocking(move || run(&mut list))
        .await
        .unwrap();
    assert_eq!(code, 0);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["name"], "up");
    assert_eq!(rows[0]["source"], "store");
    assert_eq!(rows[0]["keys"]["total"], 1);
    assert!(!out.contains("up-key"), "keys are never printed");

    let mut test = abridge(dir.path());
    test.args(["providers", "test", "up"]);
    keyed(&mut test);
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut test))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(
        mock.received()[0].headers["authorization"],
        "Bearer up-key",
        "the sealed key was opened"
    );
    assert_eq!(mock.received()[0].body["max_tokens"], 1);

    let mut wrong_key = abridge(dir.path());
    wrong_key.args(["providers", "list"]).env(
        "ENCRYPTION_KEY",
        "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
    );
    let (code, _, err) = run(&mut wrong_key);
    assert_eq!(code, 1);
    assert!(
        err.contains("provider up") && err.contains("ENCRYPTION_KEY"),
        "{err}"
    );
}

#[tokio::test]
async fn the_cli_and_the_server_share_the_first_run_key_file() {
    let mock = MockUpstream::start(|_, _| Reply::Json(200, openai_text("pong"))).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, providers_toml(&[("up", "openai", &mock.url(), 1)])).unwrap();
    let mut import = abridge(dir.path());
    import.args(["providers", "import"]).arg(&file);
    let (code, _, err) = tokio::task::spawn_blocking(move || run(&mut import))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("generated JWT_SECRET_KEY/ENCRYPTION_KEY in"),
        "{err}"
    );
    assert!(!err.contains("WARNING"), "{err}");
    let keyfile = dir.path().join("abridge.secrets");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&keyfile).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let mut test = abridge(dir.path());
    test.args(["providers", "test", "up"]);
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut test))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        err.contains("using JWT_SECRET_KEY/ENCRYPTION_KEY in"),
        "{err}"
    );
    assert_eq!(
        mock.received()[0].headers["authorization"],
        "Bearer up-key",
        "the key sealed by the first run opens in the second"
    );
}

#[test]
fn first_admin_gets_a_generated_password_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = abridge(dir.path());
    first.env_remove("ADMIN_PASSWORD").arg("init-db");
    let (code, _, err) = run(&mut first);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("password:") && err.contains("shown once"),
        "{err}"
    );
    let mut again = abridge(dir.path());
    again.env_remove("ADMIN_PASSWORD").arg("init-db");
    let (code, _, err) = run(&mut again);
    assert_eq!(code, 0);
    assert!(!err.contains("password:"), "printed only once: {err}");
}

#[tokio::test]
async fn loadtest_measures_and_gates_on_slos() {
    let app = crate::harness::TestApp::spawn("").await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}", app.addr);
    let mut ok = abridge(dir.path());
    ok.args([
        "loadtest",
        "--endpoint",
        "health",
        "--qps",
        "200",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--json",
        "--url",
        &url,
    ]);
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut ok))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["requests"]["success_pct"], 100.0, "{report}");
    let achieved = report["requests"]["achieved_qps"].as_f64().unwrap();
    assert!((100.0..=260.0).contains(&achieved), "{achieved}");

    let mut strict = abridge(dir.path());
    strict.args([
        "loadtest",
        "--endpoint",
        "health",
        "--qps",
        "100",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
        "--max-p99",
        "1us",
        "--url",
        &url,
    ]);
    let (code, _, err) = tokio::task::spawn_blocking(move || run(&mut strict))
        .await
        .unwrap();
    assert_eq!(code, 1, "an SLO that cannot be met fails the run: {err}");

    let mut bad = abridge(dir.path());
    bad.args(["loadtest", "--qps", "0", "--url", &url]);
    let (code, _, err) = run(&mut bad);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
