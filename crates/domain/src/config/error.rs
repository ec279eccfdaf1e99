//! What goes wrong while loading the configuration, worded for the admin.

use std::fmt;
use std::path::PathBuf;

/// A configuration that can't be used. `Display` is the message the server
/// prints before it exits with code 2: it names the file and, for each
/// problem, the dotted key (`security.tokens.session_expiration_time_minutes`)
/// and what is expected there.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML at all.
    #[error("{origin} is not valid YAML: {message}")]
    Syntax { origin: String, message: String },
    /// The YAML was read, but settings in it (or in the environment) are wrong.
    #[error("{origin} is invalid:{}", ProblemList(problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The individual problems; empty for read and syntax errors.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// One wrong setting: the dotted key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, e.g. `web_server.port`; map keys appear as
    /// written (`security.oidc_providers.Keycloak.base_url`), list items as
    /// `[index]`. For an environment variable that is not a key at all, the
    /// variable's name.
    pub key: String,
    /// What is wrong and what is expected, including where the value came
    /// from when that was not the file (an environment variable).
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// One problem fits on the first line; several get a line each.
struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [only] => write!(f, " {only}"),
            all => all.iter().try_for_each(|p| write!(f, "\n  - {p}")),
        }
    }
}
