//! What Scribe reads from a provider's claims (the verified ID token, topped
//! up from the userinfo endpoint): the email address, whether it is verified,
//! and the roles that let a user in or make them an admin.

use serde_json::{Map, Value};

use crate::config::{OidcProviderConfig, OidcRoleConfig};
use crate::email_address::EmailAddress;
use crate::error::{DomainError, DomainResult};

/// Claims by name, as the provider sent them.
pub type Claims = Map<String, Value>;

pub const NO_VALID_EMAIL: &str = "Could not get a valid email address from the identity provider. Please make sure that the IdP supports the email claim, that your account has an email address associated with it and that this email is valid";

/// A user the provider vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub email: EmailAddress,
    pub is_admin: bool,
}

/// The claim `name`: a top-level claim of that name, else (for names with
/// dots, such as Keycloak's `realm_access.roles`) the nested claim.
pub fn claim<'a>(claims: &'a Claims, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// Whether the role claim is the role, or a list containing it.
pub fn has_role(claims: &Claims, role: &OidcRoleConfig) -> bool {
    match claim(claims, &role.field_name) {
        Some(Value::String(value)) => *value == role.name,
        Some(Value::Array(values)) => values.iter().any(|v| v.as_str() == Some(&role.name)),
        _ => false,
    }
}

/// `true`, or the string `"true"` that some providers send.
fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The claims a decision needs; when the ID token lacks one of them, the
/// userinfo endpoint is asked.
pub fn wanted(config: &OidcProviderConfig) -> Vec<&str> {
    let mut names = vec![
        config.claim_map.email.as_str(),
        config.claim_map.email_verified.as_str(),
    ];
    names.extend(config.user_role.iter().map(|r| r.field_name.as_str()));
    names.extend(config.admin_role.iter().map(|r| r.field_name.as_str()));
    names
}

/// Whether every claim in [`wanted`] is present.
pub fn complete(config: &OidcProviderConfig, claims: &Claims) -> bool {
    wanted(config)
        .into_iter()
        .all(|name| claim(claims, name).is_some())
}

/// Adds the claims of `more` that `claims` lacks (the ID token's values win).
pub fn top_up(claims: &mut Claims, more: Claims) {
    for (name, value) in more {
        claims.entry(name).or_insert(value);
    }
}

/// Decides as Project-W does: a valid and verified address is required; a
/// user with the admin role is an admin and needs no user role; otherwise a
/// configured user role must be present. Refusals are 403 with Project-W's
/// messages; `provider_name` is the configured spelling.
pub fn evaluate(
    provider_name: &str,
    config: &OidcProviderConfig,
    claims: &Claims,
) -> DomainResult<Verdict> {
    let email = claim(claims, &config.claim_map.email)
        .and_then(Value::as_str)
        .and_then(|text| EmailAddress::parse_new(text).ok())
        .ok_or_else(|| DomainError::Forbidden(NO_VALID_EMAIL.to_owned()))?;
    if !is_true(claim(claims, &config.claim_map.email_verified)) {
        return Err(DomainError::Forbidden(format!(
            "The email address of this OIDC '{provider_name}' account is not verified"
        )));
    }
    if config
        .admin_role
        .as_ref()
        .is_some_and(|role| has_role(claims, role))
    {
        return Ok(Verdict {
            email,
            is_admin: true,
        });
    }
    if let Some(role) = &config.user_role {
        if !has_role(claims, role) {
            return Err(DomainError::Forbidden(format!(
                "Insufficient permissions: Your user lacks the required value for the {} claim",
                role.field_name
            )));
        }
    }
    Ok(Verdict {
        email,
        is_admin: false,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::OidcClaimMap;

    fn config(user_role: Option<&str>, admin_role: Option<&str>) -> OidcProviderConfig {
        let role = |name: &str| OidcRoleConfig {
            field_name: "roles".to_owned(),
            name: name.to_owned(),
        };
        serde_json::from_value::<OidcProviderConfig>(json!({
            "base_url": "https://id.example.org/realms/main",
            "client_id": "scribe",
            "client_secret": "secret",
        }))
        .map(|mut c| {
            c.user_role = user_role.map(role);
            c.admin_role = admin_role.map(role);
            c
        })
        .unwrap()
    }

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn roles_may_be_a_string_or_a_list() {
        let c = config(Some("user"), Some("admin"));
        let list = claims(
            json!({"email": "a@example.org", "email_verified": true, "roles": ["x", "admin"]}),
        );
        assert!(evaluate("P", &c, &list).unwrap().is_admin);
        let string =
            claims(json!({"email": "a@example.org", "email_verified": true, "roles": "user"}));
        assert!(!evaluate("P", &c, &string).unwrap().is_admin);
        let none =
            claims(json!({"email": "a@example.org", "email_verified": true, "roles": ["other"]}));
        let err = evaluate("P", &c, &none).unwrap_err();
        assert!(err.to_string().contains("roles claim"), "{err}");
        // Admins need no user role.
        let admin_only =
            claims(json!({"email": "a@example.org", "email_verified": true, "roles": "admin"}));
        assert!(evaluate("P", &c, &admin_only).unwrap().is_admin);
        // No roles configured: everybody is a user.
        assert!(!evaluate("P", &config(None, None), &none).unwrap().is_admin);
    }

    #[test]
    fn nested_role_claims_are_found_by_dotted_name() {
        let mut c = config(None, Some("admin"));
        if let Some(role) = c.admin_role.as_mut() {
            role.field_name = "realm_access.roles".to_owned();
        }
        let nested = claims(
            json!({"email": "a@example.org", "email_verified": true, "realm_access": {"roles": ["admin"]}}),
        );
        assert!(evaluate("P", &c, &nested).unwrap().is_admin);
    }

    #[test]
    fn the_address_must_be_valid_and_verified() {
        let c = config(None, None);
        for bad in [
            json!({"email_verified": true}),
            json!({"email": "not-an-address", "email_verified": true}),
            json!({"email": 42, "email_verified": true}),
        ] {
            let err = evaluate("P", &c, &claims(bad)).unwrap_err();
            assert_eq!(err.to_string(), NO_VALID_EMAIL);
        }
        for unverified in [
            json!({"email": "a@example.org"}),
            json!({"email": "a@example.org", "email_verified": false}),
            json!({"email": "a@example.org", "email_verified": "false"}),
        ] {
            let err = evaluate("Keycloak", &c, &claims(unverified)).unwrap_err();
            assert_eq!(
                err.to_string(),
                "The email address of this OIDC 'Keycloak' account is not verified"
            );
        }
        let verdict = evaluate(
            "P",
            &c,
            &claims(json!({"email": "Jane@Example.ORG", "email_verified": "true"})),
        )
        .unwrap();
        assert_eq!(verdict.email.as_str(), "Jane@example.org");
    }

    #[test]
    fn claim_map_renames_the_claims() {
        let mut c = config(None, None);
        c.claim_map = OidcClaimMap {
            email: "mail".to_owned(),
            email_verified: "mail_ok".to_owned(),
        };
        let ok = claims(json!({"mail": "a@example.org", "mail_ok": true}));
        assert!(evaluate("P", &c, &ok).is_ok());
        assert!(complete(&c, &ok));
        assert!(!complete(&c, &claims(json!({"mail": "a@example.org"}))));
    }

    #[test]
    fn topping_up_keeps_the_id_token_values() {
        let mut base = claims(json!({"email": "a@example.org"}));
        top_up(
            &mut base,
            claims(json!({"email": "b@example.org", "roles": ["x"]})),
        );
        assert_eq!(base["email"], "a@example.org");
        assert_eq!(base["roles"], json!(["x"]));
    }
}
