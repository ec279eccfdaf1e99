//! The routes Project-W's web client and user scripts call: `/api/about`,
//! `/api/auth_settings`, `/api/users/*`, `/api/local-account/*` (SSO and jobs
//! arrive with later issues).

use utoipa_actix_web::service_config::ServiceConfig;

pub mod general;
pub mod local_account;
pub mod users;

/// Registers this crate's routes (relative to `/api`) with their OpenAPI docs.
pub fn configure(cfg: &mut ServiceConfig) {
    general::configure(cfg);
    users::configure(cfg);
    local_account::configure(cfg);
}
