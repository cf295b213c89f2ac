//! The admin API through the real server: who may call what (a table other
//! resources add rows to), sessions and their revocation, login throttling,
//! cookies with CSRF, the error shape, the OpenAPI document, audit records.

use std::time::Duration;

use abridge::store::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// A client API key (`sk-ab-…`) as a bearer token.
    ClientKey,
    Member,
    Viewer,
    Operator,
    Admin,
}

const EVERYONE: &[Who] = &[Who::Member, Who::Viewer, Who::Operator, Who::Admin];
const ADMIN: &[Who] = &[Who::Admin];

/// One route and the roles allowed on it. Allowed callers must not get 401
/// or 403 (a 404 for a missing id is fine); everyone else must: anonymous
/// callers and client keys 401, other roles 403.
struct Case {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    allowed: &'static [Who],
}

fn case(method: Method, path: &'static str, body: Option<Value>, allowed: &'static [Who]) -> Case {
    Case {
        method,
        path,
        body,
        allowed,
    }
}

/// Every authenticated route. Logout and password changes end sessions, so
/// they have their own tests below.
fn cases() -> Vec<Case> {
    vec![
        case(Method::GET, "/api/auth/me", None, EVERYONE),
        case(Method::GET, "/api/users", None, ADMIN),
        case(
            Method::POST,
            "/api/users",
            Some(json!({"email": "made-by-table@example.com", "role": "viewer"})),
            ADMIN,
        ),
        case(
            Method::PATCH,
            "/api/users/999999",
            Some(json!({"disabled": true})),
            ADMIN,
        ),
        case(Method::DELETE, "/api/users/999999", None, ADMIN),
        case(Method::POST, "/api/users/999999/password", None, ADMIN),
    ]
}

/// Bearer tokens for every kind of caller.
struct Callers {
    member: String,
    viewer: String,
    operator: String,
    admin: String,
}

async fn callers(app: &TestApp) -> Callers {
    let mut tokens = Vec::new();
    for (email, role) in [
        ("member@example.com", Role::Member),
        ("viewer@example.com", Role::Viewer),
        ("operator@example.com", Role::Operator),
    ] {
        let password = app.add_user(email, role).await;
        tokens.push(app.login(email, &password).await);
    }
    let admin = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let [member, viewer, operator]: [String; 3] = tokens.try_into().unwrap();
    Callers {
        member,
        viewer,
        operator,
        admin,
    }
}

#[tokio::test]
async fn each_role_against_each_route() {
    let app = TestApp::spawn("").await;
    let c = callers(&app).await;
    for case in cases() {
        for who in [
            Who::Anonymous,
            Who::ClientKey,
            Who::Member,
            Who::Viewer,
            Who::Operator,
            Who::Admin,
        ] {
            let token = match who {
                Who::Anonymous => None,
                Who::ClientKey => Some(app.key.as_str()),
                Who::Member => Some(c.member.as_str()),
                Who::Viewer => Some(c.viewer.as_str()),
                Who::Operator => Some(c.operator.as_str()),
                Who::Admin => Some(c.admin.as_str()),
            };
            let mut request = app.api(case.method.clone(), case.path, token);
            if let Some(body) = &case.body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let what = format!("{who:?} {} {}: {status} {body}", case.method, case.path);
            if case.allowed.contains(&who) {
                assert!(status != 401 && status != 403 && status < 500, "{what}");
            } else {
                let expected = match who {
                    Who::Anonymous | Who::ClientKey => 401,
                    _ => 403,
                };
                assert_eq!(status, expected, "{what}");
                assert!(body["error"]["type"].is_string(), "{what}");
                assert!(body["error"]["message"].is_string(), "{what}");
            }
        }
    }
}

#[tokio::test]
async fn client_keys_never_open_the_admin_api() {
    let app = TestApp::spawn("").await;
    for request in [
        app.api(Method::GET, "/api/auth/me", Some(&app.key)),
        app.api(Method::GET, "/api/auth/me", None)
            .header("x-api-key", &app.key),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("client API keys")
        );
    }
}

#[tokio::test]
async fn login_me_and_the_error_shape() {
    let app = TestApp::spawn("").await;
    let token = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, me) = app.api_get("/api/auth/me", &token).await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["email"], ADMIN_EMAIL);
    assert_eq!(me["user"]["role"], "admin");
    assert!(me["permissions"].as_array().unwrap().len() >= 10);
    assert!(me["user"].get("password_hash").is_none());

    // Malformed JSON, a bad path parameter, an unknown path: our shape.
    let r = app
        .api(Method::POST, "/api/auth/login", None)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (status, body) = app.api_get("/api/no/such/route", &token).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found_error");
    let r = app
        .api(Method::PATCH, "/api/users/abc", Some(&token))
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let r = app
        .api(Method::GET, "/api/auth/login", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // Unknown paths are 404 for anonymous callers too.
    assert_eq!(
        call(&app, Method::GET, "/api/nothing", None, None).await.0,
        404
    );
    // A bad token is 401.
    let (status, _) = app.api_get("/api/auth/me", "not.a.token").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn openapi_document_lists_every_route_and_is_public() {
    let app = TestApp::spawn("").await;
    let r = app
        .api(Method::GET, "/api/openapi.json", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for case in cases() {
        let template = case.path.replace("999999", "{id}");
        let method = case.method.as_str().to_ascii_lowercase();
        assert!(
            paths
                .get(&template)
                .is_some_and(|p| p.get(&method).is_some()),
            "{method} {template} not documented"
        );
    }
    for path in [
        "/api/auth/login",
        "/api/auth/logout",
        "/api/auth/password",
        "/api/auth/providers",
        "/api/auth/sso/{provider}/start",
        "/api/auth/sso/{provider}/callback",
    ] {
        assert!(paths.contains_key(path), "{path} not documented");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// Status and JSON body of an admin API call.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.api(method, path, token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    app.api_get("/api/auth/me", token).await.0
}

#[tokio::test]
async fn logout_ends_every_session_of_the_user() {
    let app = TestApp::spawn("").await;
    let password = app.add_user("v@example.com", Role::Viewer).await;
    let first = app.login("v@example.com", &password).await;
    let second = app.login("v@example.com", &password).await;
    let admin = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        call(&app, Method::POST, "/api/auth/logout", Some(&first), None)
            .await
            .0,
        204
    );
    assert_eq!(me_status(&app, &first).await, 401);
    assert_eq!(me_status(&app, &second).await, 401);
    assert_eq!(me_status(&app, &admin).await, 200, "other users unaffected");
    let third = app.login("v@example.com", &password).await;
    assert_eq!(me_status(&app, &third).await, 200);
}

#[tokio::test]
async fn password_change_revokes_older_tokens_and_returns_a_new_one() {
    let app = TestApp::spawn("").await;
    let password = app.add_user("m@example.com", Role::Member).await;
    let old = app.login("m@example.com", &password).await;
    let other = app.login("m@example.com", &password).await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});

    assert_eq!(
        call(
            &app,
            Method::POST,
            "/api/auth/password",
            Some(&old),
            Some(change(&password, "short"))
        )
        .await
        .0,
        400,
        "under 12 characters"
    );
    let r = app
        .api(Method::POST, "/api/auth/password", Some(&old))
        .json(&change("wrong-current-password", "a-new-long-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(me_status(&app, &old).await, 200, "nothing changed yet");

    let r = app
        .api(Method::POST, "/api/auth/password", Some(&old))
        .json(&change(&password, "a-new-long-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let fresh = body["token"].as_str().unwrap().to_string();
    assert_eq!(me_status(&app, &old).await, 401);
    assert_eq!(me_status(&app, &other).await, 401);
    assert_eq!(me_status(&app, &fresh).await, 200);
    app.login("m@example.com", "a-new-long-password").await;
}

#[tokio::test]
async fn role_changes_and_disabling_revoke_at_once_and_the_last_admin_stays() {
    let app = TestApp::spawn("").await;
    let admin = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, users) = app.api_get("/api/users", &admin).await;
    let admin_id = users[0]["id"].as_i64().unwrap();
    let first = format!("/api/users/{admin_id}");

    // The only admin cannot demote, disable or delete themself.
    for (method, body) in [
        (Method::PATCH, Some(json!({"role": "viewer"}))),
        (Method::PATCH, Some(json!({"disabled": true}))),
        (Method::DELETE, None),
    ] {
        let (status, body) = call(&app, method, &first, Some(&admin), body).await;
        assert_eq!(status, 409);
        assert_eq!(body["error"]["type"], "conflict_error");
    }
    assert_eq!(
        me_status(&app, &admin).await,
        200,
        "refused changes revoke nothing"
    );

    let new_user = json!({"email": "ops@example.com", "role": "viewer"});
    let (status, created) = call(
        &app,
        Method::POST,
        "/api/users",
        Some(&admin),
        Some(new_user),
    )
    .await;
    assert_eq!(status, 201);
    let second = format!("/api/users/{}", created["user"]["id"].as_i64().unwrap());
    let password = created["password"].as_str().unwrap().to_string();
    assert!(password.len() >= 12, "a generated one-time password");
    let ops = app.login("ops@example.com", &password).await;
    assert_eq!(app.api_get("/api/users", &ops).await.0, 403);

    let promote = Some(json!({"role": "admin"}));
    assert_eq!(
        call(&app, Method::PATCH, &second, Some(&admin), promote)
            .await
            .0,
        200
    );
    assert_eq!(
        me_status(&app, &ops).await,
        401,
        "role change ends the session"
    );
    let ops = app.login("ops@example.com", &password).await;
    assert_eq!(app.api_get("/api/users", &ops).await.0, 200);

    // Now there are two admins: the first may be demoted.
    let demote = Some(json!({"role": "operator"}));
    assert_eq!(
        call(&app, Method::PATCH, &first, Some(&ops), demote)
            .await
            .0,
        200
    );
    let disable = || Some(json!({"disabled": true}));
    assert_eq!(
        call(&app, Method::PATCH, &second, Some(&ops), disable())
            .await
            .0,
        409,
        "would leave no active admin"
    );

    let demoted = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        call(&app, Method::PATCH, &first, Some(&ops), disable())
            .await
            .0,
        200
    );
    assert_eq!(me_status(&app, &demoted).await, 401, "disabled");
    let credentials = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/api/auth/login",
            None,
            Some(credentials)
        )
        .await
        .0,
        401,
        "a disabled user cannot log in"
    );

    // A reset password is shown once.
    let reset_path = format!("{first}/password");
    let (status, reset) = call(&app, Method::POST, &reset_path, Some(&ops), None).await;
    assert_eq!(status, 200);
    assert!(reset["password"].as_str().unwrap().len() >= 12);

    assert_eq!(
        call(&app, Method::DELETE, &first, Some(&ops), None).await.0,
        204
    );
    let (_, users) = app.api_get("/api/users", &ops).await;
    assert_eq!(users.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn changes_made_elsewhere_end_sessions_within_seconds() {
    let app = TestApp::spawn("").await;
    let password = app.add_user("cli@example.com", Role::Operator).await;
    let token = app.login("cli@example.com", &password).await;
    let user = app
        .state
        .store
        .find_user_by_email("cli@example.com")
        .await
        .unwrap()
        .unwrap();
    // As the CLI or another replica would: straight in the store.
    app.state.store.bump_token_version(user.id).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while me_status(&app, &token).await == 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token still works 10 s after its version changed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(me_status(&app, &token).await, 401);
}

#[tokio::test]
async fn failed_logins_are_throttled_without_revealing_accounts() {
    let app = TestApp::spawn("").await;
    let login = |email: &'static str, password: &'static str| {
        app.client
            .post(app.url("/api/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    // Unknown email and wrong password: the same answer.
    let unknown = login("nobody@example.com", "whatever-password")
        .await
        .unwrap();
    let wrong = login(ADMIN_EMAIL, "wrong-password-here").await.unwrap();
    assert_eq!(unknown.status(), 401);
    assert_eq!(wrong.status(), 401);
    let unknown: Value = unknown.json().await.unwrap();
    let wrong: Value = wrong.json().await.unwrap();
    assert_eq!(unknown, wrong);

    // Three free failures per account, then a wait: even the right password
    // is refused until it passes.
    for _ in 0..3 {
        assert_eq!(
            login(ADMIN_EMAIL, "wrong-password-here")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    let r = login(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // Unknown emails are throttled the same way.
    for _ in 0..3 {
        login("nobody@example.com", "whatever-password")
            .await
            .unwrap();
    }
    assert_eq!(
        login("nobody@example.com", "whatever-password")
            .await
            .unwrap()
            .status(),
        429
    );
    // Another account from the same address is not locked yet.
    let password = app.add_user("other@example.com", Role::Viewer).await;
    app.login("other@example.com", &password).await;
    // After the wait, the right password works again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = login(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_on_writes() {
    let app = TestApp::spawn("").await;
    let r = app
        .client
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "cookie": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let body: Value = r.json().await.unwrap();
    assert!(body["token"].is_null(), "the browser never sees the token");
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("abridge_session="))
        .unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    let jar: String = cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(jar.contains(&format!("abridge_csrf={csrf}")));

    let r = app
        .api(Method::GET, "/api/auth/me", None)
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "reads need no CSRF token");
    let create = |csrf: Option<&str>, email: &str| {
        let mut request = app
            .api(Method::POST, "/api/users", None)
            .header("cookie", &jar)
            .json(&json!({"email": email, "role": "member"}));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    assert_eq!(create(None, "a@example.com").await.unwrap().status(), 403);
    assert_eq!(
        create(Some("forged"), "a@example.com")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        create(Some(&csrf), "a@example.com").await.unwrap().status(),
        201
    );

    let r = app
        .api(Method::POST, "/api/auth/logout", None)
        .header("cookie", &jar)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("abridge_session=;"))
    );
    let r = app
        .api(Method::GET, "/api/auth/me", None)
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn changes_are_audited_with_actor_address_and_no_secrets() {
    let app = TestApp::spawn("").await;
    let admin = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let r = app
        .api(Method::POST, "/api/users", Some(&admin))
        .json(&json!({"email": "audited@example.com", "role": "viewer", "password": "a-chosen-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert!(
        created["password"].is_null(),
        "a chosen password is not echoed"
    );
    let path = app
        .state
        .settings
        .database
        .url
        .trim_start_matches("sqlite://")
        .to_string();
    let rows: Vec<(String, String, String, String, String)> = tokio::task::spawn_blocking(move || {
        let conn = tokio_rusqlite::rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT actor, action, COALESCE(target, ''), COALESCE(detail, ''), COALESCE(client_addr, '')
                 FROM audit_log ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    })
    .await
    .unwrap();
    let entry = rows
        .iter()
        .find(|r| r.1 == "user.create" && r.2 == "audited@example.com")
        .unwrap_or_else(|| panic!("no audit entry in {rows:?}"));
    assert_eq!(entry.0, ADMIN_EMAIL);
    assert_eq!(entry.4, "127.0.0.1");
    assert!(entry.3.contains("viewer"));
    assert!(rows.iter().all(|r| !r.3.contains("a-chosen-password-1")));
    let bootstrap = rows.iter().find(|r| r.0 == "bootstrap").unwrap();
    assert_eq!(bootstrap.4, "local");
}

#[tokio::test]
async fn first_run_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let settings = || {
        let mut s = abridge::config::Settings::default();
        s.database.url = format!("sqlite://{}", dir.path().join("abridge.db").display());
        s.admin.password = Some(abridge::config::Secret::new(ADMIN_PASSWORD));
        s
    };
    let first = abridge::server::bootstrap::build_state(settings())
        .await
        .unwrap();
    assert!(first.secrets.ephemeral.is_empty());
    let keyfile = dir.path().join("abridge.secrets");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&keyfile).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let sealed = first.secrets.sealer.seal("sk-upstream");
    let (token, _) = first.identity.jwt.issue(1, "admin", 0, 100, 3600).unwrap();
    first.shutdown.cancel();

    let second = abridge::server::bootstrap::build_state(settings())
        .await
        .unwrap();
    assert_eq!(second.secrets.sealer.open(&sealed).unwrap(), "sk-upstream");
    assert!(second.identity.jwt.verify(&token, 200).is_ok());
    second.shutdown.cancel();
}
