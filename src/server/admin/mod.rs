//! `/api/*`: the admin API, JSON in and out, one file per resource.
//!
//! Every route is authenticated unless it is listed in [`PUBLIC`]: the
//! `authenticate` middleware runs before any handler and leaves a
//! [`Session`] in the request, and handlers state what they need in their
//! signature ([`Require`]`<need::X>` or [`Session`]). Errors are
//! `{"error":{"type","message"}}` ([`ApiError`]); bodies, paths and queries go
//! through [`ApiJson`], [`ApiPath`] and [`ApiQuery`] so malformed input gets
//! that shape too. The OpenAPI document at `/api/openapi.json` is generated
//! from the handlers' `#[utoipa::path]` attributes: adding a route is one
//! `.routes(routes!(module::handler))` line in [`routes()`]. No SQL lives
//! here; the store does that.

pub mod access;
mod auth;
pub mod identity;
pub mod session;
pub mod sso;
pub mod throttle;
mod users;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use utoipa::OpenApi as _;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use access::{Permission, Require, need};
pub use identity::Identity;
pub use session::{ClientAddr, Session};

use super::AppState;
use crate::error::Error;

/// Routes anyone may call; every other `/api` route needs a session.
pub const PUBLIC: &[&str] = &[
    "/api/auth/login",
    "/api/auth/providers",
    "/api/auth/sso/{provider}/start",
    "/api/auth/sso/{provider}/callback",
    "/api/openapi.json",
    "/api/{*rest}",
];

/// Largest `/api` request body; nothing here needs more.
const BODY_LIMIT: usize = 1024 * 1024;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "abridge admin API",
        description = "Users, sessions and the operation of the gateway. Errors are {\"error\":{\"type\",\"message\"}}."
    ),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("cookie" = [])),
    tags(
        (name = "auth", description = "Sessions: log in, out, who am I, single sign-on"),
        (name = "users", description = "Users and roles (admin)"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                session::SESSION_COOKIE,
                "Browser session; unsafe methods also need the x-csrf-token header",
            ))),
        );
    }
}

/// Every documented route, one line each.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(auth::change_password))
        .routes(routes!(sso::providers))
        .routes(routes!(sso::start))
        .routes(routes!(sso::callback))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::update, users::delete))
        .routes(routes!(users::reset_password))
}

/// The OpenAPI document of the whole admin API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// The `/api` router, authenticated by default (see [`PUBLIC`]).
pub fn router(state: &AppState) -> axum::Router<AppState> {
    let (router, doc) = routes().split_for_parts();
    let doc = bytes::Bytes::from(doc.to_json().unwrap_or_default());
    router
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc,
                    )
                }
            }),
        )
        .route("/api/{*rest}", any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// Unknown `/api` paths: a JSON 404.
async fn not_found(request: Request) -> ApiError {
    Error::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
    .into()
}

/// A known `/api` path with the wrong method: a JSON 405.
async fn method_not_allowed(request: Request) -> Response {
    let mut response = ApiError::from(Error::InvalidRequest(format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    )))
    .into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Puts the caller's [`Session`] into the request, or answers 401; public
/// routes pass untouched.
async fn authenticate(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let public = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|path| PUBLIC.contains(&path.as_str()));
    if !public {
        let (mut parts, body) = request.into_parts();
        match session::authenticate(&state, &parts).await {
            Ok(session) => {
                parts.extensions.insert(session);
            }
            Err(e) => return e.into_response(),
        }
        request = Request::from_parts(parts, body);
    }
    next.run(request).await
}

/// An error rendered as `{"error":{"type","message"}}`; boxed, since
/// `Error` carries upstream headers and handlers return it often.
#[derive(Debug)]
pub struct ApiError(pub Box<Error>);

pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (*self.0).into_api_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(Box::new(e))
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError(Box::new(e.into()))
    }
}

/// A JSON body (or answer); a malformed body is a 400 in our shape.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(value)| ApiJson(value))
            .map_err(|rejection| {
                let error = if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Error::RequestTooLarge("request body is larger than 1 MiB".into())
                } else {
                    Error::InvalidRequest(rejection.body_text())
                };
                ApiError::from(error)
            })
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a malformed one is a 400 in our shape.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T> FromRequestParts<S> for ApiPath<T>
where
    axum::extract::Path<T>: FromRequestParts<S, Rejection = PathRejection>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::from(Error::InvalidRequest(rejection.body_text())))
    }
}

/// Query parameters; malformed ones are a 400 in our shape.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T> FromRequestParts<S> for ApiQuery<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::from(Error::InvalidRequest(rejection.body_text())))
    }
}

/// The error body, for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// e.g. `authentication_error`, `permission_error`, `invalid_request_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_public_ones_exist() {
        let doc = openapi();
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        for public in PUBLIC {
            if !matches!(*public, "/api/openapi.json" | "/api/{*rest}") {
                assert!(paths.iter().any(|p| p == public), "{public} is not a route");
            }
        }
        for path in &paths {
            assert!(path.starts_with("/api/"), "{path}");
        }
    }
}
