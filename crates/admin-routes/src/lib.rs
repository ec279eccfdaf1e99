//! `/api/admins/*`: Project-W's admin routes (and, later, Scribe's own admin
//! API). Every route needs a token with admin privileges and a verified email.

use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

pub mod banners;
pub mod email;
pub mod runners;

/// Registers this crate's routes (relative to `/api`) with their OpenAPI docs.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/admins")
            .configure(banners::configure)
            .configure(email::configure)
            .configure(runners::configure),
    );
}
