//! `local-account` tag: accounts with a password kept by Scribe (SPEC §3.2).
//! The routes answer 404 when `security.local_account.mode` is `disabled`,
//! as if they weren't mounted (Project-W doesn't mount them then).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use scribe_domain::accounts::{self, LoginAttempt};
use scribe_domain::config::{Config, LocalAccountMode};
use scribe_http::auth::NotProvisionedUser;
use scribe_http::client_address::client_address;
use scribe_http::openapi::{AuthErrors, EmailValidated, ErrorResponse, ValidationErrors};
use scribe_http::{ApiResult, AppState, Form, Json, Query};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::mounted::{check_grant_type, logged_in, user_agent, Mounted, SignInMethod};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/local-account")
            .service(login)
            .service(signup)
            .service(activate)
            .service(resend_activation_email)
            .service(request_password_reset)
            .service(reset_password)
            .service(change_user_email)
            .service(change_user_password),
    );
}

/// Local-account routes exist unless local accounts are disabled.
pub(crate) struct LocalAccounts;

impl SignInMethod for LocalAccounts {
    fn configured(config: &Config) -> bool {
        config.security.local_account.mode != LocalAccountMode::Disabled
    }
}

/// OAuth2 password request form; `username` is the email address.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = BodyLocalAccountLogin)]
pub struct LoginForm {
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignupRequest {
    pub email: EmailValidated,
    #[schema(value_type = PasswordValidated)]
    pub password: String,
}

/// A password following the rule: at least 12 characters with a lowercase and
/// an uppercase letter, a digit and a character that is none of those.
#[derive(ToSchema)]
#[schema(format = Password)]
pub struct PasswordValidated(#[allow(dead_code)] String);

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordResetRequest {
    #[schema(format = Password, write_only)]
    pub token: String,
    #[schema(value_type = PasswordValidated)]
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = BodyLocalAccountChangeUserEmail)]
pub struct ChangeEmailRequest {
    pub new_email: EmailValidated,
    #[schema(format = Password, write_only)]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = BodyLocalAccountChangeUserPassword)]
pub struct ChangePasswordRequest {
    #[schema(value_type = PasswordValidated)]
    pub new_password: String,
    #[schema(format = Password, write_only)]
    pub password: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    #[param(format = Password, write_only)]
    pub token: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EmailQuery {
    pub email: String,
}

/// Logs in with email and password and sets the session cookie `token`. An
/// admin gets an admin token only with scope `admin`. Repeated failures are
/// throttled (429 with `Retry-After`).
#[utoipa::path(
    tag = "local-account",
    operation_id = "local-account-login",
    params(("user-agent" = Option<String>, Header, description = "Names the new token")),
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, body = ErrorResponse, description = "Unsupported scope, or admin scope for a non-admin"),
        (status = 401, body = ErrorResponse, description = "Wrong email or password"),
        (status = 429, body = ErrorResponse, description = "Too many failed logins"),
        ValidationErrors
    )
)]
#[post("/login")]
async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    _mounted: Mounted<LocalAccounts>,
    form: Form<LoginForm>,
) -> ApiResult<HttpResponse> {
    let form = form.into_inner();
    check_grant_type(form.grant_type.as_deref())?;
    let address = client_address(&req, &state.domain.config);
    let issued = accounts::login_local(
        &state.domain,
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

/// Creates a local account and mails an activation link (valid 24 h, once).
#[utoipa::path(
    tag = "local-account",
    operation_id = "local-account-signup",
    request_body = SignupRequest,
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, body = ErrorResponse, description = "Email domain not allowed or address taken"),
        (status = 405, body = ErrorResponse, description = "Signup is disabled"),
        ValidationErrors
    )
)]
#[post("/signup")]
async fn signup(
    state: web::Data<AppState>,
    _mounted: Mounted<LocalAccounts>,
    body: Json<SignupRequest>,
) -> ApiResult<web::Json<String>> {
    let user_id = accounts::signup(&state.domain, &body.email.0, &body.password).await?;
    Ok(web::Json(format!(
        "Successfully created user with id {user_id}. The activation email will be sent shortly."
    )))
}

/// Verifies the account's email address (or applies a requested email change)
/// with the token from the mailed link.
#[utoipa::path(
    tag = "local-account",
    operation_id = "local-account-activate",
    params(TokenQuery),
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, body = ErrorResponse, description = "Unknown user or already verified"),
        (status = 401, body = ErrorResponse, description = "Invalid, expired or used token"),
        ValidationErrors
    )
)]
#[post("/activate")]
async fn activate(
    state: web::Data<AppState>,
    _mounted: Mounted<LocalAccounts>,
    query: Query<TokenQuery>,
) -> ApiResult<web::Json<&'static str>> {
    accounts::activate(&state.domain, &query.token).await?;
    Ok(web::Json("Success"))
}

/// Sends a new activation link to the signed-in user's address.
#[utoipa::path(
    tag = "local-account",
    operation_id = "local-account-resend_activation_email",
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, body = ErrorResponse, description = "Already verified"),
        AuthErrors
    ),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[get("/resend_activation_email")]
async fn resend_activation_email(
    state: web::Data<AppState>,
    _mounted: Mounted<LocalAccounts>,
    user: NotProvisionedUser,
) -> ApiResult<web::Json<&'static str>> {
    accounts::resend_activation_email(&state.domain, &user.user).await?;
    Ok(web::Json(
        "A new account activation email for this user will be sent shortly",
    ))
}

/// Mails a password reset link if a local account with this address exists;
/// the answer is the same either way.
#[utoipa::path(
    tag = "local-account",
    operation_id = "local-account-request_password_reset",
    params(EmailQuery),
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, body = ErrorResponse, description = "Not an email address"),
        ValidationErrors
    )
)]
#[get("/request_password_reset")]
async fn request_password_reset(
    state: web::Data<AppState>,
    _mounted: Mounted<LocalAccounts>,
    query: Query<EmailQuery>,
) -> ApiResult<web::Json<String>> {
    accounts::request_password_reset(&state.domain, &query.email).await?;
    Ok(web::Json(format!(
        "If a local Project-W account with the address {} exists then a password reset email will be sent shortly.",
        query.email
    )))
}

/// Sets a new password with the token from a password reset link.
#[utoipa::path(
    tag = "local-account",
    operation_id = "local-account-reset_password",
    request_body = PasswordResetRequest,
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse, description = "Invalid, expired or used token"),
        ValidationErrors
    )
)]
#[post("/reset_password")]
async fn reset_password(
    state: web::Data<AppState>,
    _mounted: Mounted<LocalAccounts>,
    body: Json<PasswordResetRequest>,
) -> ApiResult<web::Json<&'static str>> {
    accounts::reset_password(&state.domain, &body.token, &body.new_password).await?;
    Ok(web::Json("Success"))
}

/// Starts an email change: confirms the current password and mails a link to
/// the new address; the change takes effect when that link is used.
#[utoipa::path(
    tag = "local-account",
    operation_id = "local-account-change_user_email",
    request_body = ChangeEmailRequest,
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, body = ErrorResponse, description = "Email domain not allowed or address taken"),
        AuthErrors,
        ValidationErrors
    ),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[post("/change_user_email")]
async fn change_user_email(
    state: web::Data<AppState>,
    _mounted: Mounted<LocalAccounts>,
    user: NotProvisionedUser,
    body: Json<ChangeEmailRequest>,
) -> ApiResult<web::Json<&'static str>> {
    accounts::change_email(&state.domain, &user.user, &body.new_email.0, &body.password).await?;
    Ok(web::Json(
        "Successfully requested email address change. An email confirmation email will be sent to you shortly. Please click on the link in that email to complete the email changing process.",
    ))
}

/// Changes the password after confirming the current one; the user's other
/// sessions are signed out.
#[utoipa::path(
    tag = "local-account",
    operation_id = "local-account-change_user_password",
    request_body = ChangePasswordRequest,
    responses((status = 200, body = String, content_type = "application/json"), AuthErrors, ValidationErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[post("/change_user_password")]
async fn change_user_password(
    state: web::Data<AppState>,
    _mounted: Mounted<LocalAccounts>,
    user: NotProvisionedUser,
    body: Json<ChangePasswordRequest>,
) -> ApiResult<web::Json<&'static str>> {
    accounts::change_password(
        &state.domain,
        &user.session,
        &body.new_password,
        &body.password,
    )
    .await?;
    Ok(web::Json("Successfully updated user password"))
}
