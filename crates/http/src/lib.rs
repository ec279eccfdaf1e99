//! Web glue shared by the route crates: application state, extractors that
//! report bad input in Project-W's error shapes, the one mapping from domain
//! errors to HTTP, middleware, and the OpenAPI pieces every route refers to.

pub mod auth;
pub mod client_address;
pub mod error;
pub mod extract;
pub mod fallback;
pub mod middleware;
pub mod openapi;
pub mod state;
pub mod timestamps;

pub use error::{ApiError, ApiResult};
pub use extract::{Form, Json, Path, Query};
pub use state::{AppState, BuildInfo};
