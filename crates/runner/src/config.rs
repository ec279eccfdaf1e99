//! The runner's configuration: a YAML file (every key optional), then command-line
//! flags and their `SCRIBE_RUNNER_*` variables on top, then validation that names
//! the bad key. The token may come from a file so it stays out of `ps` and the YAML.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// What went wrong while loading the configuration; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// How jobs are turned into transcripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A deterministic fake transcript after a short delay (tests, load).
    Dummy,
    /// An external program (e.g. a whisper wrapper) writes the transcript.
    Command,
}

/// The runner token: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The YAML file, as written. Every key is optional so flags can fill the gaps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Base URL of the Scribe (or Project-W) backend, e.g. `https://scribe.example.org`.
    pub backend_url: Option<String>,
    /// The runner token from `POST /api/admins/create_runner`.
    pub token: Option<Secret>,
    /// A file holding the runner token (surrounding whitespace is ignored).
    pub token_file: Option<PathBuf>,
    /// Shown to users as the job's runner (≤ 40 characters).
    pub name: Option<String>,
    /// Higher priorities get jobs first (> 0).
    pub priority: Option<i64>,
    /// `dummy` or `command`.
    pub mode: Option<Mode>,
    /// Seconds between heartbeats (the backend drops a runner silent for 60 s).
    pub heartbeat_interval_secs: Option<f64>,
    pub dummy: Option<DummyFileConfig>,
    pub command: Option<CommandFileConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DummyFileConfig {
    /// How long a dummy job takes, in seconds.
    pub duration_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandFileConfig {
    /// The program and its leading arguments; the audio path and the output
    /// directory are appended.
    pub argv: Option<Vec<String>>,
    /// Where per-job directories (audio + outputs) are created; the system temp
    /// directory if unset.
    pub working_dir: Option<PathBuf>,
}

/// Flags (and their environment variables) that override the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// The YAML config file.
    #[arg(long, env = "SCRIBE_RUNNER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Base URL of the backend.
    #[arg(long, env = "SCRIBE_RUNNER_BACKEND_URL", global = true)]
    pub backend_url: Option<String>,
    /// The runner token (prefer --token-file: flags are visible in `ps`).
    #[arg(
        long,
        env = "SCRIBE_RUNNER_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// A file holding the runner token.
    #[arg(long, env = "SCRIBE_RUNNER_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// The runner's name.
    #[arg(long, env = "SCRIBE_RUNNER_NAME", global = true)]
    pub name: Option<String>,
    /// The runner's priority (> 0; higher gets jobs first).
    #[arg(long, env = "SCRIBE_RUNNER_PRIORITY", global = true)]
    pub priority: Option<i64>,
    /// `dummy` or `command`.
    #[arg(long, env = "SCRIBE_RUNNER_MODE", global = true)]
    pub mode: Option<Mode>,
    /// Seconds between heartbeats.
    #[arg(long, env = "SCRIBE_RUNNER_HEARTBEAT_INTERVAL", global = true)]
    pub heartbeat_interval: Option<f64>,
    /// Dummy mode: seconds a job takes.
    #[arg(long, env = "SCRIBE_RUNNER_DUMMY_DURATION", global = true)]
    pub dummy_duration: Option<f64>,
    /// Command mode: the program to run (its arguments go in --command-arg).
    #[arg(long, env = "SCRIBE_RUNNER_COMMAND", global = true)]
    pub command: Option<String>,
    /// Command mode: a leading argument for the program (repeatable).
    #[arg(long = "command-arg", global = true, allow_hyphen_values = true)]
    pub command_args: Vec<String>,
    /// Command mode: where per-job directories are created.
    #[arg(long, env = "SCRIBE_RUNNER_WORKING_DIR", global = true)]
    pub working_dir: Option<PathBuf>,
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Without a trailing slash.
    pub backend_url: String,
    pub token: Secret,
    pub name: String,
    pub priority: i64,
    pub heartbeat_interval: Duration,
    pub processor: ProcessorConfig,
}

#[derive(Debug, Clone)]
pub enum ProcessorConfig {
    Dummy {
        duration: Duration,
    },
    Command {
        argv: Vec<String>,
        working_dir: Option<PathBuf>,
    },
}

pub const DEFAULT_HEARTBEAT_SECS: f64 = 10.0;
pub const DEFAULT_DUMMY_SECS: f64 = 3.0;
/// Project-W's limit on runner names.
const MAX_NAME_LEN: usize = 40;

impl Config {
    /// The file named by `--config` (if any), then the overrides, validated.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(file, overrides)
    }

    pub fn merge(file: FileConfig, o: &Overrides) -> Result<Self, ConfigError> {
        let backend_url = o
            .backend_url
            .clone()
            .or(file.backend_url)
            .ok_or_else(|| missing("backend_url", "--backend-url"))?;
        let backend_url = backend_url.trim_end_matches('/').to_owned();
        if !(backend_url.starts_with("http://") || backend_url.starts_with("https://")) {
            return Err(ConfigError(format!(
                "backend_url: {backend_url:?} must start with http:// or https://"
            )));
        }

        let token = match (o.token.clone(), &o.token_file) {
            (Some(token), _) => Secret::new(token),
            (None, Some(path)) => token_from_file(path, "--token-file")?,
            (None, None) => match (file.token, &file.token_file) {
                (Some(token), _) => token,
                (None, Some(path)) => token_from_file(path, "token_file")?,
                (None, None) => return Err(missing("token (or token_file)", "--token-file")),
            },
        };
        if token.expose().trim().is_empty() {
            return Err(ConfigError("token: the runner token is empty".into()));
        }

        let name = o
            .name
            .clone()
            .or(file.name)
            .unwrap_or_else(|| "scribe-runner".into());
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            return Err(ConfigError(format!(
                "name: must be 1 to {MAX_NAME_LEN} characters, got {name:?}"
            )));
        }
        let priority = o.priority.or(file.priority).unwrap_or(1);
        if priority <= 0 {
            return Err(ConfigError(format!(
                "priority: must be greater than 0, got {priority}"
            )));
        }
        let heartbeat = o
            .heartbeat_interval
            .or(file.heartbeat_interval_secs)
            .unwrap_or(DEFAULT_HEARTBEAT_SECS);
        // The backend takes a runner offline after 60 s of silence.
        if !(0.01..=50.0).contains(&heartbeat) {
            return Err(ConfigError(format!(
                "heartbeat_interval_secs: must be between 0.01 and 50, got {heartbeat}"
            )));
        }

        let mode = o.mode.or(file.mode).unwrap_or(Mode::Dummy);
        let processor = match mode {
            Mode::Dummy => {
                let secs = o
                    .dummy_duration
                    .or(file.dummy.and_then(|d| d.duration_secs))
                    .unwrap_or(DEFAULT_DUMMY_SECS);
                if !(0.0..=86_400.0).contains(&secs) {
                    return Err(ConfigError(format!(
                        "dummy.duration_secs: must be between 0 and 86400, got {secs}"
                    )));
                }
                ProcessorConfig::Dummy {
                    duration: Duration::from_secs_f64(secs),
                }
            }
            Mode::Command => {
                let file_cmd = file.command.unwrap_or_default();
                let argv = match &o.command {
                    Some(program) => {
                        let mut argv = vec![program.clone()];
                        argv.extend(o.command_args.iter().cloned());
                        argv
                    }
                    None => file_cmd.argv.unwrap_or_default(),
                };
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return Err(missing("command.argv (mode: command)", "--command"));
                }
                let working_dir = o.working_dir.clone().or(file_cmd.working_dir);
                if let Some(dir) = &working_dir {
                    if !dir.is_dir() {
                        return Err(ConfigError(format!(
                            "command.working_dir: {} is not a directory",
                            dir.display()
                        )));
                    }
                }
                ProcessorConfig::Command { argv, working_dir }
            }
        };

        Ok(Self {
            backend_url,
            token,
            name,
            priority,
            heartbeat_interval: Duration::from_secs_f64(heartbeat),
            processor,
        })
    }
}

fn missing(key: &str, flag: &str) -> ConfigError {
    ConfigError(format!(
        "{key}: missing; set it in the config file or with {flag}"
    ))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml::from_str(&text)
        .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
}

fn token_from_file(path: &Path, key: &str) -> Result<Secret, ConfigError> {
    std::fs::read_to_string(path)
        .map(|t| Secret::new(t.trim()))
        .map_err(|e| ConfigError(format!("{key}: {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(yaml: &str) -> FileConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_file_with_flags_on_top() {
        let file = parse(
            "backend_url: http://localhost:5000/\ntoken: abc\nname: gpu-1\npriority: 3\n\
             mode: command\ncommand:\n  argv: [whisper-wrap, --fast]\n",
        );
        let overrides = Overrides {
            priority: Some(7),
            ..Overrides::default()
        };
        let config = Config::merge(file, &overrides).unwrap();
        assert_eq!(config.backend_url, "http://localhost:5000");
        assert_eq!(config.token.expose(), "abc");
        assert_eq!(config.name, "gpu-1");
        assert_eq!(config.priority, 7);
        assert_eq!(config.heartbeat_interval, Duration::from_secs(10));
        match config.processor {
            ProcessorConfig::Command { argv, working_dir } => {
                assert_eq!(argv, ["whisper-wrap", "--fast"]);
                assert!(working_dir.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{:?}", config.token).contains("abc"));
    }

    #[test]
    fn the_token_comes_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  secret-token\n").unwrap();
        let overrides = Overrides {
            backend_url: Some("https://scribe.example.org".into()),
            token_file: Some(path),
            ..Overrides::default()
        };
        let config = Config::merge(FileConfig::default(), &overrides).unwrap();
        assert_eq!(config.token.expose(), "secret-token");
        assert!(matches!(config.processor, ProcessorConfig::Dummy { .. }));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("token: x\n", "backend_url"),
            ("backend_url: http://x\n", "token"),
            ("backend_url: ftp://x\ntoken: x\n", "backend_url"),
            ("backend_url: http://x\ntoken: x\npriority: 0\n", "priority"),
            (
                "backend_url: http://x\ntoken: x\nheartbeat_interval_secs: 90\n",
                "heartbeat_interval_secs",
            ),
            ("backend_url: http://x\ntoken: x\nmode: command\n", "command.argv"),
            (
                "backend_url: http://x\ntoken: x\nname: 0123456789012345678901234567890123456789x\n",
                "name",
            ),
        ];
        for (yaml, key) in cases {
            let error = Config::merge(parse(yaml), &Overrides::default()).unwrap_err();
            assert!(error.0.starts_with(key), "{yaml:?}: {error}");
        }
        assert!(serde_yaml::from_str::<FileConfig>("bogus: 1\n").is_err());
    }
}
