//! `ldap` tag: logins with a user of a configured LDAP directory (SPEC §3.4).
//! The route answers 404 when no directory is configured, as if it weren't
//! mounted (Project-W mounts it only then).

use actix_web::{post, web, HttpRequest, HttpResponse};
use scribe_domain::accounts::{ldap, LoginAttempt};
use scribe_domain::config::Config;
use scribe_http::client_address::client_address;
use scribe_http::openapi::{ErrorResponse, ValidationErrors};
use scribe_http::{ApiResult, AppState, Form};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::mounted::{check_grant_type, logged_in, user_agent, Mounted, SignInMethod};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(scope("/ldap").service(login));
}

/// LDAP routes exist while at least one directory is configured.
pub(crate) struct Ldap;

impl SignInMethod for Ldap {
    fn configured(config: &Config) -> bool {
        !config.security.ldap_providers.is_empty()
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
    _mounted: Mounted<Ldap>,
    idp_name: web::Path<String>,
    form: Form<LdapLoginForm>,
) -> ApiResult<HttpResponse> {
    let form = form.into_inner();
    check_grant_type(form.grant_type.as_deref())?;
    let address = client_address(&req, &state.domain.config);
    let issued = ldap::login_ldap(
        &state.domain,
        &idp_name,
        LoginAttempt {
            username: &form.username,
            password: &form.password,
            scope: &form.scope,
            user_agent: user_agent(&req),
            client_address: &address,
        },
    )
    .await?;
    Ok(logged_in(&state, &issued))
}
