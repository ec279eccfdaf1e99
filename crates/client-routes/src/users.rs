//! `users` tag: the signed-in user's account and tokens (SPEC §3.3).

use std::collections::BTreeMap;

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use scribe_domain::accounts::{self, User, UserType};
use scribe_domain::tokens::{self, TokenInfo};
use scribe_http::auth::{self, AnyUser, NotProvisionedUser, VerifiedUser};
use scribe_http::openapi::{AuthErrors, EmailValidated, ErrorResponse, ValidationErrors};
use scribe_http::{timestamps, ApiResult, AppState, Query};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/users")
            .service(invalidate_token)
            .service(invalidate_all_tokens)
            .service(logout)
            .service(get_new_api_token)
            .service(get_all_token_info)
            .service(info)
            .service(accept_tos)
            .service(delete_user),
    );
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: i64,
    pub email: EmailValidated,
    /// Terms of service id → the version the user accepted.
    pub accepted_tos: BTreeMap<u32, u32>,
    /// "project-W" for local accounts, else the identity provider's name.
    pub provider_name: String,
    pub user_type: UserTypeEnum,
    pub is_verified: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserTypeEnum {
    Local,
    Ldap,
    Oidc,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfoResponse {
    pub id: i64,
    pub name: String,
    pub admin_privileges: bool,
    /// API tokens are explicit: they never expire and are never rotated.
    pub explicit: bool,
    #[serde(serialize_with = "timestamps::option::serialize")]
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "timestamps::serialize")]
    pub last_usage: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenIdQuery {
    pub token_id: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenNameQuery {
    pub name: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AcceptTosQuery {
    pub tos_id: i64,
    pub tos_version: i64,
}

/// Invalidates one of the caller's tokens. Unknown or foreign ids are ignored.
#[utoipa::path(
    tag = "users",
    operation_id = "users-invalidate_token",
    params(TokenIdQuery),
    responses((status = 200, body = String, content_type = "application/json"), AuthErrors, ValidationErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[delete("/invalidate_token")]
async fn invalidate_token(
    state: web::Data<AppState>,
    user: AnyUser,
    query: Query<TokenIdQuery>,
) -> ApiResult<web::Json<&'static str>> {
    tokens::invalidate_token(&state.domain, user.user.id, query.token_id).await?;
    Ok(web::Json("Success"))
}

/// Invalidates every token of the caller, this one included.
#[utoipa::path(
    tag = "users",
    operation_id = "users-invalidate_all_tokens",
    responses((status = 200, body = String, content_type = "application/json"), AuthErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[delete("/invalidate_all_tokens")]
async fn invalidate_all_tokens(
    state: web::Data<AppState>,
    user: AnyUser,
) -> ApiResult<web::Json<&'static str>> {
    tokens::invalidate_all_tokens(&state.domain, user.user.id).await?;
    Ok(web::Json("Success"))
}

/// Invalidates the token of this request and clears the `token` cookie.
#[utoipa::path(
    tag = "users",
    operation_id = "users-logout",
    responses((status = 200, body = String, content_type = "application/json"), AuthErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[delete("/logout")]
async fn logout(state: web::Data<AppState>, user: AnyUser) -> ApiResult<HttpResponse> {
    tokens::logout(&state.domain, &user.session).await?;
    Ok(HttpResponse::Ok()
        .cookie(auth::removal_cookie(
            state.domain.config.web_server.no_https,
        ))
        .json("Success"))
}

/// Creates an API token: it never expires and is never an admin token. Needs a
/// verified email; 400 when the account's provider doesn't allow API tokens.
#[utoipa::path(
    tag = "users",
    operation_id = "users-get_new_api_token",
    params(TokenNameQuery),
    responses(
        (status = 200, body = String, content_type = "application/json", description = "The new token; it is shown only once"),
        (status = 400, body = ErrorResponse),
        AuthErrors,
        ValidationErrors
    ),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[post("/get_new_api_token")]
async fn get_new_api_token(
    state: web::Data<AppState>,
    user: VerifiedUser,
    query: Query<TokenNameQuery>,
) -> ApiResult<web::Json<String>> {
    let token = tokens::create_api_token(&state.domain, &user.session, &query.name).await?;
    Ok(web::Json(token))
}

/// Lists the caller's valid tokens, most recently used first.
#[utoipa::path(
    tag = "users",
    operation_id = "users-get_all_token_info",
    responses((status = 200, body = Vec<TokenInfoResponse>), AuthErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[get("/get_all_token_info")]
async fn get_all_token_info(
    state: web::Data<AppState>,
    user: AnyUser,
) -> ApiResult<web::Json<Vec<TokenInfoResponse>>> {
    let infos = tokens::list_tokens(&state.domain, user.user.id).await?;
    Ok(web::Json(
        infos.into_iter().map(TokenInfoResponse::from).collect(),
    ))
}

/// The signed-in user.
#[utoipa::path(
    tag = "users",
    operation_id = "users-info",
    responses((status = 200, body = UserResponse), AuthErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[get("/info")]
async fn info(user: AnyUser) -> web::Json<UserResponse> {
    web::Json(UserResponse::from(&user.user))
}

/// Accepts a version (up to the current one) of a terms-of-service document.
#[utoipa::path(
    tag = "users",
    operation_id = "users-accept_tos",
    params(AcceptTosQuery),
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, body = ErrorResponse),
        AuthErrors,
        ValidationErrors
    ),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[post("/accept_tos")]
async fn accept_tos(
    state: web::Data<AppState>,
    user: AnyUser,
    query: Query<AcceptTosQuery>,
) -> ApiResult<web::Json<&'static str>> {
    accounts::accept_tos(&state.domain, &user.user, query.tos_id, query.tos_version).await?;
    Ok(web::Json("Success"))
}

/// Deletes the caller's account with everything that belongs to it. Users
/// provisioned by the config file can't be deleted here (403).
#[utoipa::path(
    tag = "users",
    operation_id = "users-delete",
    responses((status = 200, body = String, content_type = "application/json"), AuthErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[delete("/delete")]
async fn delete_user(
    state: web::Data<AppState>,
    user: NotProvisionedUser,
) -> ApiResult<web::Json<&'static str>> {
    accounts::delete_user(&state.domain, &user.user).await?;
    Ok(web::Json("Success"))
}

impl From<&User> for UserResponse {
    fn from(user: &User) -> Self {
        UserResponse {
            id: user.id,
            email: EmailValidated(user.email.clone()),
            accepted_tos: user.accepted_tos.clone(),
            provider_name: user.provider_name.clone(),
            user_type: match user.user_type {
                UserType::Local => UserTypeEnum::Local,
                UserType::Ldap => UserTypeEnum::Ldap,
                UserType::Oidc => UserTypeEnum::Oidc,
            },
            is_verified: user.is_verified,
        }
    }
}

impl From<TokenInfo> for TokenInfoResponse {
    fn from(token: TokenInfo) -> Self {
        TokenInfoResponse {
            id: token.id,
            name: token.name,
            admin_privileges: token.admin_privileges,
            explicit: token.explicit,
            expires_at: token.expires_at,
            last_usage: token.last_usage,
        }
    }
}
