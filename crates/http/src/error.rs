//! The one mapping from errors to HTTP responses. Every error body Scribe sends
//! is either `ErrorResponse {"detail": "..."}` or, for 422, FastAPI's
//! `HTTPValidationError {"detail": [{"loc", "msg", "type"}]}` (SPEC §3).

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use scribe_domain::{DomainError, Violation};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ErrorBody {
    Detail { detail: String },
    Validation { detail: Vec<Violation> },
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody::Detail {
                detail: detail.into(),
            },
            headers: Vec::new(),
        }
    }

    pub fn validation(violations: Vec<Violation>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody::Validation { detail: violations },
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human-readable message, for the cases that have one.
    pub fn detail(&self) -> Option<&str> {
        match &self.body {
            ErrorBody::Detail { detail } => Some(detail),
            ErrorBody::Validation { .. } => None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.body {
            ErrorBody::Detail { detail } => write!(f, "{}: {detail}", self.status),
            ErrorBody::Validation { detail } => write!(f, "{}: {detail:?}", self.status),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        response.json(&self.body)
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::NotFound(detail) => ApiError::new(StatusCode::NOT_FOUND, detail),
            DomainError::Invalid(detail) => ApiError::new(StatusCode::BAD_REQUEST, detail),
            DomainError::Unauthenticated(detail) => ApiError::new(StatusCode::UNAUTHORIZED, detail)
                .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
            DomainError::Forbidden(detail) => ApiError::new(StatusCode::FORBIDDEN, detail),
            DomainError::NotAllowed(detail) => {
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, detail)
            }
            DomainError::Conflict(detail) => ApiError::new(StatusCode::CONFLICT, detail),
            DomainError::Validation(violations) => ApiError::validation(violations),
            DomainError::Throttled {
                detail,
                retry_after_secs,
            } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, detail).with_header(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            ),
            DomainError::TooLarge(detail) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, detail),
            DomainError::Unavailable(detail) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            }
            DomainError::Internal(cause) => {
                // The cause may hold SQL or paths: it goes to the log, not to the client.
                tracing::error!(%cause, "internal error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body_of(err: &ApiError) -> serde_json::Value {
        let bytes = err.error_response().into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn internal_causes_stay_out_of_the_body() {
        let err = ApiError::from(DomainError::internal("db", "relation users does not exist"));
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body_of(&err),
            serde_json::json!({"detail": "Internal server error"})
        );
    }

    #[test]
    fn validation_errors_have_fastapi_shape() {
        let err = ApiError::from(DomainError::Validation(vec![Violation::new(
            ["body".into(), "password".into()],
            "too short",
            "value_error",
        )]));
        assert_eq!(
            body_of(&err),
            serde_json::json!({"detail": [{"loc": ["body", "password"], "msg": "too short", "type": "value_error"}]})
        );
    }

    #[test]
    fn throttling_says_when_to_come_back() {
        let err = ApiError::from(DomainError::Throttled {
            detail: "Too many failed logins".into(),
            retry_after_secs: 30,
        });
        let response = err.error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "30");
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
    }
}
