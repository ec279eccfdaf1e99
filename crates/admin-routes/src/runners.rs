//! Runner tokens: create one for a new runner, invalidate a compromised one.

use actix_web::{delete, post, web};
use scribe_domain::runners;
use scribe_http::auth::AdminUser;
use scribe_http::openapi::{AuthErrors, ValidationErrors};
use scribe_http::{ApiResult, AppState, Query};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_runner).service(invalidate_runner);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunnerCreatedResponse {
    pub id: i64,
    /// Shown once: put it into the runner's configuration.
    pub token: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunnerIdQuery {
    pub runner_id: i64,
}

/// Creates a runner available to every user and returns its id and token.
/// Create one token per runner you host.
#[utoipa::path(
    tag = "admins",
    operation_id = "admins-create_runner",
    responses((status = 200, body = RunnerCreatedResponse, content_type = "application/json"), AuthErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[post("/create_runner")]
async fn create_runner(
    state: web::Data<AppState>,
    _admin: AdminUser,
) -> ApiResult<web::Json<RunnerCreatedResponse>> {
    let created = runners::create_runner(&state.domain).await?;
    Ok(web::Json(RunnerCreatedResponse {
        id: created.id,
        token: created.token,
    }))
}

/// Invalidates a runner's token and deletes the runner; if it is online it is
/// unregistered first and its job goes back to the queue.
#[utoipa::path(
    tag = "admins",
    operation_id = "admins-invalidate_runner",
    params(RunnerIdQuery),
    responses((status = 200, body = String, content_type = "application/json"), AuthErrors, ValidationErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[delete("/invalidate_runner")]
async fn invalidate_runner(
    state: web::Data<AppState>,
    _admin: AdminUser,
    query: Query<RunnerIdQuery>,
) -> ApiResult<web::Json<String>> {
    runners::invalidate_runner(&state.domain, query.runner_id).await?;
    Ok(web::Json(format!(
        "If a runner with id {} existed it was successfully invalidated and deleted",
        query.runner_id
    )))
}
