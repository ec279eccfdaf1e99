//! OpenID Connect logins (SPEC §3.4, §3.10): the authorization code flow with
//! discovery, PKCE S256 when enabled, `client_secret_basic` or
//! `client_secret_post`, and an ID token whose signature, issuer, audience,
//! expiry and nonce are verified. The browser carries the flow's state in a
//! signed cookie ([`flow`]), and each callback is accepted once.
//!
//! Users are keyed by provider and `sub` (user_type `oidc`, `provider_name`
//! the configured spelling, `external_id` the subject), so an address that
//! already belongs to a local account (or to another provider) is a separate
//! account, never taken over. The provider's refresh token, if it sends one,
//! is kept encrypted so that [`check_access`] can ask the provider later
//! whether the user may still come in.

use std::sync::Arc;

use chrono::Utc;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreErrorResponseType, CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AuthorizationCode, ClaimsVerificationError, CsrfToken, IdToken,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, SubjectIdentifier, TokenResponse as _, UserInfoClaims,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use subtle::ConstantTimeEq;

use crate::config::{Config, OidcProviderConfig};
use crate::context::Domain;
use crate::crypto;
use crate::entities::{oidc_refresh_tokens, users};
use crate::error::{DomainError, DomainResult};
use crate::tokens::{self, IssuedToken};

use super::revalidation::AccessCheck;
use super::{is_unique_violation, NewUser, UserType, UNKNOWN_DEVICE};

pub mod claims;
pub mod flow;
mod provider;

pub use claims::Claims;
pub use flow::{FLOW_COOKIE, FLOW_LIFETIME};
use provider::{error_chain, OtherClaims, Provider};

type OidcIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

// Project-W's 403 messages.
const NO_ID_TOKEN: &str = "Could not get an id_token from the identity provider";
const NO_SUB: &str = "Could not get sub from the identity provider. Please make sure that the IdP supports the sub claim";
const NO_USERINFO: &str = "Could not get any user information from the identity provider";

/// Whether any provider is configured (the `/api/oidc` routes exist only then).
pub fn enabled(config: &Config) -> bool {
    !config.security.oidc_providers.is_empty()
}

/// The provider `idp_name` names, ignoring case, with its configured name.
pub fn find_provider<'a>(
    config: &'a Config,
    idp_name: &str,
) -> Option<(&'a String, &'a OidcProviderConfig)> {
    let wanted = idp_name.to_lowercase();
    config
        .security
        .oidc_providers
        .iter()
        .find(|(name, _)| name.to_lowercase() == wanted)
}

fn provider_or_400<'a>(
    config: &'a Config,
    idp_name: &str,
) -> DomainResult<(&'a String, &'a OidcProviderConfig)> {
    find_provider(config, idp_name)
        .ok_or_else(|| DomainError::Invalid(format!("Unknown IdP '{}'", idp_name.to_lowercase())))
}

/// Project-W's 400 for a callback that can't be completed.
fn authorize_failed(reason: impl std::fmt::Display) -> DomainError {
    DomainError::Invalid(format!(
        "Failed to authorize IdP access token: {reason}. Try again from the beginning of the login flow"
    ))
}

fn unreachable_provider(name: &str, cause: &str) -> DomainError {
    tracing::warn!(provider = name, error = cause, "OIDC provider unavailable");
    DomainError::Unavailable(format!(
        "The identity provider '{name}' can't be reached right now. Please try again later"
    ))
}

async fn discovered(
    name: &str,
    config: &OidcProviderConfig,
) -> DomainResult<std::sync::Arc<Provider>> {
    provider::get(&name.to_lowercase(), config)
        .await
        .map_err(|err| unreachable_provider(name, &err))
}

/// Where `oidc/login` sends the browser, and the flow cookie to set.
#[derive(Debug, Clone)]
pub struct LoginRedirect {
    pub authorize_url: String,
    pub flow_cookie: String,
}

/// Starts a login at provider `idp_name`; `redirect_uri` is this instance's
/// `oidc/auth/<name in lower case>` as the browser reaches it.
pub async fn start_login(
    d: &Domain,
    idp_name: &str,
    redirect_uri: &str,
) -> DomainResult<LoginRedirect> {
    let (name, config) = provider_or_400(&d.config, idp_name)?;
    let provider = discovered(name, config).await?;
    let redirect = RedirectUrl::new(redirect_uri.to_owned())
        .map_err(|err| DomainError::internal("OIDC redirect URI", err))?;
    let client = provider.client.clone().set_redirect_uri(redirect);
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    // `openid` is always requested.
    for scope in config
        .scopes
        .iter()
        .filter(|s| !s.is_empty() && s.as_str() != "openid")
    {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    for (key, value) in &config.additional_authorize_params {
        request = request.add_extra_param(key.clone(), value.clone());
    }
    let mut pkce_verifier = None;
    if config.enable_pkce_s256_challenge {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        request = request.set_pkce_challenge(challenge);
        pkce_verifier = Some(verifier.secret().clone());
    }
    let (url, state, nonce) = request.url();
    let flow = flow::Flow {
        provider: name.to_lowercase(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier,
        redirect_uri: redirect_uri.to_owned(),
        expires: (Utc::now() + FLOW_LIFETIME).timestamp(),
    };
    Ok(LoginRedirect {
        authorize_url: url.to_string(),
        flow_cookie: flow::seal(&d.secret_key, &flow),
    })
}

/// The query of the provider's redirect to `oidc/auth`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The issuer of the answer (RFC 9207), from providers that send it.
    pub iss: Option<String>,
}

/// Completes a login: checks the flow cookie and the `state`, redeems the
/// code, verifies the ID token, applies the provider's rules, creates the
/// user on first login and issues a session (an admin session for users with
/// the admin role). `user_agent` names the session.
pub async fn finish_login(
    d: &Domain,
    idp_name: &str,
    callback: Callback,
    flow_cookie: Option<&str>,
    user_agent: Option<&str>,
) -> DomainResult<IssuedToken> {
    let (name, config) = provider_or_400(&d.config, idp_name)?;
    let now = Utc::now();
    let flow = match flow_cookie.map(|cookie| flow::open(&d.secret_key, cookie, now)) {
        Some(Ok(flow)) => flow,
        Some(Err(flow::FlowError::Expired)) => {
            return Err(authorize_failed("the login took longer than 10 minutes"))
        }
        Some(Err(flow::FlowError::Invalid)) | None => return Err(authorize_failed(
            "this browser has no valid login in progress (the login cookie is missing or invalid)",
        )),
    };
    if flow.provider != name.to_lowercase() {
        return Err(authorize_failed(
            "the login in progress is for another identity provider",
        ));
    }
    if let Some(error) = &callback.error {
        let description = callback
            .error_description
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        return Err(authorize_failed(format!(
            "the identity provider answered '{error}'{description}"
        )));
    }
    let state = callback.state.as_deref().unwrap_or_default();
    if !bool::from(state.as_bytes().ct_eq(flow.state.as_bytes())) {
        return Err(authorize_failed(
            "mismatching state: the response doesn't belong to the login started in this browser",
        ));
    }
    let Some(code) = callback.code.filter(|c| !c.is_empty()) else {
        return Err(authorize_failed("the response has no authorization code"));
    };
    let expires = chrono::DateTime::from_timestamp(flow.expires, 0).unwrap_or(now + FLOW_LIFETIME);
    if !flow::consume(&d.db, &flow.state, expires, now).await? {
        return Err(authorize_failed("this login response was already used"));
    }

    let mut provider = discovered(name, config).await?;
    // RFC 9207: an answer that names another issuer was meant for another
    // provider (a mix-up attack), whatever its state says.
    if callback
        .iss
        .as_ref()
        .is_some_and(|iss| *iss != provider.issuer)
    {
        return Err(authorize_failed(
            "the response comes from another issuer than this provider",
        ));
    }
    let redirect = RedirectUrl::new(flow.redirect_uri.clone())
        .map_err(|err| authorize_failed(format!("bad redirect URI: {err}")))?;
    let client = provider.client.clone().set_redirect_uri(redirect);
    let mut exchange = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|err| authorize_failed(format!("the provider has no token endpoint ({err})")))?;
    if let Some(verifier) = flow.pkce_verifier.clone() {
        exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(verifier));
    }
    let response = exchange
        .request_async(&provider.http)
        .await
        .map_err(|err| authorize_failed(error_chain(&err)))?;

    let Some(id_token) = response.id_token() else {
        return Err(DomainError::Forbidden(NO_ID_TOKEN.to_owned()));
    };
    let nonce = Nonce::new(flow.nonce.clone());
    let key = name.to_lowercase();
    let mut claims = verify_id_token(
        &key,
        &mut provider,
        id_token,
        Some(&nonce),
        response.access_token(),
    )
    .await
    .map_err(|err| {
        tracing::info!(provider = %name, error = %err, "refused an OIDC ID token");
        DomainError::Unauthenticated(format!(
            "Could not validate token for oidc provider '{key}'"
        ))
    })?;
    let subject = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_owned();
    if subject.is_empty() {
        return Err(DomainError::Forbidden(NO_SUB.to_owned()));
    }
    if !claims::complete(config, &claims) {
        match userinfo(&provider, response.access_token(), &subject).await {
            Ok(Some(more)) => claims::top_up(&mut claims, more),
            Ok(None) => {}
            Err(err) => {
                tracing::info!(provider = %name, error = %err, "OIDC userinfo request failed");
                return Err(DomainError::Forbidden(NO_USERINFO.to_owned()));
            }
        }
    }
    let verdict = claims::evaluate(name, config, &claims)?;

    let user_id = ensure_user(d, name, &subject, verdict.email.as_str(), verdict.is_admin).await?;
    if let Some(refresh_token) = response.refresh_token() {
        store_refresh_token(d, user_id, refresh_token.secret()).await?;
    }
    tracing::info!(user_id, provider = %name, admin = verdict.is_admin, "OIDC login");
    tokens::issue_session(
        d,
        user_id,
        user_agent.unwrap_or(UNKNOWN_DEVICE),
        verdict.is_admin,
    )
    .await
}

#[derive(Debug)]
enum VerifyError {
    /// Signed with a key Scribe hasn't fetched (yet).
    UnknownKey,
    Other(String),
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::UnknownKey => f.write_str("no matching signing key"),
            VerifyError::Other(text) => f.write_str(text),
        }
    }
}

/// [`verified_claims`], fetching the provider's keys again (and retrying once)
/// when the token is signed with a key Scribe doesn't know yet.
async fn verify_id_token(
    key: &str,
    provider: &mut Arc<Provider>,
    id_token: &OidcIdToken,
    nonce: Option<&Nonce>,
    access_token: &AccessToken,
) -> Result<Claims, VerifyError> {
    match verified_claims(provider, id_token, nonce, access_token) {
        Err(VerifyError::UnknownKey) => match provider::refetch(key, provider).await {
            Some(fresh) => {
                *provider = fresh;
                verified_claims(provider, id_token, nonce, access_token)
            }
            None => Err(VerifyError::UnknownKey),
        },
        other => other,
    }
}

/// Verifies an ID token (signature, issuer, audience, expiry, and the nonce
/// when given; the access token against `at_hash` when present) and returns
/// its claims.
fn verified_claims(
    provider: &Provider,
    id_token: &OidcIdToken,
    nonce: Option<&Nonce>,
    access_token: &AccessToken,
) -> Result<Claims, VerifyError> {
    let verifier = provider.client.id_token_verifier();
    let verified = match nonce {
        Some(nonce) => id_token.claims(&verifier, nonce),
        // A refreshed ID token carries no new nonce to check.
        None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
    };
    let claims = verified.map_err(|err| match err {
        ClaimsVerificationError::SignatureVerification(
            openidconnect::SignatureVerificationError::NoMatchingKey,
        ) => VerifyError::UnknownKey,
        other => VerifyError::Other(other.to_string()),
    })?;
    if let Some(expected) = claims.access_token_hash() {
        let other = |err: &dyn std::fmt::Display| VerifyError::Other(err.to_string());
        let alg = id_token.signing_alg().map_err(|e| other(&e))?;
        let key = id_token.signing_key(&verifier).map_err(|e| other(&e))?;
        let actual = AccessTokenHash::from_token(access_token, alg, key).map_err(|e| other(&e))?;
        if actual != *expected {
            return Err(VerifyError::Other(
                "the access token doesn't match the ID token's at_hash".to_owned(),
            ));
        }
    }
    match serde_json::to_value(claims) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(VerifyError::Other("the claims don't serialise".to_owned())),
    }
}

/// The userinfo endpoint's claims for `subject` (checked to be the same
/// user); `None` when the provider has no such endpoint.
async fn userinfo(
    provider: &Provider,
    access_token: &AccessToken,
    subject: &str,
) -> Result<Option<Claims>, String> {
    let Ok(request) = provider.client.user_info(
        access_token.clone(),
        Some(SubjectIdentifier::new(subject.to_owned())),
    ) else {
        return Ok(None);
    };
    let claims: UserInfoClaims<OtherClaims, CoreGenderClaim> = request
        .request_async(&provider.http)
        .await
        .map_err(|err| error_chain(&err))?;
    match serde_json::to_value(claims) {
        Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
        _ => Err("the userinfo claims don't serialise".to_owned()),
    }
}

/// The user with this subject at this provider, created on first login; the
/// address and role follow the provider's.
async fn ensure_user(
    d: &Domain,
    provider_name: &str,
    subject: &str,
    email: &str,
    is_admin: bool,
) -> DomainResult<i64> {
    let find = || {
        users::Entity::find()
            .filter(users::Column::UserType.eq(UserType::Oidc.as_str()))
            .filter(users::Column::ProviderName.eq(provider_name))
            .filter(users::Column::ExternalId.eq(subject))
            .one(&d.db)
    };
    if let Some(user) = find().await? {
        let id = user.id;
        if user.email != email || user.is_admin != is_admin || !user.is_verified {
            let old_email = user.email.clone();
            let mut active: users::ActiveModel = user.into();
            active.email = Set(email.to_owned());
            active.is_admin = Set(is_admin);
            active.is_verified = Set(true);
            if let Err(err) = active.clone().update(&d.db).await {
                if !is_unique_violation(&err) {
                    return Err(err.into());
                }
                // Another account of this provider has the new address; keep
                // the old one rather than refuse the login.
                tracing::warn!(
                    user_id = id,
                    "OIDC user's new address is taken; keeping the old one"
                );
                active.email = Set(old_email);
                active.update(&d.db).await?;
            }
        }
        return Ok(id);
    }
    let inserted = NewUser::external(UserType::Oidc, provider_name, subject, email, is_admin)
        .insert(&d.db)
        .await;
    match inserted {
        Ok(user) => {
            tracing::info!(user_id = user.id, provider = provider_name, "OIDC user created");
            Ok(user.id)
        }
        Err(err) if is_unique_violation(&err) => match find().await? {
            // The same user's first login, twice at once.
            Some(user) => Ok(user.id),
            None => Err(DomainError::Invalid(format!(
                "Another account of the identity provider '{provider_name}' already uses the email address '{email}'"
            ))),
        },
        Err(err) => Err(err.into()),
    }
}

fn refresh_token_purpose(user_id: i64) -> String {
    format!("oidc refresh token:user {user_id}")
}

async fn store_refresh_token(d: &Domain, user_id: i64, refresh_token: &str) -> DomainResult<()> {
    let ciphertext = crypto::encrypt_value(
        &d.secret_key,
        &refresh_token_purpose(user_id),
        refresh_token.as_bytes(),
    )?;
    oidc_refresh_tokens::Entity::insert(oidc_refresh_tokens::ActiveModel {
        user_id: Set(user_id),
        ciphertext: Set(ciphertext),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(oidc_refresh_tokens::Column::UserId)
            .update_columns([
                oidc_refresh_tokens::Column::Ciphertext,
                oidc_refresh_tokens::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec(&d.db)
    .await?;
    Ok(())
}

async fn load_refresh_token(d: &Domain, user_id: i64) -> DomainResult<Option<String>> {
    let Some(row) = oidc_refresh_tokens::Entity::find_by_id(user_id)
        .one(&d.db)
        .await?
    else {
        return Ok(None);
    };
    let plain = crypto::decrypt_value(
        &d.secret_key,
        &refresh_token_purpose(user_id),
        &row.ciphertext,
    )?;
    String::from_utf8(plain)
        .map(Some)
        .map_err(|err| DomainError::internal("OIDC refresh token", err))
}

/// Re-checks an OIDC user with their provider: with the stored refresh token,
/// a refresh grant and the fresh claims decide. The provider refusing the
/// token (`invalid_grant`) or no longer granting the required claims is
/// [`AccessCheck::Revoked`]; no stored token, an unknown provider or a
/// provider that can't be reached is [`AccessCheck::Unknown`].
pub async fn check_access(d: &Domain, user: &users::Model) -> DomainResult<AccessCheck> {
    if user.user_type != UserType::Oidc.as_str() {
        return Ok(AccessCheck::Unknown);
    }
    let Some((name, config)) = find_provider(&d.config, &user.provider_name) else {
        tracing::warn!(user_id = user.id, provider = %user.provider_name, "OIDC user of a provider no longer configured");
        return Ok(AccessCheck::Unknown);
    };
    let refresh_token = match load_refresh_token(d, user.id).await {
        Ok(Some(token)) => token,
        Ok(None) => return Ok(AccessCheck::Unknown),
        Err(err) => {
            tracing::warn!(user_id = user.id, error = %err, "unreadable OIDC refresh token");
            return Ok(AccessCheck::Unknown);
        }
    };
    let key = name.to_lowercase();
    let mut provider = match provider::get(&key, config).await {
        Ok(provider) => provider,
        Err(err) => {
            tracing::warn!(provider = %name, error = %err, "OIDC provider unavailable for revalidation");
            return Ok(AccessCheck::Unknown);
        }
    };
    let refresh_token = RefreshToken::new(refresh_token);
    let response = match provider.client.exchange_refresh_token(&refresh_token) {
        Ok(request) => request.request_async(&provider.http).await,
        Err(_) => return Ok(AccessCheck::Unknown),
    };
    let response = match response {
        Ok(response) => response,
        Err(RequestTokenError::ServerResponse(answer))
            if *answer.error() == CoreErrorResponseType::InvalidGrant =>
        {
            tracing::info!(user_id = user.id, provider = %name, "OIDC provider refused the refresh token");
            return Ok(AccessCheck::Revoked);
        }
        Err(err) => {
            tracing::warn!(user_id = user.id, provider = %name, error = %error_chain(&err), "OIDC refresh failed");
            return Ok(AccessCheck::Unknown);
        }
    };
    if let Some(rotated) = response.refresh_token() {
        store_refresh_token(d, user.id, rotated.secret()).await?;
    }
    let subject = user.external_id.clone().unwrap_or_default();
    let mut claims = Claims::new();
    if let Some(id_token) = response.id_token() {
        let verified =
            verify_id_token(&key, &mut provider, id_token, None, response.access_token()).await;
        match verified {
            Ok(verified) => claims = verified,
            Err(err) => {
                tracing::warn!(user_id = user.id, provider = %name, error = %err, "refreshed OIDC ID token refused");
                return Ok(AccessCheck::Unknown);
            }
        }
        if claims.get("sub").and_then(|s| s.as_str()) != Some(subject.as_str()) {
            return Ok(AccessCheck::Revoked);
        }
    }
    if !claims::complete(config, &claims) {
        match userinfo(&provider, response.access_token(), &subject).await {
            Ok(Some(more)) => claims::top_up(&mut claims, more),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(user_id = user.id, provider = %name, error = %err, "OIDC userinfo failed");
                return Ok(AccessCheck::Unknown);
            }
        }
    }
    if claims.is_empty() {
        return Ok(AccessCheck::Unknown);
    }
    Ok(match claims::evaluate(name, config, &claims) {
        Ok(verdict) => AccessCheck::Granted {
            is_admin: verdict.is_admin,
        },
        Err(_) => AccessCheck::Revoked,
    })
}
