//! What the route groups of the sign-in methods share: a route group exists only while
//! its sign-in method is configured (Project-W doesn't mount it otherwise, so it answers
//! 404), and the two password logins answer alike.

use std::future::{ready, Ready};
use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use scribe_domain::config::Config;
use scribe_domain::tokens::IssuedToken;
use scribe_http::{auth, ApiError, ApiResult, AppState};

/// A sign-in method that can be switched off in the config.
pub(crate) trait SignInMethod {
    fn configured(config: &Config) -> bool;
}

/// Passes only while the sign-in method `M` is configured; 404 otherwise.
pub(crate) struct Mounted<M: SignInMethod>(PhantomData<M>);

impl<M: SignInMethod> FromRequest for Mounted<M> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let configured = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|state| M::configured(&state.domain.config));
        ready(if configured {
            Ok(Mounted(PhantomData))
        } else {
            Err(ApiError::new(StatusCode::NOT_FOUND, "Not Found"))
        })
    }
}

/// OAuth2's password grant is the only one a login form may name.
pub(crate) fn check_grant_type(grant_type: Option<&str>) -> ApiResult<()> {
    match grant_type {
        None | Some("password") => Ok(()),
        Some(_) => Err(ApiError::validation(vec![scribe_domain::Violation::new(
            ["body".into(), "grant_type".into()],
            "String should match pattern '^password$'",
            "string_pattern_mismatch",
        )])),
    }
}

/// The `User-Agent`, which names the session a login creates.
pub(crate) fn user_agent(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
}

/// A password login's answer (Project-W's): the session in the `token` cookie.
pub(crate) fn logged_in(state: &AppState, issued: &IssuedToken) -> HttpResponse {
    HttpResponse::Ok()
        .cookie(auth::session_cookie(
            issued,
            state.domain.config.web_server.no_https,
        ))
        .json("Success. Returning your login token as a cookie")
}
