//! Site banners shown to every visitor by `/api/about`.

use actix_web::{delete, post, web};
use scribe_domain::banners;
use scribe_http::auth::AdminUser;
use scribe_http::openapi::{AuthErrors, ValidationErrors};
use scribe_http::{ApiResult, AppState, Json, Query};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(add_site_banner).service(delete_site_banner);
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SiteBannerRequest {
    /// Shown as HTML by the frontend.
    pub html: String,
    /// Higher is more urgent; banners are listed most urgent first.
    pub urgency: i32,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BannerIdQuery {
    pub banner_id: i64,
}

/// Adds a site banner and returns its id.
#[utoipa::path(
    tag = "admins",
    operation_id = "admins-add_site_banner",
    request_body = SiteBannerRequest,
    responses((status = 200, body = i64, content_type = "application/json"), AuthErrors, ValidationErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[post("/add_site_banner")]
async fn add_site_banner(
    state: web::Data<AppState>,
    _admin: AdminUser,
    body: Json<SiteBannerRequest>,
) -> ApiResult<web::Json<i64>> {
    let body = body.into_inner();
    let id = banners::add_site_banner(&state.domain, body.html, body.urgency).await?;
    Ok(web::Json(id))
}

/// Deletes a site banner; deleting one that doesn't exist is not an error.
#[utoipa::path(
    tag = "admins",
    operation_id = "admins-delete_site_banner",
    params(BannerIdQuery),
    responses((status = 200, body = ()), AuthErrors, ValidationErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[delete("/delete_site_banner")]
async fn delete_site_banner(
    state: web::Data<AppState>,
    _admin: AdminUser,
    query: Query<BannerIdQuery>,
) -> ApiResult<web::Json<()>> {
    banners::delete_site_banner(&state.domain, query.banner_id).await?;
    Ok(web::Json(()))
}
