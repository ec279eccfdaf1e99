//! `ldap` tag: logins with a user of a configured LDAP directory (SPEC §3.4).
//! The route answers 404 when no directory is configured, as if it weren't
//! mounted (Project-W mounts it only then).

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{post, web, FromRequest, HttpRequest, HttpResponse};
use scribe_domain::accounts::{ldap, LoginAttempt};
use scribe_http::auth;
use scribe_http::client_address::client_address;
use scribe_http::openapi::{ErrorResponse, ValidationErrors};
use scribe_http::{ApiError, ApiResult, AppState, Form};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(scope("/ldap").service(login));
}

/// Passes only while at least one LDAP directory is configured.
struct LdapConfigured;

impl FromRequest for LdapConfigured {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let configured = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|state| !state.domain.config.security.ldap_providers.is_empty());
        ready(if configured {
            Ok(LdapConfigured)
        } else {
            Err(ApiError::new(StatusCode::NOT_FOUND, "Not Found"))
        })
    }
}

/// OAuth2 password request form; `username` is matched against each of the
/// directory's `username_attributes` (e.g. uid or mail).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = BodyLdapLogin)]
pub struct LdapLoginForm {
    #[schema(pattern = "^password$")]
    pub grant_type: Option<String>,
    pub username: String,
    #[schema(format = Password)]
    pub password: String,
    /// Space-separated scopes; `admin` asks for an admin token.
    #[serde(default)]
    #[schema(default = "")]
    pub scope: String,
    pub client_id: Option<String>,
    #[schema(format = Password)]
    pub client_secret: Option<String>,
}

/// Logs in with a user of the LDAP directory `idp_name` (as named in
/// `/api/auth_settings`, case-sensitive) and sets the session cookie `token`.
/// An admin gets an admin token only with scope `admin`. Repeated failures are
/// throttled (429 with `Retry-After`).
#[utoipa::path(
    tag = "ldap",
    operation_id = "ldap-login",
    params(
        ("idp_name" = String, Path, description = "The directory's name in the config"),
        ("user-agent" = Option<String>, Header, description = "Names the new token"),
    ),
    request_body(content = LdapLoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, body = ErrorResponse, description = "Unknown directory, unsupported scope, or admin scope for a non-admin"),
        (status = 401, body = ErrorResponse, description = "Wrong username or password"),
        (status = 409, body = ErrorResponse, description = "The directory gives this user an address another user of it has"),
        (status = 429, body = ErrorResponse, description = "Too many failed logins"),
        (status = 503, body = ErrorResponse, description = "The directory can't be reached or refuses the service account"),
        ValidationErrors
    )
)]
#[post("/login/{idp_name}")]
async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    _configured: LdapConfigured,
    idp_name: web::Path<String>,
    form: Form<LdapLoginForm>,
) -> ApiResult<HttpResponse> {
    let form = form.into_inner();
    check_grant_type(form.grant_type.as_deref())?;
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok());
    let address = client_address(&req, &state.domain.config);
    let issued = ldap::login_ldap(
        &state.domain,
        &idp_name,
        LoginAttempt {
            username: &form.username,
            password: &form.password,
            scope: &form.scope,
            user_agent,
            client_address: &address,
        },
    )
    .await?;
    Ok(HttpResponse::Ok()
        .cookie(auth::session_cookie(
            &issued,
            state.domain.config.web_server.no_https,
        ))
        .json("Success. Returning your login token as a cookie"))
}

fn check_grant_type(grant_type: Option<&str>) -> ApiResult<()> {
    match grant_type {
        None | Some("password") => Ok(()),
        Some(_) => Err(ApiError::validation(vec![scribe_domain::Violation::new(
            ["body".into(), "grant_type".into()],
            "String should match pattern '^password$'",
            "string_pattern_mismatch",
        )])),
    }
}
