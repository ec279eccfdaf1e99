use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("SCRIBE_GIT_HASH"),
    ")"
);

/// Scribe: a self-hostable transcription backend, wire-compatible with Project-W.
#[derive(Debug, Parser)]
#[command(name = "scribe", version = LONG_VERSION, about)]
pub struct Cli {
    /// Configuration file (YAML). Without one, ./config.yml, ~/.config/scribe/config.yml
    /// and /etc/scribe/config.yml are tried, then the embedded default.
    #[arg(long, short, global = true, env = "SCRIBE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate {
        /// Only list the migrations and whether each is applied.
        #[arg(long)]
        status: bool,
    },
    /// Print the OpenAPI document.
    Openapi {
        /// Exit non-zero when the committed document differs from the code.
        #[arg(long, conflicts_with = "write")]
        check: bool,
        /// Write the document to the file instead of printing it.
        #[arg(long)]
        write: bool,
        /// The committed document, for --check and --write.
        #[arg(long, default_value = "openapi/openapi.json", value_name = "PATH")]
        path: PathBuf,
    },
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
    /// Re-check every LDAP and OIDC user with their provider now (the server
    /// also does this hourly): users who lost access lose their tokens, users
    /// who lost the admin role lose their tokens' admin privileges.
    RevalidateUsers,
}
