//! Runner credentials as extractors (SPEC §3.6, §3.10): [`Runner`] needs a
//! valid runner token as `Authorization: Bearer`; [`OnlineRunner`] also needs
//! the runner to be online and `?session_token=` to be its current session.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use scribe_domain::entities::runner_sessions;
use scribe_domain::{runners, DomainError};
use scribe_http::auth::{credential, CredentialSource};
use scribe_http::{ApiError, AppState, Query};
use serde::Deserialize;
use utoipa::IntoParams;

/// A runner that presented a valid runner token.
pub struct Runner {
    pub id: i64,
}

/// An online runner with its current session.
pub struct OnlineRunner {
    pub session: runner_sessions::Model,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionTokenQuery {
    /// The session token `register` returned.
    pub session_token: String,
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| DomainError::Internal("no app state".into()).into())
}

async fn runner_id(req: &HttpRequest, state: &AppState) -> Result<i64, ApiError> {
    // Runners authenticate with a Bearer header only.
    let token = match credential(req) {
        Some((token, CredentialSource::Bearer)) => token,
        _ => return Err(DomainError::Unauthenticated("Not authenticated".into()).into()),
    };
    Ok(runners::authenticate(&state.domain, &token).await?)
}

impl FromRequest for Runner {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let id = runner_id(&req, &state).await?;
            Ok(Runner { id })
        })
    }
}

impl FromRequest for OnlineRunner {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let id = runner_id(&req, &state).await?;
            let query = Query::<SessionTokenQuery>::from_request(&req, &mut Payload::None).await?;
            let session = runners::online_session(&state.domain, id, &query.session_token).await?;
            Ok(OnlineRunner { session })
        })
    }
}
