//! The runner's configuration: a YAML file (every key optional), then command-line
//! flags and their `SCRIBE_RUNNER_*` variables on top, then validation that names
//! the bad key. The token may come from a file so it stays out of `ps` and the YAML.

use std::collections::BTreeMap;
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
    /// Whisper (faster-whisper) in a Python worker process.
    Whisper,
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
    /// `dummy`, `command` or `whisper`.
    pub mode: Option<Mode>,
    /// Seconds between heartbeats (the backend drops a runner silent for 60 s).
    pub heartbeat_interval_secs: Option<f64>,
    pub dummy: Option<DummyFileConfig>,
    pub command: Option<CommandFileConfig>,
    pub whisper: Option<WhisperFileConfig>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhisperFileConfig {
    /// The Python interpreter of the runner's environment (scripts/runner-env), e.g.
    /// `/opt/scribe-runner/venv/bin/python`; `python3` on the PATH if unset.
    pub python: Option<PathBuf>,
    /// Job model name (`tiny`, `tiny.en`, … `large`) → a local directory holding that
    /// Whisper model in CTranslate2 format. Models are never downloaded.
    pub models: Option<BTreeMap<String, PathBuf>>,
    /// `cpu` (default), `cuda` or `auto`.
    pub device: Option<String>,
    /// CTranslate2 compute type: `int8` (default), `float16` for GPUs, …
    pub compute_type: Option<String>,
    /// Threads for CPU inference; 0 (default) lets CTranslate2 choose.
    pub cpu_threads: Option<u32>,
    /// A replacement for the worker script built into the binary (development).
    pub worker_script: Option<PathBuf>,
    /// Where per-job directories are created; the system temp directory if unset.
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
    /// `dummy`, `command` or `whisper`.
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
    /// Command and whisper modes: where per-job directories are created.
    #[arg(long, env = "SCRIBE_RUNNER_WORKING_DIR", global = true)]
    pub working_dir: Option<PathBuf>,
    /// Whisper mode: the Python interpreter of the runner's environment.
    #[arg(long, env = "SCRIBE_RUNNER_WHISPER_PYTHON", global = true)]
    pub whisper_python: Option<PathBuf>,
    /// Whisper mode: a model as NAME=DIR (repeatable; comma-separated in the variable).
    /// Replaces the file's `whisper.models`.
    #[arg(
        long = "whisper-model",
        env = "SCRIBE_RUNNER_WHISPER_MODELS",
        global = true,
        value_delimiter = ','
    )]
    pub whisper_models: Vec<String>,
    /// Whisper mode: `cpu`, `cuda` or `auto`.
    #[arg(long, env = "SCRIBE_RUNNER_WHISPER_DEVICE", global = true)]
    pub whisper_device: Option<String>,
    /// Whisper mode: the CTranslate2 compute type (`int8`, `float16`, …).
    #[arg(long, env = "SCRIBE_RUNNER_WHISPER_COMPUTE_TYPE", global = true)]
    pub whisper_compute_type: Option<String>,
    /// Whisper mode: CPU threads (0: CTranslate2's choice).
    #[arg(long, env = "SCRIBE_RUNNER_WHISPER_CPU_THREADS", global = true)]
    pub whisper_cpu_threads: Option<u32>,
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
    Whisper(WhisperConfig),
}

impl ProcessorConfig {
    /// Where per-job directories go, if not the system temp directory.
    pub fn working_dir(&self) -> Option<&Path> {
        match self {
            ProcessorConfig::Dummy { .. } => None,
            ProcessorConfig::Command { working_dir, .. } => working_dir.as_deref(),
            ProcessorConfig::Whisper(whisper) => whisper.working_dir.as_deref(),
        }
    }
}

/// Whisper mode, validated.
#[derive(Debug, Clone)]
pub struct WhisperConfig {
    pub python: PathBuf,
    /// Job model name → model directory; never empty.
    pub models: BTreeMap<String, PathBuf>,
    pub device: String,
    pub compute_type: String,
    pub cpu_threads: u32,
    pub worker_script: Option<PathBuf>,
    pub working_dir: Option<PathBuf>,
}

/// The job setting `model`'s values (Project-W's `JobModelEnum`).
pub const WHISPER_MODEL_NAMES: [&str; 10] = [
    "tiny",
    "tiny.en",
    "base",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "turbo",
    "large",
];
const DEVICES: [&str; 3] = ["cpu", "cuda", "auto"];
/// CTranslate2's compute types.
const COMPUTE_TYPES: [&str; 10] = [
    "default",
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
];

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

        let processor =
            ProcessorConfig::merge(file.mode, file.dummy, file.command, file.whisper, o)?;

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

impl ProcessorConfig {
    /// Only the processing part of the file named by `--config` and the overrides: what
    /// `scribe-runner check --skip-backend` needs, without backend URL or token.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(file.mode, file.dummy, file.command, file.whisper, overrides)
    }

    fn merge(
        mode: Option<Mode>,
        dummy: Option<DummyFileConfig>,
        command: Option<CommandFileConfig>,
        whisper: Option<WhisperFileConfig>,
        o: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mode = o.mode.or(mode).unwrap_or(Mode::Dummy);
        let processor = match mode {
            Mode::Dummy => {
                let secs = o
                    .dummy_duration
                    .or(dummy.and_then(|d| d.duration_secs))
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
                let file_cmd = command.unwrap_or_default();
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
            Mode::Whisper => {
                ProcessorConfig::Whisper(whisper_config(whisper.unwrap_or_default(), o)?)
            }
        };
        Ok(processor)
    }
}

fn whisper_config(file: WhisperFileConfig, o: &Overrides) -> Result<WhisperConfig, ConfigError> {
    let python = o
        .whisper_python
        .clone()
        .or(file.python)
        .unwrap_or_else(|| PathBuf::from("python3"));
    if python.as_os_str().is_empty() {
        return Err(ConfigError("whisper.python: empty".into()));
    }
    // A bare name is looked up on the PATH when the worker starts; a path must exist.
    if python.components().count() > 1 && !python.is_file() {
        return Err(ConfigError(format!(
            "whisper.python: {} does not exist; create the runner's Python environment \
             with scripts/runner-env",
            python.display()
        )));
    }

    let models = if o.whisper_models.is_empty() {
        file.models.unwrap_or_default()
    } else {
        let mut models = BTreeMap::new();
        for entry in &o.whisper_models {
            let (name, dir) = entry.split_once('=').ok_or_else(|| {
                ConfigError(format!(
                    "whisper.models: --whisper-model takes NAME=DIR, got {entry:?}"
                ))
            })?;
            models.insert(name.trim().to_owned(), PathBuf::from(dir.trim()));
        }
        models
    };
    if models.is_empty() {
        return Err(missing(
            "whisper.models (mode: whisper)",
            "--whisper-model NAME=DIR",
        ));
    }
    for (name, dir) in &models {
        if !WHISPER_MODEL_NAMES.contains(&name.as_str()) {
            return Err(ConfigError(format!(
                "whisper.models: {name:?} is not a job model name; use one of {}",
                WHISPER_MODEL_NAMES.join(", ")
            )));
        }
        if !dir.join("model.bin").is_file() {
            return Err(ConfigError(format!(
                "whisper.models.{name}: {} is not a CTranslate2 Whisper model directory \
                 (no model.bin)",
                dir.display()
            )));
        }
    }

    let device = o
        .whisper_device
        .clone()
        .or(file.device)
        .unwrap_or_else(|| "cpu".into());
    if !DEVICES.contains(&device.as_str()) {
        return Err(ConfigError(format!(
            "whisper.device: must be one of {}, got {device:?}",
            DEVICES.join(", ")
        )));
    }
    let compute_type = o
        .whisper_compute_type
        .clone()
        .or(file.compute_type)
        .unwrap_or_else(|| "int8".into());
    if !COMPUTE_TYPES.contains(&compute_type.as_str()) {
        return Err(ConfigError(format!(
            "whisper.compute_type: must be one of {}, got {compute_type:?}",
            COMPUTE_TYPES.join(", ")
        )));
    }
    let cpu_threads = o.whisper_cpu_threads.or(file.cpu_threads).unwrap_or(0);
    if cpu_threads > 1024 {
        return Err(ConfigError(format!(
            "whisper.cpu_threads: must be at most 1024, got {cpu_threads}"
        )));
    }
    if let Some(script) = &file.worker_script {
        if !script.is_file() {
            return Err(ConfigError(format!(
                "whisper.worker_script: {} does not exist",
                script.display()
            )));
        }
    }
    let working_dir = o.working_dir.clone().or(file.working_dir);
    if let Some(dir) = &working_dir {
        if !dir.is_dir() {
            return Err(ConfigError(format!(
                "whisper.working_dir: {} is not a directory",
                dir.display()
            )));
        }
    }
    Ok(WhisperConfig {
        python,
        models,
        device,
        compute_type,
        cpu_threads,
        worker_script: file.worker_script,
        working_dir,
    })
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

    #[test]
    fn whisper_mode_maps_models_to_directories() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.en");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("model.bin"), b"x").unwrap();
        let yaml = format!(
            "backend_url: http://x\ntoken: x\nmode: whisper\nwhisper:\n  python: /bin/sh\n  \
             models:\n    tiny.en: {}\n  cpu_threads: 2\n",
            model.display()
        );
        let config = Config::merge(parse(&yaml), &Overrides::default()).unwrap();
        let ProcessorConfig::Whisper(whisper) = &config.processor else {
            panic!("{:?}", config.processor)
        };
        assert_eq!(whisper.python, PathBuf::from("/bin/sh"));
        assert_eq!(whisper.models["tiny.en"], model);
        assert_eq!(whisper.device, "cpu");
        assert_eq!(whisper.compute_type, "int8");
        assert_eq!(whisper.cpu_threads, 2);

        // Flags replace the file's models; only the processing part is needed for
        // `check --skip-backend`.
        let overrides = Overrides {
            mode: Some(Mode::Whisper),
            whisper_models: vec![format!("small={}", model.display())],
            whisper_compute_type: Some("float32".into()),
            ..Overrides::default()
        };
        let ProcessorConfig::Whisper(whisper) =
            ProcessorConfig::merge(None, None, None, None, &overrides).unwrap()
        else {
            panic!("not whisper")
        };
        assert_eq!(whisper.python, PathBuf::from("python3"));
        assert_eq!(whisper.models.keys().collect::<Vec<_>>(), ["small"]);
        assert_eq!(whisper.compute_type, "float32");
    }

    #[test]
    fn whisper_mistakes_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().display();
        let base = "backend_url: http://x\ntoken: x\nmode: whisper\n";
        let cases = [
            (String::new(), "whisper.models"),
            (
                format!("whisper:\n  models:\n    huge: {empty}\n"),
                "whisper.models",
            ),
            (
                format!("whisper:\n  models:\n    tiny: {empty}\n"),
                "whisper.models.tiny",
            ),
            (
                "whisper:\n  python: /no/such/python\n".to_owned(),
                "whisper.python",
            ),
        ];
        for (yaml, key) in cases {
            let error =
                Config::merge(parse(&format!("{base}{yaml}")), &Overrides::default()).unwrap_err();
            assert!(error.0.starts_with(key), "{yaml:?}: {error}");
        }
        let model = dir.path().join("m");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("model.bin"), b"x").unwrap();
        let models = format!("whisper:\n  models:\n    tiny: {}\n", model.display());
        for (extra, key) in [
            ("  device: tpu\n", "whisper.device"),
            ("  compute_type: int4\n", "whisper.compute_type"),
            ("  working_dir: /no/such/dir\n", "whisper.working_dir"),
        ] {
            let yaml = format!("{base}{models}{extra}");
            let error = Config::merge(parse(&yaml), &Overrides::default()).unwrap_err();
            assert!(error.0.starts_with(key), "{yaml:?}: {error}");
        }
        let overrides = Overrides {
            whisper_models: vec!["tiny".into()],
            ..Overrides::default()
        };
        let error = Config::merge(parse(base), &overrides).unwrap_err();
        assert!(error.0.contains("NAME=DIR"), "{error}");
    }
}
