//! Authentication and authorisation as extractors: the permission a route needs
//! is in its handler's signature (`AdminUser`, `VerifiedUser`, ...), so no
//! handler can forget a check. Credentials come from `Authorization: Bearer` or
//! the `token` cookie; a present Bearer header is used alone (SPEC §3.10).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use scribe_domain::tokens::{self, IssuedToken, Session};
use scribe_domain::{Domain, DomainError};

use crate::error::ApiError;
use crate::state::AppState;

pub const TOKEN_COOKIE: &str = "token";

/// Which checks a route needs, in the order SPEC §3.10 runs them.
pub trait Policy {
    const VERIFIED: bool = false;
    const ADMIN: bool = false;
    const TOS: bool = false;
    const NOT_PROVISIONED: bool = false;
}

pub mod policy {
    use super::Policy;

    /// Any valid token.
    pub struct Any;
    impl Policy for Any {}

    /// A verified email address.
    pub struct Verified;
    impl Policy for Verified {
        const VERIFIED: bool = true;
    }

    /// Verified, and the current terms of service accepted (job routes).
    pub struct Active;
    impl Policy for Active {
        const VERIFIED: bool = true;
        const TOS: bool = true;
    }

    /// Verified, with a token that carries admin privileges (admin routes).
    pub struct Admin;
    impl Policy for Admin {
        const VERIFIED: bool = true;
        const ADMIN: bool = true;
    }

    /// Any valid token of a user not managed by the config file.
    pub struct NotProvisioned;
    impl Policy for NotProvisioned {
        const NOT_PROVISIONED: bool = true;
    }
}

/// The authenticated caller, having passed the checks of `P`.
pub struct Authenticated<P: Policy> {
    pub session: Session,
    policy: PhantomData<P>,
}

pub type AnyUser = Authenticated<policy::Any>;
pub type VerifiedUser = Authenticated<policy::Verified>;
pub type ActiveUser = Authenticated<policy::Active>;
pub type AdminUser = Authenticated<policy::Admin>;
pub type NotProvisionedUser = Authenticated<policy::NotProvisioned>;

impl<P: Policy> std::ops::Deref for Authenticated<P> {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

/// How the token arrived; only cookie sessions get a new value on rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    Bearer,
    Cookie,
}

/// Finds the caller's token: a Bearer header wins even when a cookie is present.
pub fn credential(req: &HttpRequest) -> Option<(String, CredentialSource)> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        if let Some((scheme, token)) = value.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some((token.trim().to_owned(), CredentialSource::Bearer));
            }
        }
    }
    req.cookie(TOKEN_COOKIE)
        .map(|cookie| cookie.value().to_owned())
        .filter(|value| !value.is_empty())
        .map(|value| (value, CredentialSource::Cookie))
}

/// A rotated session token waiting to be sent as `Set-Cookie` on the response.
#[derive(Debug, Clone)]
struct RotatedToken(IssuedToken);

impl<P: Policy + 'static> FromRequest for Authenticated<P> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::from(DomainError::Internal("no app state".into())))?;
            let domain = &state.domain;
            let Some((token, source)) = credential(&req) else {
                return Err(DomainError::Unauthenticated("Not authenticated".into()).into());
            };
            let session = tokens::authenticate(domain, &token).await?;
            authorise::<P>(domain, &session)?;
            if let Some(rotated) =
                tokens::roll_session(domain, &session, source == CredentialSource::Cookie).await?
            {
                req.extensions_mut().insert(RotatedToken(rotated));
            }
            Ok(Authenticated {
                session,
                policy: PhantomData,
            })
        })
    }
}

fn authorise<P: Policy>(domain: &Domain, session: &Session) -> Result<(), DomainError> {
    if P::VERIFIED {
        session.require_verified()?;
    }
    if P::ADMIN {
        session.require_admin()?;
    }
    if P::TOS {
        session.require_tos_accepted(&domain.config)?;
    }
    if P::NOT_PROVISIONED {
        session.require_not_provisioned()?;
    }
    Ok(())
}

/// Sends a session token rotated during the request as the new `token` cookie.
pub async fn send_rotated_cookie(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let no_https = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.domain.config.web_server.no_https);
    let mut response = next.call(req).await?.map_into_boxed_body();
    let rotated = response.request().extensions_mut().remove::<RotatedToken>();
    if let Some(RotatedToken(issued)) = rotated {
        let cookie = session_cookie(&issued, no_https);
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// The `token` cookie: `HttpOnly` so injected scripts can't read it, `Secure`
/// unless the instance runs without HTTPS, lifetime = the session's.
pub fn session_cookie(issued: &IssuedToken, no_https: bool) -> Cookie<'static> {
    let mut cookie = Cookie::build(TOKEN_COOKIE, issued.value.clone())
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(!no_https)
        .finish();
    if let Some(lifetime) = issued.lifetime {
        cookie.set_max_age(CookieDuration::seconds(lifetime.num_seconds()));
    }
    cookie
}

/// Clears the `token` cookie (logout).
pub fn removal_cookie(no_https: bool) -> Cookie<'static> {
    let mut cookie = Cookie::build(TOKEN_COOKIE, "")
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(!no_https)
        .finish();
    cookie.make_removal();
    cookie
}
