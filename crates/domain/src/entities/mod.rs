//! sea-orm models of the tables the migrations create. Services use them for
//! persistence; wire types live in the route crates and never expose these.

pub mod blob_chunks;
pub mod blobs;
pub mod default_job_settings;
pub mod job_settings;
pub mod jobs;
pub mod login_failures;
pub mod mail_outbox;
pub mod oidc_refresh_tokens;
pub mod oidc_used_states;
pub mod runner_sessions;
pub mod runners;
pub mod tokens;
pub mod tos_acceptances;
pub mod users;
