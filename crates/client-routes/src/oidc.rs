//! `oidc` tag: logins through a configured OpenID Connect provider (SPEC
//! §3.4). The routes answer 404 when no provider is configured, as if they
//! weren't mounted (Project-W mounts them only then).
//!
//! The redirect URI registered at the provider is this instance's
//! `/api/oidc/auth/<provider name in lower case>`, as the browser reaches it:
//! the request's `Host` (or, behind a configured reverse proxy, its
//! `X-Forwarded-Host` / `X-Forwarded-Proto`) and `reverse_proxy.root_path`.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{get, web, HttpRequest, HttpResponse};
use scribe_domain::accounts::oidc::{self, Callback, FLOW_COOKIE, FLOW_LIFETIME};
use scribe_domain::config::Config;
use scribe_http::auth;
use scribe_http::client_address::external_origin;
use scribe_http::openapi::{ErrorResponse, ValidationErrors};
use scribe_http::{ApiError, ApiResult, AppState};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::mounted::{user_agent, Mounted, SignInMethod};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(scope("/oidc").service(login).service(auth_callback));
}

/// OIDC routes exist while at least one provider is configured.
pub(crate) struct Oidc;

impl SignInMethod for Oidc {
    fn configured(config: &Config) -> bool {
        oidc::enabled(config)
    }
}

/// Starts a login at the identity provider `idp_name` (a key of
/// `oidc_providers` in `/api/auth_settings`, any case): redirects the browser
/// to the provider's login page. Once the user has signed in there, the
/// provider sends the browser to `/api/oidc/auth/{idp_name}`.
#[utoipa::path(
    tag = "oidc",
    operation_id = "oidc-oidc-redirect",
    params(("idp_name" = String, Path, description = "The provider's name in the config (any case)")),
    responses(
        (status = 200, body = serde_json::Value, content_type = "application/json", description = "Not sent: the answer is a redirect (documented as in Project-W)"),
        (status = 302, description = "To the provider's login page", headers(("Location" = String))),
        (status = 400, body = ErrorResponse, description = "Unknown provider"),
        (status = 404, body = ErrorResponse, description = "No OIDC provider is configured"),
        (status = 503, body = ErrorResponse, description = "The provider can't be reached"),
        ValidationErrors
    )
)]
#[get("/login/{idp_name}")]
async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    _configured: Mounted<Oidc>,
    idp_name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let config = &state.domain.config;
    let redirect_uri = format!(
        "{}{}/auth/{}",
        external_origin(&req, config),
        oidc_path(config),
        idp_name.to_lowercase()
    );
    let start = oidc::start_login(&state.domain, &idp_name, &redirect_uri).await?;
    let mut cookie = flow_cookie(config, start.flow_cookie);
    cookie.set_max_age(CookieDuration::seconds(FLOW_LIFETIME.num_seconds()));
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, start.authorize_url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie)
        .finish())
}

/// Where the provider sends the browser back after the login (the redirect
/// URI). Checks that the answer belongs to the login this browser started
/// and wasn't used before, redeems the code, verifies the ID token and the
/// provider's claims, creates the user on first login, sets the session
/// cookie `token` and redirects to the client (`client_url`). A user with the
/// configured admin role gets an admin session.
#[utoipa::path(
    tag = "oidc",
    operation_id = "oidc-oidc-auth",
    params(
        ("idp_name" = String, Path, description = "The provider's name in the config (any case)"),
        ("user-agent" = Option<String>, Header, description = "Names the new token"),
    ),
    responses(
        (status = 200, body = serde_json::Value, content_type = "application/json", description = "Not sent: the answer is a redirect (documented as in Project-W)"),
        (status = 302, description = "Logged in: to `client_url`, with the session cookie `token`", headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 400, body = ErrorResponse, description = "Unknown provider, or the provider's answer can't be used (no login in progress in this browser, mismatching or reused state, a refused code)"),
        (status = 401, body = ErrorResponse, description = "The ID token failed verification", headers(("WWW-Authenticate" = String))),
        (status = 403, body = ErrorResponse, description = "The provider's claims lack a verified email address or the required role"),
        (status = 404, body = ErrorResponse, description = "No OIDC provider is configured"),
        (status = 503, body = ErrorResponse, description = "The provider can't be reached"),
        ValidationErrors
    )
)]
#[get("/auth/{idp_name}")]
async fn auth_callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    _configured: Mounted<Oidc>,
    idp_name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let config = &state.domain.config;
    // Everything is optional: a provider's error answer has no code, and a
    // bad answer is the domain's to explain.
    let callback = web::Query::<Callback>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let flow = req.cookie(FLOW_COOKIE);
    let result = oidc::finish_login(
        &state.domain,
        &idp_name,
        callback,
        flow.as_ref().map(|c| c.value()),
        user_agent(&req),
    )
    .await;
    // The flow is over either way.
    let mut cleared = flow_cookie(config, String::new());
    cleared.make_removal();
    match result {
        Ok(issued) => Ok(HttpResponse::Found()
            .insert_header((header::LOCATION, config.client_url.clone()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .cookie(auth::session_cookie(&issued, config.web_server.no_https))
            .cookie(cleared)
            .finish()),
        Err(err) => {
            let err = ApiError::from(err);
            Err(match HeaderValue::from_str(&cleared.to_string()) {
                Ok(value) => err.with_header(header::SET_COOKIE, value),
                Err(_) => err,
            })
        }
    }
}

/// The flow cookie: only sent to the OIDC routes, `SameSite=Lax` so that the
/// provider's top-level redirect back carries it.
fn flow_cookie(config: &Config, value: String) -> Cookie<'static> {
    Cookie::build(FLOW_COOKIE, value)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path(oidc_path(config))
        .secure(!config.web_server.no_https)
        .finish()
}

/// `/api/oidc` under the reverse proxy's root path.
fn oidc_path(config: &Config) -> String {
    let root = config
        .web_server
        .reverse_proxy
        .as_ref()
        .and_then(|proxy| proxy.root_path.as_deref())
        .unwrap_or_default()
        .trim_end_matches('/');
    format!("{root}/api/oidc")
}
