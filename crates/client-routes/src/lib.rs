//! The routes Project-W's web client and user scripts call: `/api/about`,
//! `/api/auth_settings`, `/api/users/*`, `/api/local-account/*`, `/api/jobs/*` (SSO
//! arrives with a later issue).

use utoipa_actix_web::service_config::ServiceConfig;

pub mod general;
pub mod jobs;
pub mod ldap;
pub mod local_account;
mod mounted;
pub mod oidc;
pub mod users;

/// Registers this crate's routes (relative to `/api`) with their OpenAPI docs.
pub fn configure(cfg: &mut ServiceConfig) {
    general::configure(cfg);
    users::configure(cfg);
    local_account::configure(cfg);
    oidc::configure(cfg);
    ldap::configure(cfg);
    jobs::configure(cfg);
}
