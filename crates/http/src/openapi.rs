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
    #[schema(required = false)]
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
    /// The offending value, when it is safe to echo.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<serde_json::Value>,
    /// Details of the rule that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ctx: Option<serde_json::Value>,
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

/// The 401 and 403 answers of every authenticated route, declared once.
#[derive(utoipa::IntoResponses)]
pub enum AuthErrors {
    /// Missing, unknown or expired token.
    #[response(status = 401, headers(("WWW-Authenticate" = String)))]
    Unauthenticated(ErrorResponse),
    /// Valid token without the rights this route needs.
    #[response(status = 403, headers(("WWW-Authenticate" = String)))]
    Forbidden(ErrorResponse),
}

/// 422: the request broke the schema (a missing or mistyped field, a rule).
#[derive(utoipa::IntoResponses)]
pub enum ValidationErrors {
    #[response(status = 422)]
    Invalid(HttpValidationError),
}

/// Contract schema names that aren't Rust identifiers (FastAPI names form
/// bodies `Body_<operation id>`); the server renames them in the document.
pub const SCHEMA_RENAMES: &[(&str, &str)] = &[
    ("BodyLocalAccountLogin", "Body_local-account-login"),
    ("BodyLdapLogin", "Body_ldap-login"),
    (
        "BodyLocalAccountChangeUserEmail",
        "Body_local-account-change_user_email",
    ),
    (
        "BodyLocalAccountChangeUserPassword",
        "Body_local-account-change_user_password",
    ),
    ("BodyJobsSubmitJob", "Body_jobs-submit_job"),
];

/// Applies [`SCHEMA_RENAMES`] to component names and every `$ref` of a rendered
/// document. Done on JSON because utoipa's types can't be deserialised back
/// reliably, and these names can't be Rust identifiers.
pub fn apply_contract_schema_names(document: &mut serde_json::Value) {
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(|schemas| schemas.as_object_mut())
    {
        for (from, to) in SCHEMA_RENAMES {
            if let Some(schema) = schemas.remove(*from) {
                schemas.insert((*to).to_owned(), schema);
            }
        }
    }
    rename_refs(document);
}

fn rename_refs(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "$ref" {
                    let renamed = child.as_str().and_then(|reference| {
                        let name = reference.strip_prefix("#/components/schemas/")?;
                        SCHEMA_RENAMES
                            .iter()
                            .find(|(from, _)| *from == name)
                            .map(|(_, to)| format!("#/components/schemas/{to}"))
                    });
                    if let Some(renamed) = renamed {
                        *child = serde_json::Value::String(renamed);
                    }
                } else {
                    rename_refs(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(rename_refs),
        _ => {}
    }
}
