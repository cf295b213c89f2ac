//! Single sign-on against an OpenID Connect issuer run inside the test: a
//! real HTTP server on port 0 with discovery, a JWKS and a token endpoint
//! that signs id_tokens (RS256) with a committed test key and checks PKCE.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use abridge::store::Role;
use axum::extract::State;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::harness::TestApp;

const CLIENT_ID: &str = "abridge-test-client";
const ISSUER_KEY: &[u8] = include_bytes!("../fixtures/sso/issuer.pem");
const IMPOSTOR_KEY: &[u8] = include_bytes!("../fixtures/sso/impostor.pem");
const JWKS: &str = include_str!("../fixtures/sso/jwks.json");

/// The identity the issuer vouches for when a code is redeemed.
#[derive(Clone)]
struct Identity {
    email: String,
    verified: bool,
    /// The nonce put in the id_token (the right one unless a test says so).
    nonce: String,
    key: &'static [u8],
    /// The PKCE challenge from the authorization request.
    challenge: String,
}

#[derive(Clone, Default)]
struct IssuerState {
    url: Arc<Mutex<String>>,
    codes: Arc<Mutex<HashMap<String, Identity>>>,
    redeemed: Arc<Mutex<Vec<String>>>,
}

struct Issuer {
    addr: SocketAddr,
    state: IssuerState,
}

async fn discovery(State(s): State<IssuerState>) -> axum::Json<Value> {
    let url = s.url.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": url,
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
        "jwks_uri": format!("{url}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks() -> ([(&'static str, &'static str); 1], &'static str) {
    ([("content-type", "application/json")], JWKS)
}

async fn token(
    State(s): State<IssuerState>,
    body: String,
) -> Result<axum::Json<Value>, (axum::http::StatusCode, axum::Json<Value>)> {
    let refuse = |error: &str| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": error})),
        )
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let code = form.get("code").cloned().unwrap_or_default();
    let identity = s
        .codes
        .lock()
        .unwrap()
        .remove(&code)
        .ok_or_else(|| refuse("invalid_grant"))?;
    let verifier = form
        .get("code_verifier")
        .ok_or_else(|| refuse("invalid_request"))?;
    if B64URL.encode(sha2::Sha256::digest(verifier.as_bytes())) != identity.challenge {
        return Err(refuse("invalid_grant"));
    }
    s.redeemed.lock().unwrap().push(code);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": s.url.lock().unwrap().clone(),
        "sub": format!("subject-{}", identity.email),
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": identity.nonce,
        "email": identity.email,
        "email_verified": identity.verified,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(identity.key).unwrap();
    let id_token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    Ok(axum::Json(json!({
        "access_token": "issuer-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    })))
}

impl Issuer {
    async fn start() -> Self {
        let state = IssuerState::default();
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        *state.url.lock().unwrap() = format!("http://{addr}");
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A gateway with the generic OIDC provider pointing at `issuer`.
async fn gateway(issuer: &Issuer) -> TestApp {
    let url = issuer.url();
    TestApp::spawn_with("", move |s| {
        s.sso.oidc.client_id = Some(CLIENT_ID.into());
        s.sso.oidc.client_secret = Some(abridge::config::Secret::new("client-secret"));
        s.sso.oidc.redirect_uri = Some("http://gateway.test/api/auth/sso/oidc/callback".into());
        s.sso.oidc_issuer = Some(url);
        s.sso.allowed_domains = vec!["corp.example".into()];
        s.sso.default_role = Role::Viewer;
    })
    .await
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What the browser holds between `start` and `callback`.
struct Started {
    flow_cookie: String,
    state: String,
    nonce: String,
    challenge: String,
}

/// Starts a sign-on with `provider`, checks the redirect to `authorize`,
/// and returns the flow cookie and the authorization request's query.
async fn begin(
    app: &TestApp,
    provider: &str,
    authorize: &str,
) -> (String, HashMap<String, String>) {
    let r = no_redirects()
        .get(app.url(&format!("/api/auth/sso/{provider}/start")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(authorize), "{location}");
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    let flow = set_cookie.split(';').next().unwrap().to_string();
    (flow, location.query_pairs().into_owned().collect())
}

/// Comes back from `provider` with `code` and `state`; returns where the
/// browser is sent and the session cookie, if one was set.
async fn come_back(
    app: &TestApp,
    provider: &str,
    code: &str,
    state: &str,
    flow: &str,
) -> (String, Option<String>) {
    let r = no_redirects()
        .get(app.url(&format!(
            "/api/auth/sso/{provider}/callback?code={code}&state={state}"
        )))
        .header("cookie", flow)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(!location.contains("eyJ"), "no token in the URL: {location}");
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("abridge_session=") && c.len() > "abridge_session=".len());
    (location, session)
}

async fn start(app: &TestApp, issuer: &Issuer) -> Started {
    let authorize = format!("{}/authorize", issuer.url());
    let (flow_cookie, query) = begin(app, "oidc", &authorize).await;
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(query["scope"].split(' ').any(|s| s == "openid"));
    assert!(query["scope"].split(' ').any(|s| s == "email"));
    Started {
        flow_cookie,
        state: query["state"].clone(),
        nonce: query["nonce"].clone(),
        challenge: query["code_challenge"].clone(),
    }
}

/// Finishes a sign-on for `identity`; returns the redirect target and the
/// session cookie, if one was set.
async fn finish(
    app: &TestApp,
    issuer: &Issuer,
    started: &Started,
    code: &str,
    state: &str,
    identity: Identity,
) -> (String, Option<String>) {
    issuer
        .state
        .codes
        .lock()
        .unwrap()
        .insert(code.to_string(), identity);
    come_back(app, "oidc", code, state, &started.flow_cookie).await
}

fn identity(started: &Started, email: &str) -> Identity {
    Identity {
        email: email.into(),
        verified: true,
        nonce: started.nonce.clone(),
        key: ISSUER_KEY,
        challenge: started.challenge.clone(),
    }
}

async fn me(app: &TestApp, session: &str) -> Value {
    let r = app
        .client
        .get(app.url("/api/auth/me"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn sign_on_links_an_existing_user_by_verified_email() {
    let issuer = Issuer::start().await;
    let app = gateway(&issuer).await;
    let r = app
        .client
        .get(app.url("/api/auth/providers"))
        .send()
        .await
        .unwrap();
    let providers: Value = r.json().await.unwrap();
    assert_eq!(providers["sso"][0]["id"], "oidc");
    assert_eq!(providers["sso"][0]["start_url"], "/api/auth/sso/oidc/start");

    app.add_user("ops@elsewhere.example", Role::Operator).await;
    let started = start(&app, &issuer).await;
    let id = identity(&started, "ops@elsewhere.example");
    let (location, session) = finish(&app, &issuer, &started, "code-1", &started.state, id).await;
    assert_eq!(location, "/");
    let me = me(&app, &session.unwrap()).await;
    assert_eq!(me["user"]["email"], "ops@elsewhere.example");
    assert_eq!(me["user"]["role"], "operator");
    assert_eq!(
        issuer.state.redeemed.lock().unwrap().len(),
        1,
        "PKCE verifier matched"
    );
}

#[tokio::test]
async fn sign_on_creates_users_only_for_allowed_domains() {
    let issuer = Issuer::start().await;
    let app = gateway(&issuer).await;
    let started = start(&app, &issuer).await;
    let id = identity(&started, "new@corp.example");
    let (location, session) = finish(&app, &issuer, &started, "code-1", &started.state, id).await;
    assert_eq!(location, "/");
    let me = me(&app, &session.unwrap()).await;
    assert_eq!(me["user"]["role"], "viewer", "the configured default role");

    let started = start(&app, &issuer).await;
    let id = identity(&started, "stranger@elsewhere.example");
    let (location, session) = finish(&app, &issuer, &started, "code-2", &started.state, id).await;
    assert_eq!(location, "/?sso_error=not_allowed");
    assert!(session.is_none());
    assert!(
        app.state
            .store
            .find_user_by_email("stranger@elsewhere.example")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn sign_on_refuses_bad_signatures_wrong_nonces_unverified_emails_and_bad_state() {
    let issuer = Issuer::start().await;
    let app = gateway(&issuer).await;
    app.add_user("admin2@corp.example", Role::Admin).await;

    let started = start(&app, &issuer).await;
    let mut forged = identity(&started, "admin2@corp.example");
    forged.key = IMPOSTOR_KEY;
    let (location, session) =
        finish(&app, &issuer, &started, "c-sig", &started.state, forged).await;
    assert_eq!(location, "/?sso_error=token", "bad signature");
    assert!(session.is_none());

    let started = start(&app, &issuer).await;
    let mut replayed = identity(&started, "admin2@corp.example");
    replayed.nonce = "a-nonce-from-another-attempt".into();
    let (location, session) =
        finish(&app, &issuer, &started, "c-nonce", &started.state, replayed).await;
    assert_eq!(location, "/?sso_error=token", "wrong nonce");
    assert!(session.is_none());

    let started = start(&app, &issuer).await;
    let mut unverified = identity(&started, "admin2@corp.example");
    unverified.verified = false;
    let (location, session) = finish(
        &app,
        &issuer,
        &started,
        "c-unverified",
        &started.state,
        unverified,
    )
    .await;
    assert_eq!(location, "/?sso_error=email_unverified");
    assert!(session.is_none());

    let started = start(&app, &issuer).await;
    let id = identity(&started, "admin2@corp.example");
    let (location, session) = finish(&app, &issuer, &started, "c-state", "forged-state", id).await;
    assert_eq!(location, "/?sso_error=state", "state mismatch");
    assert!(session.is_none());
    assert!(
        !issuer
            .state
            .redeemed
            .lock()
            .unwrap()
            .contains(&"c-state".to_string()),
        "a bad state stops before the code is redeemed"
    );

    let r = no_redirects()
        .get(app.url("/api/auth/sso/nope/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_unreachable_issuer_is_a_502_in_our_shape() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = TestApp::spawn_with("", move |s| {
        s.sso.oidc.client_id = Some(CLIENT_ID.into());
        s.sso.oidc.client_secret = Some(abridge::config::Secret::new("client-secret"));
        s.sso.oidc.redirect_uri = Some("http://gateway.test/api/auth/sso/oidc/callback".into());
        s.sso.oidc_issuer = Some(url);
    })
    .await;
    let r = no_redirects()
        .get(app.url("/api/auth/sso/oidc/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("oidc"));
}

/// A stand-in for GitHub (Enterprise Server layout): the OAuth token
/// endpoint, which checks PKCE, and the API's email list.
#[derive(Clone, Default)]
struct GithubState {
    /// Code → (PKCE challenge, the account's emails).
    codes: Arc<Mutex<HashMap<String, (String, Value)>>>,
    /// Access token → the account's emails.
    tokens: Arc<Mutex<HashMap<String, Value>>>,
}

async fn github_token(State(s): State<GithubState>, body: String) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let code = form.get("code").cloned().unwrap_or_default();
    let Some((challenge, emails)) = s.codes.lock().unwrap().remove(&code) else {
        return axum::Json(json!({"error": "bad_verification_code"})).into_response();
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if B64URL.encode(sha2::Sha256::digest(verifier.as_bytes())) != challenge {
        return axum::Json(json!({"error": "bad_verification_code"})).into_response();
    }
    let token = format!("gho_{code}");
    s.tokens.lock().unwrap().insert(token.clone(), emails);
    axum::Json(
        json!({"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}),
    )
    .into_response()
}

async fn github_emails(
    State(s): State<GithubState>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<Value>, axum::http::StatusCode> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let emails = s.tokens.lock().unwrap().get(token).cloned();
    emails
        .map(axum::Json)
        .ok_or(axum::http::StatusCode::UNAUTHORIZED)
}

#[tokio::test]
async fn github_sign_on_uses_the_verified_primary_email() {
    let state = GithubState::default();
    let github = axum::Router::new()
        .route("/login/oauth/access_token", post(github_token))
        .route("/api/v3/user/emails", get(github_emails))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let github_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, github).await.unwrap() });
    let web = github_url.clone();
    let app = TestApp::spawn_with("", move |s| {
        s.sso.github.client_id = Some("gh-client".into());
        s.sso.github.client_secret = Some(abridge::config::Secret::new("gh-secret"));
        s.sso.github.redirect_uri = Some("http://gateway.test/api/auth/sso/github/callback".into());
        s.sso.github_url = web;
    })
    .await;
    app.add_user("dev@example.com", Role::Member).await;

    for (code, emails, expected) in [
        (
            "gh-1",
            json!([
                {"email": "old@example.com", "primary": false, "verified": true},
                {"email": "dev@example.com", "primary": true, "verified": true},
            ]),
            "/",
        ),
        (
            "gh-2",
            json!([{"email": "dev@example.com", "primary": true, "verified": false}]),
            "/?sso_error=email_unverified",
        ),
    ] {
        let authorize = format!("{github_url}/login/oauth/authorize");
        let (flow, query) = begin(&app, "github", &authorize).await;
        assert_eq!(query["client_id"], "gh-client");
        assert!(query["scope"].contains("user:email"));
        state
            .codes
            .lock()
            .unwrap()
            .insert(code.into(), (query["code_challenge"].clone(), emails));
        let (location, session) = come_back(&app, "github", code, &query["state"], &flow).await;
        assert_eq!(location, expected, "{code}");
        if expected == "/" {
            let me = me(&app, &session.unwrap()).await;
            assert_eq!(me["user"]["email"], "dev@example.com");
        } else {
            assert!(session.is_none());
        }
    }
}
