//! OpenAPI pieces shared by every route crate: the two error schemas, the two
//! security schemes of Project-W's contract, and reusable responses.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, ToSchema};

/// Every error the backend decides: a human-readable message.
#[derive(Debug, serde::Serialize, ToSchema)]
#[schema(example = json!({"detail": "error message"}))]
pub struct ErrorResponse {
    pub detail: String,
}

/// A request that failed schema validation; one entry per problem.
#[derive(Debug, serde::Serialize, ToSchema)]
#[schema(as = HTTPValidationError)]
pub struct HttpValidationError {
    pub detail: Vec<ValidationError>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ValidationError {
    /// Where the problem is: `body`, `query` or `path`, then field names and list indices.
    #[schema(value_type = Vec<LocationItem>)]
    pub loc: Vec<serde_json::Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A field name or a list index.
#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(untagged)]
pub enum LocationItem {
    Field(String),
    Index(i64),
}

/// The security scheme names are Project-W's: generated clients depend on them.
pub const BEARER_SCHEME: &str = "Auth & runner token";
pub const COOKIE_SCHEME: &str = "Auth token";

pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("Bearer")
                    .build(),
            ),
        );
        components.add_security_scheme(
            COOKIE_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("token"))),
        );
    }
}

/// An email address as Project-W's contract names it (`EmailValidated`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, ToSchema)]
#[serde(transparent)]
pub struct EmailValidated(pub String);
