//! `!ENV` tags, as Project-W reads them with pyaml_env:
//! `secret_key: !ENV ${SECRET_KEY}` or
//! `url: !ENV "postgresql://scribe:${PG_PASSWORD}@${PG_HOST:localhost}/scribe"`.
//!
//! Every `${NAME}` or `${NAME:default}` in the tagged scalar is replaced; the
//! result is text, typed later by the field it lands in. One difference from
//! pyaml_env: a variable that is unset and has no default is an error (pyaml_env
//! silently substitutes `N/A`, which only fails later and obscurely).

use std::collections::{BTreeSet, HashMap};

use serde_yaml::Value;

use super::error::Problem;
use super::origin::{KeyPath, Origin, Origins};

/// Replaces each `!ENV`-tagged scalar in `value` by its expansion. Records the
/// variables read (so they are not also taken as `SCRIBE_` keys) and where
/// each expanded value came from.
pub(crate) fn resolve_env_tags(
    value: &mut Value,
    path: &KeyPath,
    env: &HashMap<String, String>,
    read_vars: &mut BTreeSet<String>,
    origins: &mut Origins,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::Mapping(mapping) => {
            for (key, child) in mapping.iter_mut() {
                let child_path = path.key(key_text(key));
                resolve_env_tags(child, &child_path, env, read_vars, origins, problems);
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                resolve_env_tags(item, &path.index(index), env, read_vars, origins, problems);
            }
        }
        Value::Tagged(tagged) if tagged.tag == "ENV" => {
            let raw = match &tagged.value {
                Value::String(text) => text.clone(),
                // pyaml_env sees the scalar's text; YAML already typed it here.
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                Value::Null => String::new(),
                _ => {
                    problems.push(Problem::new(
                        path.to_string(),
                        "!ENV must tag a single value such as ${VARIABLE}, not a list or section",
                    ));
                    return;
                }
            };
            match expand(&raw, env) {
                Ok(Expansion { text, variables }) => {
                    origins.record(path, Origin::EnvTag(variables.clone()));
                    read_vars.extend(variables);
                    *value = Value::String(text);
                }
                Err(missing) => problems.push(Problem::new(
                    path.to_string(),
                    format!(
                        "environment variable {missing} (read by !ENV) is not set; set it or \
                         give a default as ${{{missing}:default}}"
                    ),
                )),
            }
        }
        Value::Tagged(tagged) => problems.push(Problem::new(
            path.to_string(),
            format!(
                "unsupported YAML tag {} (only !ENV is understood)",
                tagged.tag
            ),
        )),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// A mapping key as text, the way it appears in key paths.
pub(crate) fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "null".to_owned(),
        other => serde_yaml::to_string(other)
            .map(|text| text.trim().to_owned())
            .unwrap_or_default(),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Expansion {
    text: String,
    variables: Vec<String>,
}

/// Expands `${NAME}` and `${NAME:default}` (default up to the closing brace);
/// anything else, including an unclosed `${`, is kept as written. Errs with
/// the name of an unset variable that has no default.
fn expand(raw: &str, env: &HashMap<String, String>) -> Result<Expansion, String> {
    let mut text = String::with_capacity(raw.len());
    let mut variables = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        text.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            text.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(':') {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if name.is_empty() || name.contains('{') {
            // Not a reference pyaml_env would recognise: keep it verbatim.
            text.push_str(&rest[start..start + 2 + end + 1]);
        } else {
            match (env.get(name), default) {
                (Some(value), _) => text.push_str(value),
                (None, Some(default)) => text.push_str(default),
                (None, None) => return Err(name.to_owned()),
            }
            variables.push(name.to_owned());
        }
        rest = &after[end + 1..];
    }
    text.push_str(rest);
    Ok(Expansion { text, variables })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn expands_variables_with_and_without_defaults() {
        let env = env(&[("USER", "scribe"), ("PW", "s3cret")]);
        let out = expand("postgres://${USER}:${PW}@${HOST:localhost}:5432/db", &env).unwrap();
        assert_eq!(out.text, "postgres://scribe:s3cret@localhost:5432/db");
        assert_eq!(out.variables, ["USER", "PW", "HOST"]);
    }

    #[test]
    fn default_may_contain_colons_and_be_empty() {
        let out = expand("${URL:http://x:1}|${E:}", &HashMap::new()).unwrap();
        assert_eq!(out.text, "http://x:1|");
    }

    #[test]
    fn missing_variable_without_default_is_named() {
        assert_eq!(expand("a-${NOPE}-b", &HashMap::new()).unwrap_err(), "NOPE");
    }

    #[test]
    fn text_without_references_is_kept() {
        assert_eq!(
            expand("plain $HOME ${", &HashMap::new()).unwrap().text,
            "plain $HOME ${"
        );
    }
}
