//! Single sign-on: OpenID Connect against any issuer (a generic issuer URL
//! with discovery, Google, Microsoft Entra ID) and GitHub's OAuth flow.
//! Off unless a provider's client id is set.
//!
//! `start` sends the browser to the provider with a fresh `state`, `nonce`
//! and PKCE challenge, and keeps them in a short-lived cookie sealed with
//! `ENCRYPTION_KEY` (so any replica can finish the flow, and the browser can
//! neither read nor change them). `callback` checks `state`, exchanges the
//! code with the PKCE verifier, and for OIDC checks the id_token's signature
//! against the issuer's JWKS, its issuer, audience, expiry and nonce
//! (`openidconnect`). GitHub has no id_token: its API lists the account's
//! emails and says which are verified.
//!
//! An identity is linked only through a verified email, and only to an
//! existing, enabled user or, for an email in `ABRIDGE_SSO_ALLOWED_DOMAINS`,
//! a new user with `ABRIDGE_SSO_DEFAULT_ROLE` ([`decide`], a pure table).
//! On success the callback sets the session cookies and redirects to `/`;
//! the token never appears in a URL or a log. Failures redirect to
//! `/?sso_error=CODE` and are logged with their reason.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    IssuerUrl, JsonWebKeySet, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse as _, TokenUrl,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::session::{self, ClientAddr, cookie, unix_now};
use super::{ApiError, ApiPath, ApiQuery, ApiResult};
use crate::config::{OauthClient, SsoSettings};
use crate::error::Error;
use crate::secrets::password;
use crate::server::AppState;
use crate::store::{AuditEntry, Role, User};

/// The cookie carrying a sign-on attempt's state, nonce and PKCE verifier.
const FLOW_COOKIE: &str = "abridge_sso";
/// How long a sign-on attempt may take.
const FLOW_LIFETIME_SECS: u64 = 600;
/// How long discovered issuer metadata (and its JWKS) is reused.
const METADATA_TTL: Duration = Duration::from_secs(600);
/// Bound on every call to a provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
enum Kind {
    Oidc {
        issuer: String,
        scopes: Vec<String>,
        metadata: Mutex<Option<(Instant, Box<CoreProviderMetadata>)>>,
    },
    /// GitHub or a GitHub Enterprise Server: its web and API base URLs.
    GitHub { web: String, api: String },
}

/// The API base of a GitHub web URL: `api.github.com` for github.com,
/// `/api/v3` on a GitHub Enterprise Server.
fn github_api(web: &str) -> String {
    let web = web.trim_end_matches('/');
    if web == "https://github.com" {
        "https://api.github.com".into()
    } else {
        format!("{web}/api/v3")
    }
}

#[derive(Debug)]
struct Provider {
    id: &'static str,
    name: &'static str,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    kind: Kind,
}

/// The configured sign-on providers and the linking policy.
#[derive(Debug)]
pub struct Sso {
    providers: Vec<Provider>,
    allowed_domains: Vec<String>,
    default_role: Role,
    /// Talks to the providers; never follows redirects (as `openidconnect` requires).
    http: reqwest::Client,
}

fn oidc(issuer: String, scopes: &str) -> Kind {
    Kind::Oidc {
        issuer,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        metadata: Mutex::new(None),
    }
}

impl Sso {
    pub fn new(settings: &SsoSettings) -> anyhow::Result<Self> {
        let mut providers = Vec::new();
        let mut add = |id, name, client: &OauthClient, kind| {
            if let (Some(client_id), Some(secret), Some(redirect_uri)) = (
                client.client_id.clone().filter(|_| client.enabled()),
                &client.client_secret,
                client.redirect_uri.clone(),
            ) {
                providers.push(Provider {
                    id,
                    name,
                    client_id,
                    client_secret: secret.expose().to_string(),
                    redirect_uri,
                    kind,
                });
            }
        };
        let profile = "openid email profile";
        if let Some(issuer) = &settings.oidc_issuer {
            add(
                "oidc",
                "Single sign-on",
                &settings.oidc,
                oidc(
                    issuer.trim_end_matches('/').to_string(),
                    &settings.oidc_scopes,
                ),
            );
        }
        add(
            "google",
            "Google",
            &settings.google,
            oidc("https://accounts.google.com".into(), profile),
        );
        if let Some(tenant) = &settings.microsoft_tenant_id {
            add(
                "microsoft",
                "Microsoft",
                &settings.microsoft,
                oidc(
                    format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                    profile,
                ),
            );
        }
        let github = settings.github_url.trim_end_matches('/').to_string();
        let api = github_api(&github);
        add(
            "github",
            "GitHub",
            &settings.github,
            Kind::GitHub { web: github, api },
        );
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .user_agent(concat!("abridge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            providers,
            allowed_domains: settings.allowed_domains.clone(),
            default_role: settings.default_role,
            http,
        })
    }

    fn provider(&self, id: &str) -> Result<&Provider, Error> {
        self.providers
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::NotFound(format!("no sign-on provider `{id}` is configured")))
    }
}

/// What a sign-on attempt remembers between `start` and `callback`.
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    provider: String,
    state: String,
    nonce: Option<String>,
    verifier: String,
    exp: u64,
}

/// Why a sign-on was refused; the code goes into the redirect, never more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The provider said no, or the user cancelled.
    Denied,
    /// No flow cookie, or `state` does not match it, or it expired.
    BadState,
    /// Code exchange, discovery or the provider's API failed.
    Provider,
    /// The id_token failed verification (signature, issuer, audience, nonce, expiry).
    BadToken,
    /// No email, or the email is not verified by the provider.
    EmailUnverified,
    /// Unknown email outside the allowed domains.
    NotAllowed,
    /// The linked user is disabled.
    Disabled,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Denied => "denied",
            Refusal::BadState => "state",
            Refusal::Provider => "provider",
            Refusal::BadToken => "token",
            Refusal::EmailUnverified => "email_unverified",
            Refusal::NotAllowed => "not_allowed",
            Refusal::Disabled => "disabled",
        }
    }
}

/// How a verified identity maps to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Existing(i64),
    Create(Role),
    Refuse(Refusal),
}

/// The linking policy: verified emails only; existing enabled users, or new
/// users for allowed domains.
pub fn decide(
    email: &str,
    verified: bool,
    existing: Option<&User>,
    allowed_domains: &[String],
    default_role: Role,
) -> Link {
    if !verified || !email.contains('@') {
        return Link::Refuse(Refusal::EmailUnverified);
    }
    match existing {
        Some(user) if user.disabled => Link::Refuse(Refusal::Disabled),
        Some(user) => Link::Existing(user.id),
        None => {
            let domain = email.rsplit('@').next().unwrap_or_default();
            if allowed_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
            {
                Link::Create(default_role)
            } else {
                Link::Refuse(Refusal::NotAllowed)
            }
        }
    }
}

/// One entry of `GET /user/emails` on GitHub's API.
#[derive(Debug, Deserialize)]
pub struct GithubEmail {
    pub email: String,
    pub primary: bool,
    pub verified: bool,
}

/// The email a GitHub account is linked by: its primary one, if verified.
pub fn github_email(emails: &[GithubEmail]) -> Option<String> {
    emails
        .iter()
        .find(|e| e.primary && e.verified)
        .map(|e| e.email.clone())
}

/// A sign-on button for the login page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderButton {
    /// Used in the start URL.
    pub id: &'static str,
    /// Shown on the button.
    pub name: &'static str,
    /// Where the button leads (a browser navigation, not an XHR).
    pub start_url: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProvidersResponse {
    /// Email and password login is always available.
    pub password: bool,
    pub sso: Vec<ProviderButton>,
}

/// The login page's sign-on buttons.
#[utoipa::path(get, path = "/api/auth/providers", tag = "auth", security(()),
    responses((status = 200, body = ProvidersResponse)))]
pub async fn providers(state: AppState) -> axum::Json<ProvidersResponse> {
    axum::Json(ProvidersResponse {
        password: true,
        sso: state
            .identity
            .sso
            .providers
            .iter()
            .map(|p| ProviderButton {
                id: p.id,
                name: p.name,
                start_url: format!("/api/auth/sso/{}/start", p.id),
            })
            .collect(),
    })
}

async fn metadata(sso: &Sso, provider: &Provider) -> Result<CoreProviderMetadata, Refusal> {
    let Kind::Oidc {
        issuer, metadata, ..
    } = &provider.kind
    else {
        return Err(Refusal::Provider);
    };
    let mut cached = metadata.lock().await;
    if let Some((at, found)) = cached.as_ref()
        && at.elapsed() < METADATA_TTL
    {
        return Ok((**found).clone());
    }
    let issuer_url = IssuerUrl::new(issuer.clone()).map_err(|_| Refusal::Provider)?;
    let found = CoreProviderMetadata::discover_async(issuer_url, &sso.http)
        .await
        .map_err(|e| {
            tracing::warn!(provider = provider.id, error = %e, "OIDC discovery failed");
            Refusal::Provider
        })?;
    *cached = Some((Instant::now(), Box::new(found.clone())));
    Ok(found)
}

fn redirect_url(provider: &Provider) -> Result<RedirectUrl, Refusal> {
    RedirectUrl::new(provider.redirect_uri.clone()).map_err(|_| Refusal::Provider)
}

/// An OAuth client with an authorization and a token endpoint.
type GithubClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
>;

fn github_client(provider: &Provider, web: &str) -> Result<GithubClient, Refusal> {
    let bad = |_| Refusal::Provider;
    Ok(CoreClient::new(
        ClientId::new(provider.client_id.clone()),
        IssuerUrl::new(web.to_string()).map_err(bad)?,
        JsonWebKeySet::new(Vec::new()),
    )
    .set_client_secret(ClientSecret::new(provider.client_secret.clone()))
    .set_auth_uri(AuthUrl::new(format!("{web}/login/oauth/authorize")).map_err(bad)?)
    .set_token_uri(TokenUrl::new(format!("{web}/login/oauth/access_token")).map_err(bad)?)
    .set_redirect_uri(redirect_url(provider)?))
}

/// Where the browser goes to sign in, and the flow to remember.
async fn authorize(sso: &Sso, provider: &Provider) -> Result<(url::Url, Flow), Refusal> {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = match &provider.kind {
        Kind::Oidc { scopes, .. } => {
            let client = CoreClient::from_provider_metadata(
                metadata(sso, provider).await?,
                ClientId::new(provider.client_id.clone()),
                Some(ClientSecret::new(provider.client_secret.clone())),
            )
            .set_redirect_uri(redirect_url(provider)?);
            let mut request = client.authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            );
            for scope in scopes.iter().filter(|s| *s != "openid") {
                request = request.add_scope(Scope::new(scope.clone()));
            }
            let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
            (url, state, Some(nonce.secret().clone()))
        }
        Kind::GitHub { web, .. } => {
            let (url, state, _) = github_client(provider, web)?
                .authorize_url(
                    CoreAuthenticationFlow::AuthorizationCode,
                    CsrfToken::new_random,
                    Nonce::new_random,
                )
                .add_scope(Scope::new("read:user".into()))
                .add_scope(Scope::new("user:email".into()))
                .set_pkce_challenge(challenge)
                .url();
            (url, state, None)
        }
    };
    Ok((
        url,
        Flow {
            provider: provider.id.to_string(),
            state: state.secret().clone(),
            nonce,
            verifier: verifier.secret().clone(),
            exp: unix_now() + FLOW_LIFETIME_SECS,
        },
    ))
}

fn flow_cookie(headers: &HeaderMap, value: &str, max_age: u64) -> HeaderValue {
    let secure = if headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
    {
        "; Secure"
    } else {
        ""
    };
    // Lax, not Strict: the provider sends the browser back with a cross-site
    // top-level navigation, which must carry this cookie.
    HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={value}; Path=/api/auth/sso; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sends the browser to the provider's sign-in page.
#[utoipa::path(get, path = "/api/auth/sso/{provider}/start", tag = "auth", security(()),
    params(("provider" = String, Path, description = "oidc, google, microsoft or github")),
    responses((status = 303, description = "to the provider"), (status = 404, body = super::ErrorBody),
        (status = 502, body = super::ErrorBody, description = "the provider's discovery failed")))]
pub async fn start(
    state: AppState,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let sso = &state.identity.sso;
    let provider = sso.provider(&id)?;
    let (url, flow) = authorize(sso, provider).await.map_err(|refusal| {
        ApiError::from(Error::Upstream {
            status: axum::http::StatusCode::BAD_GATEWAY,
            message: format!(
                "sign-on provider `{id}` is unavailable ({})",
                refusal.code()
            ),
            headers: axum::http::HeaderMap::new(),
        })
    })?;
    let sealed = state
        .secrets
        .sealer
        .seal(&serde_json::to_string(&flow).map_err(|e| Error::Internal(e.into()))?);
    let mut response = Redirect::to(url.as_str()).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        flow_cookie(&headers, &B64URL.encode(sealed), FLOW_LIFETIME_SECS),
    );
    Ok(response)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn open_flow(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    returned: Option<&str>,
) -> Result<Flow, Refusal> {
    let sealed = cookie(headers, FLOW_COOKIE)
        .and_then(|v| B64URL.decode(v).ok())
        .ok_or(Refusal::BadState)?;
    let flow: Flow = state
        .secrets
        .sealer
        .open(&sealed)
        .ok()
        .and_then(|json| serde_json::from_str(&json).ok())
        .ok_or(Refusal::BadState)?;
    let fresh = flow.exp > unix_now() && flow.provider == id;
    if !fresh || returned != Some(flow.state.as_str()) {
        return Err(Refusal::BadState);
    }
    Ok(flow)
}

/// The verified email of the identity behind `code`.
async fn verified_email(
    sso: &Sso,
    provider: &Provider,
    code: String,
    flow: &Flow,
) -> Result<(String, bool), Refusal> {
    let verifier = PkceCodeVerifier::new(flow.verifier.clone());
    // Logs why the provider's answer was refused, and refuses with `refusal`.
    let fail = |what: &'static str, refusal: Refusal| {
        move |e: &dyn std::fmt::Display| {
            tracing::warn!(provider = provider.id, error = %e, "{what}");
            refusal
        }
    };
    match &provider.kind {
        Kind::Oidc { .. } => {
            let client = CoreClient::from_provider_metadata(
                metadata(sso, provider).await?,
                ClientId::new(provider.client_id.clone()),
                Some(ClientSecret::new(provider.client_secret.clone())),
            )
            .set_redirect_uri(redirect_url(provider)?);
            let tokens = client
                .exchange_code(AuthorizationCode::new(code))
                .map_err(|e| fail("the issuer has no token endpoint", Refusal::Provider)(&e))?
                .set_pkce_verifier(verifier)
                .request_async(&sso.http)
                .await
                .map_err(|e| fail("code exchange failed", Refusal::Provider)(&e))?;
            let id_token = tokens.id_token().ok_or(Refusal::BadToken)?;
            let nonce = Nonce::new(flow.nonce.clone().unwrap_or_default());
            let claims = id_token
                .claims(&client.id_token_verifier(), &nonce)
                .map_err(|e| fail("id_token refused", Refusal::BadToken)(&e))?;
            let email = claims
                .email()
                .map(|e| e.as_str().to_string())
                .ok_or(Refusal::EmailUnverified)?;
            // Entra ID sends no `email_verified`; its `xms_edov` optional
            // claim says the email's domain is verified by the tenant.
            let verified = claims.email_verified() == Some(true)
                || (provider.id == "microsoft" && edov(&id_token.to_string()));
            Ok((email, verified))
        }
        Kind::GitHub { web, api } => {
            let tokens = github_client(provider, web)?
                .exchange_code(AuthorizationCode::new(code))
                .set_pkce_verifier(verifier)
                .request_async(&sso.http)
                .await
                .map_err(|e| fail("code exchange failed", Refusal::Provider)(&e))?;
            let emails: Vec<GithubEmail> = sso
                .http
                .get(format!("{api}/user/emails"))
                .bearer_auth(tokens.access_token().secret())
                .header(header::ACCEPT, "application/vnd.github+json")
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| fail("GitHub email lookup failed", Refusal::Provider)(&e))?
                .json()
                .await
                .map_err(|e| fail("GitHub email lookup failed", Refusal::Provider)(&e))?;
            github_email(&emails)
                .map(|email| (email, true))
                .ok_or(Refusal::EmailUnverified)
        }
    }
}

/// Whether an (already verified) Entra ID token says `xms_edov: true`.
fn edov(id_token: &str) -> bool {
    id_token
        .split('.')
        .nth(1)
        .and_then(|payload| B64URL.decode(payload).ok())
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .is_some_and(|claims| {
            matches!(claims.get("xms_edov"), Some(serde_json::Value::Bool(true)))
                || claims.get("xms_edov").and_then(|v| v.as_str()) == Some("1")
        })
}

/// Finishes a sign-on: links the identity, sets the session cookies and
/// redirects to the console (or to `/?sso_error=CODE`).
#[utoipa::path(get, path = "/api/auth/sso/{provider}/callback", tag = "auth", security(()),
    params(("provider" = String, Path, description = "oidc, google, microsoft or github"), CallbackQuery),
    responses((status = 303, description = "to the console, with the session cookie set, or to /?sso_error=CODE")))]
pub async fn callback(
    state: AppState,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<CallbackQuery>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let sso = &state.identity.sso;
    let provider = sso.provider(&id)?;
    let outcome = finish(&state, provider, query, &headers, &addr).await;
    let mut response = match outcome {
        Ok(user) => {
            let (token, claims) = session::issue(&state, &user)?;
            let csrf = state.identity.jwt.csrf_token(&claims.jti);
            let mut response = Redirect::to("/").into_response();
            for value in
                session::session_cookies(&headers, &token, &csrf, state.identity.lifetime_secs)
            {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(refusal) => {
            tracing::info!(provider = provider.id, reason = refusal.code(), %addr, "sign-on refused");
            Redirect::to(&format!("/?sso_error={}", refusal.code())).into_response()
        }
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, flow_cookie(&headers, "", 0));
    Ok(response)
}

async fn finish(
    state: &AppState,
    provider: &Provider,
    query: CallbackQuery,
    headers: &HeaderMap,
    addr: &str,
) -> Result<User, Refusal> {
    let sso = &state.identity.sso;
    if query.error.is_some() {
        return Err(Refusal::Denied);
    }
    let flow = open_flow(state, headers, provider.id, query.state.as_deref())?;
    let code = query.code.ok_or(Refusal::Denied)?;
    let (email, verified) = verified_email(sso, provider, code, &flow).await?;
    let existing = state
        .store
        .find_user_by_email(&email)
        .await
        .map_err(|_| Refusal::Provider)?;
    let user = match decide(
        &email,
        verified,
        existing.as_ref(),
        &sso.allowed_domains,
        sso.default_role,
    ) {
        Link::Refuse(refusal) => return Err(refusal),
        Link::Existing(_) => existing.ok_or(Refusal::Provider)?,
        Link::Create(role) => {
            // Nobody knows this password: the user signs in through the provider
            // (an admin can reset it to allow password logins).
            let hash = password::hash(password::generate())
                .await
                .map_err(|_| Refusal::Provider)?;
            let user = state
                .store
                .create_user(&email, &hash, role)
                .await
                .map_err(|_| Refusal::Provider)?;
            state.identity.remember(&user);
            let entry = AuditEntry::new(format!("sso:{}", provider.id), "user.create")
                .client_addr(addr)
                .target(&user.email)
                .detail_json(serde_json::json!({"role": role, "via": provider.id}));
            state
                .store
                .audit(entry)
                .await
                .map_err(|_| Refusal::Provider)?;
            user
        }
    };
    state
        .store
        .record_login(user.id)
        .await
        .map_err(|_| Refusal::Provider)?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(disabled: bool) -> User {
        User {
            id: 5,
            email: "a@corp.example".into(),
            password_hash: String::new(),
            role: Role::Viewer,
            disabled,
            token_version: 0,
            last_login_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn linking_policy() {
        let allowed = vec!["corp.example".to_string()];
        let enabled = user(false);
        let disabled = user(true);
        let cases: [(&str, bool, Option<&User>, Link); 7] = [
            ("a@corp.example", true, Some(&enabled), Link::Existing(5)),
            (
                "a@corp.example",
                false,
                Some(&enabled),
                Link::Refuse(Refusal::EmailUnverified),
            ),
            (
                "a@corp.example",
                true,
                Some(&disabled),
                Link::Refuse(Refusal::Disabled),
            ),
            ("new@corp.example", true, None, Link::Create(Role::Member)),
            ("new@CORP.example", true, None, Link::Create(Role::Member)),
            (
                "new@elsewhere.example",
                true,
                None,
                Link::Refuse(Refusal::NotAllowed),
            ),
            (
                "new@corp.example",
                false,
                None,
                Link::Refuse(Refusal::EmailUnverified),
            ),
        ];
        for (email, verified, existing, expected) in cases {
            assert_eq!(
                decide(email, verified, existing, &allowed, Role::Member),
                expected,
                "{email} verified={verified}"
            );
        }
        assert_eq!(
            decide("x@corp.example", true, None, &[], Role::Member),
            Link::Refuse(Refusal::NotAllowed),
            "no allowed domains: existing users only"
        );
    }

    #[test]
    fn github_links_the_verified_primary_email_only() {
        let emails = |list: &[(&str, bool, bool)]| -> Vec<GithubEmail> {
            list.iter()
                .map(|(email, primary, verified)| GithubEmail {
                    email: email.to_string(),
                    primary: *primary,
                    verified: *verified,
                })
                .collect()
        };
        assert_eq!(
            github_email(&emails(&[("a@x.io", false, true), ("b@x.io", true, true)])),
            Some("b@x.io".into())
        );
        assert_eq!(
            github_email(&emails(&[("b@x.io", true, false), ("a@x.io", false, true)])),
            None
        );
        assert_eq!(github_email(&[]), None);
    }

    #[test]
    fn github_api_urls() {
        assert_eq!(github_api("https://github.com/"), "https://api.github.com");
        assert_eq!(
            github_api("https://git.corp.example"),
            "https://git.corp.example/api/v3"
        );
    }

    #[test]
    fn entra_domain_verification_claim() {
        let token =
            |claims: serde_json::Value| format!("h.{}.s", B64URL.encode(claims.to_string()));
        assert!(edov(&token(serde_json::json!({"xms_edov": true}))));
        assert!(edov(&token(serde_json::json!({"xms_edov": "1"}))));
        assert!(!edov(&token(serde_json::json!({"xms_edov": false}))));
        assert!(!edov(&token(serde_json::json!({}))));
        assert!(!edov("garbage"));
    }
}
