//! Secrets read from files: beside each secret key `<key>` the config accepts
//! `<key>_file: /path` (Docker and systemd credentials put secrets in files).
//! The file's content, without its trailing newline, becomes the value.

use serde_yaml::{Mapping, Value};

use super::env_tag::key_text;
use super::error::Problem;
use super::origin::KeyPath;

/// The keys that hold secrets: the section they live in (`*` stands for any
/// name in a map of providers or users) and the key.
const SECRET_KEYS: &[(&[&str], &str)] = &[
    (&[], "database_url"),
    (&[], "postgres_connection_string"),
    (&["web_server", "ssl"], "key_file_password"),
    (&["security"], "secret_key"),
    (
        &["security", "local_account", "user_provisioning", "*"],
        "password",
    ),
    (&["security", "oidc_providers", "*"], "client_secret"),
    (
        &["security", "ldap_providers", "*", "service_account_auth"],
        "password",
    ),
    (&["smtp_server"], "password"),
];

/// `database_url` under Project-W's name; one setting, two spellings.
pub(crate) const DATABASE_URL: &str = "database_url";
pub(crate) const POSTGRES_CONNECTION_STRING: &str = "postgres_connection_string";

const FILE_SUFFIX: &str = "_file";

fn section_matches(pattern: &[&str], section: &[&str]) -> bool {
    pattern.len() == section.len()
        && pattern
            .iter()
            .zip(section)
            .all(|(expected, actual)| *expected == "*" || expected == actual)
}

/// The secret key that `key` in `section` spells, if it is one (`secret_key`
/// or `secret_key_file` both spell `secret_key`).
fn secret_stem<'a>(section: &[&str], key: &'a str) -> Option<&'a str> {
    let stem = key.strip_suffix(FILE_SUFFIX).unwrap_or(key);
    SECRET_KEYS
        .iter()
        .any(|(pattern, secret)| *secret == stem && section_matches(pattern, section))
        .then_some(stem)
}

/// The other keys that set the same thing as `key` in `section`: its `_file`
/// twin, and for the database URL also its alias. When the environment sets
/// one of them, the file's spelling of the others gives way.
pub(crate) fn same_setting(section: &[&str], key: &str) -> Vec<String> {
    let Some(stem) = secret_stem(section, key) else {
        return Vec::new();
    };
    let stems: &[&str] =
        if section.is_empty() && (stem == DATABASE_URL || stem == POSTGRES_CONNECTION_STRING) {
            &[DATABASE_URL, POSTGRES_CONNECTION_STRING]
        } else {
            &[stem]
        };
    stems
        .iter()
        .flat_map(|stem| [(*stem).to_owned(), format!("{stem}{FILE_SUFFIX}")])
        .filter(|candidate| candidate != key)
        .collect()
}

/// A key counts as set unless it is absent or empty (`key:` with no value).
pub(crate) fn is_set(section: &Mapping, key: &str) -> bool {
    section.get(key).is_some_and(|value| !value.is_null())
}

/// Replaces every `<secret>_file` by the content of that file.
pub(crate) fn resolve_secret_files(root: &mut Mapping, problems: &mut Vec<Problem>) {
    for (pattern, key) in SECRET_KEYS {
        for_each_section(root, pattern, KeyPath::root(), &mut |section, path| {
            resolve_one(section, path, key, problems);
        });
    }
}

fn for_each_section(
    section: &mut Mapping,
    pattern: &[&str],
    path: KeyPath,
    visit: &mut dyn FnMut(&mut Mapping, &KeyPath),
) {
    match pattern.split_first() {
        None => visit(section, &path),
        Some((&"*", rest)) => {
            for (name, child) in section.iter_mut() {
                if let Value::Mapping(child) = child {
                    for_each_section(child, rest, path.key(key_text(name)), visit);
                }
            }
        }
        Some((name, rest)) => {
            if let Some(Value::Mapping(child)) = section.get_mut(*name) {
                for_each_section(child, rest, path.key(*name), visit);
            }
        }
    }
}

fn resolve_one(section: &mut Mapping, path: &KeyPath, key: &str, problems: &mut Vec<Problem>) {
    let file_key = format!("{key}{FILE_SUFFIX}");
    if !is_set(section, &file_key) {
        // An empty `<key>_file:` means "not from a file".
        section.shift_remove(file_key.as_str());
        return;
    }
    if is_set(section, key) {
        problems.push(Problem::new(
            path.key(key).to_string(),
            format!("both {key} and {file_key} are set; set only one of them"),
        ));
        return;
    }
    let file_path = path.key(file_key.as_str()).to_string();
    match section.shift_remove(file_key.as_str()) {
        Some(Value::String(secret_path)) => match std::fs::read_to_string(&secret_path) {
            Ok(content) => {
                let secret = content.trim_end_matches(['\n', '\r']).to_owned();
                section.insert(Value::String(key.to_owned()), Value::String(secret));
            }
            Err(err) => problems.push(Problem::new(
                file_path,
                format!("cannot read the secret file {secret_path}: {err}"),
            )),
        },
        _ => problems.push(Problem::new(
            file_path,
            "expected the path of a file that holds the secret",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_twins_and_aliases_are_the_same_setting() {
        assert_eq!(
            same_setting(&["security"], "secret_key"),
            ["secret_key_file"]
        );
        assert_eq!(
            same_setting(&["security"], "secret_key_file"),
            ["secret_key"]
        );
        assert_eq!(
            same_setting(&[], "database_url"),
            [
                "database_url_file",
                "postgres_connection_string",
                "postgres_connection_string_file"
            ]
        );
        assert_eq!(
            same_setting(&["security", "oidc_providers", "Keycloak"], "client_secret"),
            ["client_secret_file"]
        );
        // `key_file` of the TLS settings is a path, not a secret.
        assert!(same_setting(&["web_server", "ssl"], "key_file").is_empty());
        assert!(same_setting(&["imprint"], "password").is_empty());
    }
}
