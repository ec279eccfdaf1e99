//! The routes Project-W's web client and user scripts call: `/api/about`,
//! `/api/auth_settings`, and (in later modules) users, local accounts, SSO and jobs.

use utoipa_actix_web::service_config::ServiceConfig;

pub mod general;

/// Registers this crate's routes (relative to `/api`) with their OpenAPI docs.
pub fn configure(cfg: &mut ServiceConfig) {
    general::configure(cfg);
}
