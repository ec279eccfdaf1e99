use std::fmt;

/// The one error type of the domain layer. Each variant names *what* went wrong
/// in business terms; the `http` crate alone decides which status code that is.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The thing asked for doesn't exist (or isn't the caller's to see).
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but can't be carried out as asked.
    #[error("{0}")]
    Invalid(String),
    /// Missing, unknown or expired credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the right to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The operation is switched off by configuration or by the object's state.
    #[error("{0}")]
    NotAllowed(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Input that breaks a schema or cross-field rule, one entry per problem.
    #[error("invalid input: {0:?}")]
    Validation(Vec<Violation>),
    /// Too many attempts; the caller may retry after the given number of seconds.
    #[error("{detail}")]
    Throttled {
        detail: String,
        retry_after_secs: u64,
    },
    /// An upload or body larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// A service Scribe depends on (an LDAP directory, an identity provider)
    /// can't be reached or doesn't answer in time; the request may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// Something on our side failed. The cause is for the log, never for the client.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type DomainResult<T> = Result<T, DomainError>;

impl DomainError {
    /// Wraps an infrastructure failure, keeping the cause for the log.
    pub fn internal(context: &str, cause: impl fmt::Display) -> Self {
        DomainError::Internal(format!("{context}: {cause}"))
    }
}

impl From<sea_orm::DbErr> for DomainError {
    fn from(err: sea_orm::DbErr) -> Self {
        DomainError::internal("database", err)
    }
}

/// One problem with client input, in the shape FastAPI (and so Project-W's
/// clients) report it: where it is, what is wrong, and a machine-readable kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub loc: Vec<LocSegment>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum LocSegment {
    Field(String),
    Index(usize),
}

impl From<&str> for LocSegment {
    fn from(field: &str) -> Self {
        LocSegment::Field(field.to_owned())
    }
}

impl From<String> for LocSegment {
    fn from(field: String) -> Self {
        LocSegment::Field(field)
    }
}

impl From<usize> for LocSegment {
    fn from(index: usize) -> Self {
        LocSegment::Index(index)
    }
}

impl Violation {
    pub fn new(
        loc: impl IntoIterator<Item = LocSegment>,
        msg: impl Into<String>,
        kind: impl Into<String>,
    ) -> Self {
        Violation {
            loc: loc.into_iter().collect(),
            msg: msg.into(),
            kind: kind.into(),
        }
    }
}
