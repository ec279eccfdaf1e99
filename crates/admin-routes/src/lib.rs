//! `/api/admins/*`: Project-W's admin routes and Scribe's own (arrive with the accounts and jobs issues).

use utoipa_actix_web::service_config::ServiceConfig;

/// Registers this crate's routes (relative to `/api`) with their OpenAPI docs.
pub fn configure(_cfg: &mut ServiceConfig) {}
