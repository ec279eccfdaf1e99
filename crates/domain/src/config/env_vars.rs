//! `SCRIBE_` environment variables, laid over the file:
//! `SCRIBE_WEB_SERVER__PORT=8080` sets `web_server.port`, `__` separating the
//! levels. Names are lowercased; where a section already has a key that
//! differs only in case (an OIDC provider called `Keycloak`), that key is used.

use std::collections::BTreeSet;

use serde_yaml::{Mapping, Value};

use super::env_tag::key_text;
use super::error::Problem;
use super::origin::{KeyPath, Origin, Origins};
use super::secret_files::same_setting;

/// The prefix of the variables that set config keys.
pub const ENV_PREFIX: &str = "SCRIBE_";

/// Variables with the prefix that are not config keys: the config file's path
/// (read by the CLI) and the log filter.
pub const NON_KEY_ENV_VARS: &[&str] = &["SCRIBE_CONFIG", "SCRIBE_LOG"];

/// Prefixes of other programs' variables: `scribe-runner`'s settings often sit
/// in the same environment (one container host, one compose file) and must not
/// stop the server as unknown keys.
pub const NON_KEY_ENV_PREFIXES: &[&str] = &["SCRIBE_RUNNER_"];

const LEVEL_SEPARATOR: &str = "__";

/// Applies every `SCRIBE_` variable (except those a `!ENV` tag read, which
/// are the file's business) to `root`, in name order so the result doesn't
/// depend on the order of the environment.
pub(crate) fn apply_env_vars(
    root: &mut Mapping,
    env: &[(String, String)],
    read_by_tags: &BTreeSet<String>,
    origins: &mut Origins,
    problems: &mut Vec<Problem>,
) {
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| {
            name.starts_with(ENV_PREFIX)
                && !NON_KEY_ENV_VARS.contains(&name.as_str())
                && !NON_KEY_ENV_PREFIXES
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
                && !read_by_tags.contains(name)
        })
        .collect();
    vars.sort();
    for (name, value) in vars {
        let rest = &name[ENV_PREFIX.len()..];
        let segments: Vec<String> = rest
            .split(LEVEL_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            problems.push(Problem::new(
                name.clone(),
                format!(
                    "environment variable {name} does not name a config key; write \
                     {ENV_PREFIX}<SECTION>__<KEY>, e.g. SCRIBE_WEB_SERVER__PORT"
                ),
            ));
            continue;
        }
        if let Err(problem) = apply_one(root, name, &segments, value, origins) {
            problems.push(problem);
        }
    }
}

/// The key of `section` that `segment` names: an exact match, else one that
/// differs only in case.
fn existing_key(section: &Mapping, segment: &str) -> Option<Value> {
    let mut case_insensitive = None;
    for key in section.keys() {
        let text = key_text(key);
        if text == segment {
            return Some(key.clone());
        }
        if case_insensitive.is_none() && text.eq_ignore_ascii_case(segment) {
            case_insensitive = Some(key.clone());
        }
    }
    case_insensitive
}

fn apply_one(
    root: &mut Mapping,
    name: &str,
    segments: &[String],
    value: &str,
    origins: &mut Origins,
) -> Result<(), Problem> {
    let Some((last, parents)) = segments.split_last() else {
        return Ok(());
    };
    let mut section = root;
    let mut path = KeyPath::root();
    let mut section_keys: Vec<String> = Vec::new();
    for segment in parents {
        let key = existing_key(section, segment).unwrap_or_else(|| Value::String(segment.clone()));
        let key_name = key_text(&key);
        path = path.key(key_name.as_str());
        let slot = section.entry(key).or_insert(Value::Null);
        if slot.is_null() {
            *slot = Value::Mapping(Mapping::new());
            origins.record(&path, Origin::EnvVar(name.to_owned()));
        }
        section = match slot {
            Value::Mapping(child) => child,
            _ => {
                return Err(Problem::new(
                    path.to_string(),
                    format!(
                        "environment variable {name} sets a key inside {path}, but {path} \
                         holds a single value, not a section"
                    ),
                ))
            }
        };
        section_keys.push(key_name);
    }
    let key = existing_key(section, last).unwrap_or_else(|| Value::String(last.clone()));
    let key_name = key_text(&key);
    let section_refs: Vec<&str> = section_keys.iter().map(String::as_str).collect();
    // The environment overrides the file: `SCRIBE_SECURITY__SECRET_KEY` wins
    // over `secret_key_file` in the file, `SCRIBE_DATABASE_URL` over
    // `postgres_connection_string`. Two variables for one setting still clash.
    for other in same_setting(&section_refs, &key_name) {
        if !origins.set_by_env_var(&path.key(other.as_str())) {
            section.shift_remove(other.as_str());
        }
    }
    let leaf = path.key(key_name);
    section.insert(key, Value::String(value.to_owned()));
    origins.record(&leaf, Origin::EnvVar(name.to_owned()));
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn apply(yaml: &str, vars: &[(&str, &str)]) -> (Mapping, Vec<Problem>) {
        let mut root: Mapping = serde_yaml::from_str(yaml).unwrap();
        let env: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut problems = Vec::new();
        apply_env_vars(
            &mut root,
            &env,
            &BTreeSet::new(),
            &mut Origins::default(),
            &mut problems,
        );
        (root, problems)
    }

    #[test]
    fn nested_keys_are_created_and_existing_case_is_kept() {
        let (root, problems) = apply(
            "security: {oidc_providers: {KeyCloak: {client_id: a}}}",
            &[
                ("SCRIBE_SECURITY__OIDC_PROVIDERS__KEYCLOAK__CLIENT_ID", "b"),
                ("SCRIBE_WEB_SERVER__PORT", "8080"),
                ("SCRIBE_CONFIG", "/etc/scribe/config.yml"),
                ("OTHER", "x"),
            ],
        );
        assert!(problems.is_empty(), "{problems:?}");
        let expected: Mapping = serde_yaml::from_str(
            "security: {oidc_providers: {KeyCloak: {client_id: b}}}\nweb_server: {port: '8080'}",
        )
        .unwrap();
        assert_eq!(root, expected);
    }

    #[test]
    fn a_value_is_not_a_section() {
        let (_, problems) = apply("client_url: x", &[("SCRIBE_CLIENT_URL__X", "1")]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "client_url");
    }

    #[test]
    fn malformed_names_are_reported() {
        let (_, problems) = apply("{}", &[("SCRIBE_WEB_SERVER____PORT", "1")]);
        assert_eq!(problems[0].key, "SCRIBE_WEB_SERVER____PORT");
    }

    #[test]
    fn the_environment_replaces_the_files_spelling_of_a_secret() {
        let (root, problems) = apply(
            "postgres_connection_string: postgresql://a\nsecurity: {secret_key_file: /x}",
            &[
                ("SCRIBE_DATABASE_URL", "sqlite://b"),
                ("SCRIBE_SECURITY__SECRET_KEY", "k"),
            ],
        );
        assert!(problems.is_empty());
        assert!(!root.contains_key(POSTGRES));
        assert_eq!(root["database_url"], Value::String("sqlite://b".into()));
        assert!(!root["security"]
            .as_mapping()
            .unwrap()
            .contains_key("secret_key_file"));
    }

    const POSTGRES: &str = "postgres_connection_string";
}
