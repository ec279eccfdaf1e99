//! Liveness and readiness probes for orchestrators and load balancers.

use actix_web::{get, web, HttpResponse};
use scribe_http::openapi::ErrorResponse;
use scribe_http::AppState;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(healthz).service(readyz);
}

#[derive(Serialize, ToSchema)]
pub struct ProbeResponse {
    pub status: String,
}

/// The process is up and serving HTTP.
#[utoipa::path(
    tag = "operations",
    operation_id = "operations-healthz",
    responses((status = 200, body = ProbeResponse))
)]
#[get("/healthz")]
async fn healthz() -> web::Json<ProbeResponse> {
    web::Json(ProbeResponse {
        status: "ok".to_owned(),
    })
}

/// The instance can serve requests: its database answers.
#[utoipa::path(
    tag = "operations",
    operation_id = "operations-readyz",
    responses(
        (status = 200, body = ProbeResponse),
        (status = 503, body = ErrorResponse, description = "The database is unreachable")
    )
)]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if scribe_domain::db::ping(&state.domain.db).await {
        HttpResponse::Ok().json(ProbeResponse {
            status: "ok".to_owned(),
        })
    } else {
        HttpResponse::ServiceUnavailable().json(ErrorResponse {
            detail: "Database unreachable".to_owned(),
        })
    }
}
