//! `/api/runners/*`: the runner protocol (arrives with the jobs-and-runners issue).

use utoipa_actix_web::service_config::ServiceConfig;

/// Registers this crate's routes (relative to `/api`) with their OpenAPI docs.
pub fn configure(_cfg: &mut ServiceConfig) {}
