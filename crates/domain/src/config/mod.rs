//! Scribe's configuration: one YAML file, compatible with Project-W v0.6.0's
//! `config.yml`, overridable from the environment, validated before anything
//! starts.
//!
//! Loading goes through these steps, each reporting problems by dotted key:
//! 1. the file (`--config`, else the first of [`search_paths`], else the
//!    embedded config/default.yaml) is parsed as YAML;
//! 2. `!ENV ${VAR:default}` tags are expanded ([`env_tag`]);
//! 3. `SCRIBE_` variables are laid over it ([`env_vars`]);
//! 4. `<secret>_file` keys are replaced by the files' contents
//!    ([`secret_files`]);
//! 5. the tree is deserialized into [`Config`], text being typed by the
//!    target field ([`lenient`]), missing keys taking Project-W's defaults;
//! 6. the values are validated ([`validate`]).

mod env_tag;
mod env_vars;
mod error;
mod lenient;
mod origin;
mod secret;
mod secret_files;
mod types;
mod validate;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

pub use env_vars::{ENV_PREFIX, NON_KEY_ENV_VARS};
pub use error::{ConfigError, Problem};
pub use secret::{Secret, REDACTED};
pub use types::*;

use lenient::{DeError, Lenient};
use origin::{KeyPath, Origins};
use secret_files::{is_set, DATABASE_URL, POSTGRES_CONNECTION_STRING};

/// The configuration used when no config file is found (SPEC §4): a local
/// instance on 127.0.0.1:5000 with SQLite under ./data.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../../config/default.yaml");

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// No file: [`EMBEDDED_DEFAULT`] (also used by [`parse_str`]).
    Embedded,
    /// This file.
    File(PathBuf),
}

/// A validated configuration and what the admin should know about it.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub source: ConfigSource,
    /// Accepted but noteworthy settings (e.g. an ignored `redis_connection`);
    /// the server logs each at start-up.
    pub warnings: Vec<String>,
}

/// Loads the configuration from `path` (or the search path) with the process
/// environment.
pub fn load(path: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => env.push((name, value)),
            (Ok(name), Err(_)) if name.starts_with(ENV_PREFIX) => {
                return Err(ConfigError::Invalid {
                    origin: "the environment".to_owned(),
                    problems: vec![Problem::new(name, "the value is not valid UTF-8")],
                });
            }
            // Variables Scribe doesn't read may hold anything.
            _ => {}
        }
    }
    load_with_env(path, env)
}

/// [`load`] with an explicit environment, so tests need not touch the
/// process's. `XDG_CONFIG_HOME` and `HOME` for the search path are read from
/// `env` too.
pub fn load_with_env(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<LoadedConfig, ConfigError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let path = match path {
        Some(path) => Some(path.to_path_buf()),
        None => search_paths(&env)
            .into_iter()
            .find(|candidate| candidate.is_file()),
    };
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let origin = format!("config file {}", path.display());
            load_text(&text, origin, ConfigSource::File(path), env)
        }
        None => load_text(
            EMBEDDED_DEFAULT,
            "the embedded default config".to_owned(),
            ConfigSource::Embedded,
            env,
        ),
    }
}

/// Runs the whole pipeline on YAML text, as if it were the embedded default.
pub fn parse_str(
    yaml: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<LoadedConfig, ConfigError> {
    load_text(
        yaml,
        "the configuration".to_owned(),
        ConfigSource::Embedded,
        env.into_iter().collect(),
    )
}

/// Where a config file is looked for when none is given, in order:
/// `./config.yml`, `./config.yaml`, `$XDG_CONFIG_HOME/scribe/config.yml`
/// (`~/.config/scribe/config.yml` without it), `/etc/scribe/config.yml`.
pub fn search_paths(env: &[(String, String)]) -> Vec<PathBuf> {
    let var = |name: &str| {
        env.iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| PathBuf::from(value))
    };
    let mut paths = vec![PathBuf::from("config.yml"), PathBuf::from("config.yaml")];
    let user_config_dir =
        var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|home| home.join(".config")));
    if let Some(dir) = user_config_dir {
        paths.push(dir.join("scribe").join("config.yml"));
    }
    paths.push(PathBuf::from("/etc/scribe/config.yml"));
    paths
}

fn load_text(
    text: &str,
    origin: String,
    source: ConfigSource,
    env: Vec<(String, String)>,
) -> Result<LoadedConfig, ConfigError> {
    let syntax = |err: serde_yaml::Error| ConfigError::Syntax {
        origin: origin.clone(),
        message: err.to_string(),
    };
    let mut root: Value = serde_yaml::from_str(text).map_err(syntax)?;
    root.apply_merge().map_err(syntax)?;
    if root.is_null() {
        // An empty file is an empty mapping (and then lacks client_url).
        root = Value::Mapping(Mapping::new());
    }

    let env_map: HashMap<String, String> = env.iter().cloned().collect();
    let mut origins = Origins::default();
    let mut problems = Vec::new();
    let mut read_by_tags = BTreeSet::new();
    env_tag::resolve_env_tags(
        &mut root,
        &KeyPath::root(),
        &env_map,
        &mut read_by_tags,
        &mut origins,
        &mut problems,
    );
    let Value::Mapping(mut mapping) = root else {
        return Err(invalid(
            origin,
            vec![Problem::new(
                "",
                "expected a mapping of keys to values at the top level",
            )],
            &origins,
        ));
    };
    env_vars::apply_env_vars(
        &mut mapping,
        &env,
        &read_by_tags,
        &mut origins,
        &mut problems,
    );
    if problems.is_empty() {
        secret_files::resolve_secret_files(&mut mapping, &mut problems);
        check_database_url_alias(&mut mapping, &mut problems);
    }
    if !problems.is_empty() {
        return Err(invalid(origin, problems, &origins));
    }

    let config: Config = serde_path_to_error::deserialize(Lenient::new(Value::Mapping(mapping)))
        .map_err(|err| invalid(origin.clone(), vec![deserialization_problem(err)], &origins))?;

    let problems = validate::validate(&config);
    if !problems.is_empty() {
        return Err(invalid(origin, problems, &origins));
    }
    let warnings = validate::warnings(&config);
    Ok(LoadedConfig {
        config,
        source,
        warnings,
    })
}

fn invalid(origin: String, problems: Vec<Problem>, origins: &Origins) -> ConfigError {
    ConfigError::Invalid {
        origin,
        problems: problems.into_iter().map(|p| origins.annotate(p)).collect(),
    }
}

/// `database_url` and Project-W's `postgres_connection_string` are one
/// setting; both at once is ambiguous.
fn check_database_url_alias(root: &mut Mapping, problems: &mut Vec<Problem>) {
    match (
        is_set(root, DATABASE_URL),
        is_set(root, POSTGRES_CONNECTION_STRING),
    ) {
        (true, true) => problems.push(Problem::new(
            DATABASE_URL,
            format!(
                "both {DATABASE_URL} and {POSTGRES_CONNECTION_STRING} are set; they are the same \
                 setting ({POSTGRES_CONNECTION_STRING} is Project-W's name), set only one"
            ),
        )),
        // An empty one of the two would otherwise count as a duplicate.
        (true, false) => {
            root.shift_remove(POSTGRES_CONNECTION_STRING);
        }
        (false, _) => {
            root.shift_remove(DATABASE_URL);
        }
    }
}

/// Turns serde's message into one that names the key and what it expects.
fn deserialization_problem(err: serde_path_to_error::Error<DeError>) -> Problem {
    let path = err.path().to_string();
    let mut key = if path == "." { String::new() } else { path };
    let message = err.into_inner().into_message();
    let join = |key: &str, field: &str| {
        if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        }
    };

    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        key = join(&key, field);
        return Problem::new(key, "required, but not set");
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // The path already ends with the unknown key.
        let expected = rest
            .split_once("`, ")
            .map(|(_, expected)| expected)
            .unwrap_or_default();
        let hint = match expected {
            "there are no fields" => "this section takes no keys".to_owned(),
            "" => String::new(),
            expected => expected.replacen("expected", "valid keys here are", 1),
        };
        return Problem::new(key, format!("unknown key; {hint}"));
    }
    let mut message = readable_type_names(&message.replace("unit value", "an empty value"));
    if message.contains("expected a string")
        && (message.contains("floating point")
            || message.contains("integer")
            || message.contains("boolean"))
    {
        message.push_str(" (put the value in quotes)");
    }
    Problem::new(key, message)
}

/// serde names Rust types in its messages ("expected struct TokensConfig");
/// the admin knows sections.
fn readable_type_names(message: &str) -> String {
    const STRUCT: &str = "expected struct ";
    match message.find(STRUCT) {
        Some(start) => {
            let rest = &message[start + STRUCT.len()..];
            let end = rest
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            format!(
                "{}expected a section of keys{}",
                &message[..start],
                &rest[end..]
            )
        }
        None => message.to_owned(),
    }
}
