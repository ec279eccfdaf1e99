//! Broadcast mail to every user of the instance.

use actix_web::{post, web};
use scribe_http::auth::AdminUser;
use scribe_http::openapi::{AuthErrors, ValidationErrors};
use scribe_http::{ApiResult, AppState, Json};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(send_email_to_all_users);
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EmailToUsersRequest {
    pub subject: String,
    /// Plain text.
    pub body: String,
}

/// Sends one plain-text message to all verified users (in Bcc), in the background.
#[utoipa::path(
    tag = "admins",
    operation_id = "admins-send_email_to_all_users",
    request_body = EmailToUsersRequest,
    responses((status = 200, body = ()), AuthErrors, ValidationErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[post("/send_email_to_all_users")]
async fn send_email_to_all_users(
    state: web::Data<AppState>,
    _admin: AdminUser,
    body: Json<EmailToUsersRequest>,
) -> ApiResult<web::Json<()>> {
    scribe_domain::mail::send_to_all_users(&state.domain, &body.subject, &body.body).await?;
    Ok(web::Json(()))
}
