//! Scribe's business rules and persistence. Nothing in here knows about HTTP:
//! services take a database connection and typed input, and answer with typed
//! output or a [`DomainError`].

pub mod accounts;
pub mod banners;
pub mod config;
pub mod context;
pub mod crypto;
pub mod db;
pub mod email_address;
pub mod entities;
pub mod error;
pub mod events;
pub mod jobs;
pub mod links;
pub mod mail;
pub mod passwords;
pub mod runners;
pub mod scheduling;
pub mod secret_key;
pub mod session_cache;
pub mod storage;
pub mod throttle;
pub mod tokens;

pub use context::Domain;
pub use error::{DomainError, DomainResult, Violation};

/// The version of this build, shared by every crate of the workspace.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
