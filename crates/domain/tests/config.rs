//! The configuration pipeline end to end: files, `!ENV`, `SCRIBE_` variables,
//! `*_file` secrets, validation and redaction. No test touches the process
//! environment; each passes its own to `load_with_env` / `parse_str`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use scribe_domain::config::{
    load_with_env, parse_str, search_paths, Config, ConfigError, ConfigSource, LoadedConfig,
    LocalAccountMode, LogLevel, SmtpSecurity, EMBEDDED_DEFAULT,
};
use serde_yaml::Value;

// ---------------------------------------------------------------- helpers

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// The smallest config that loads: the required key plus consent to HTTP.
const MINIMAL: &str = "client_url: http://localhost:5000/#\nweb_server:\n  no_https: true\n";

fn load(yaml: &str, vars: &[(&str, &str)]) -> Result<LoadedConfig, ConfigError> {
    parse_str(yaml, env(vars))
}

fn config(yaml: &str, vars: &[(&str, &str)]) -> Config {
    match load(yaml, vars) {
        Ok(loaded) => loaded.config,
        Err(err) => panic!("config should load, but: {err}"),
    }
}

/// The error message for a config that must fail.
fn error(yaml: &str, vars: &[(&str, &str)]) -> String {
    match load(yaml, vars) {
        Ok(loaded) => panic!("config should fail, but loaded: {:?}", loaded.config),
        Err(err) => err.to_string(),
    }
}

/// The dotted keys of the problems reported for a config that must fail.
fn problem_keys(yaml: &str) -> Vec<String> {
    match load(yaml, &[]) {
        Ok(_) => panic!("config should fail:\n{yaml}"),
        Err(err) => err.problems().iter().map(|p| p.key.clone()).collect(),
    }
}

fn assert_problem(yaml: &str, key: &str) {
    let keys = problem_keys(yaml);
    assert!(
        keys.iter().any(|k| k == key),
        "expected a problem at {key}, got {keys:?} for\n{yaml}"
    );
}

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

const SECRET_KEY: &str = "f26a5feb0eb502fb2b4f872026ce7b5d3986dbfef77d72d3f29050df2f8b3bdb";

/// What config/example.yaml reads through `!ENV`.
fn example_env() -> Vec<(String, String)> {
    env(&[
        ("SECRET_KEY", SECRET_KEY),
        ("TLS_KEY_PASSWORD", "tls-key-passphrase"),
        ("POSTGRES_PASSWORD", "pg-password-42"),
        ("ADMIN_PASSWORD", "Admin-password-1234!"),
        ("KEYCLOAK_CLIENT_SECRET", "kc-secret-0815"),
        ("LDAP_BIND_PASSWORD", "ldap-bind-pw"),
        ("AD_BIND_PASSWORD", "ad-bind-pw"),
        ("SMTP_PASSWORD", "smtp-pw-4711"),
    ])
}

// ------------------------------------------------- the shipped configs

#[test]
fn embedded_default_is_a_local_instance() {
    let loaded = parse_str(EMBEDDED_DEFAULT, Vec::new()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = loaded.config;
    assert_eq!(config.client_url, "http://localhost:5000/#");
    assert_eq!(config.web_server.address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(config.web_server.port, 5000);
    assert!(config.web_server.no_https);
    assert!(config.database_url.is_none());
    assert_eq!(config.effective_database_url(), "sqlite://./data/scribe.db");
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert!(config.smtp_server.is_none());
    assert!(config.security.secret_key.is_none());
    assert_eq!(
        config.security.local_account.mode,
        LocalAccountMode::Enabled
    );
    assert_eq!(config.logging.console.level, LogLevel::Info);
    assert!(!config.logging.console.json_fmt);
}

#[test]
fn without_a_file_the_embedded_default_is_used() {
    let searched = search_paths(&env(&[("XDG_CONFIG_HOME", "/nonexistent/xdg")]));
    assert_eq!(
        searched,
        [
            PathBuf::from("config.yml"),
            PathBuf::from("config.yaml"),
            PathBuf::from("/nonexistent/xdg/scribe/config.yml"),
            PathBuf::from("/etc/scribe/config.yml"),
        ]
    );
    assert_eq!(
        search_paths(&env(&[("HOME", "/home/ada")]))[2],
        PathBuf::from("/home/ada/.config/scribe/config.yml")
    );
    // Only meaningful where no config file lies on the search path.
    if searched.iter().all(|path| !path.exists()) {
        let loaded = load_with_env(None, env(&[("XDG_CONFIG_HOME", "/nonexistent/xdg")])).unwrap();
        assert_eq!(loaded.source, ConfigSource::Embedded);
        assert_eq!(loaded.config.web_server.port, 5000);
    }
}

#[test]
fn example_config_loads() {
    let path = repo_file("config/example.yaml");
    let loaded = load_with_env(Some(&path), example_env()).unwrap();
    assert_eq!(loaded.source, ConfigSource::File(path));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = loaded.config;
    assert_eq!(
        config.effective_database_url(),
        "postgresql://scribe:pg-password-42@localhost:5432/scribe"
    );
    let security = &config.security;
    assert_eq!(security.secret_key.as_ref().unwrap().expose(), SECRET_KEY);
    assert!(security.oidc_providers.contains_key("Keycloak"));
    assert!(security.ldap_providers.contains_key("OpenLDAP"));
    assert!(security.ldap_providers.contains_key("Active Directory"));
    assert_eq!(
        security.local_account.user_provisioning[&0]
            .password
            .expose(),
        "Admin-password-1234!"
    );
    assert_eq!(config.smtp_server.unwrap().secure, SmtpSecurity::Starttls);
    assert_eq!(config.terms_of_services.len(), 2);
}

#[test]
fn example_config_names_its_missing_variables() {
    let path = repo_file("config/example.yaml");
    let err = load_with_env(Some(&path), Vec::new()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("config file"), "{message}");
    assert!(message.contains("example.yaml"), "{message}");
    assert!(message.contains("smtp_server.password"), "{message}");
    assert!(message.contains("SMTP_PASSWORD"), "{message}");
    assert!(message.contains("security.secret_key"), "{message}");
}

#[test]
fn project_w_config_is_accepted_unchanged() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/project-w-config.yml");
    let loaded = load_with_env(Some(&path), Vec::new()).unwrap();
    assert_eq!(
        loaded.warnings,
        ["redis_connection is ignored: Scribe needs no Redis"]
    );
    let config = loaded.config;
    assert_eq!(config.client_url, "http://localhost:5173/#");
    assert_eq!(config.web_server.address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(config.web_server.port, 5000);
    assert_eq!(
        config.database_url.as_ref().unwrap().expose(),
        "postgresql://project_w@localhost:5432"
    );
    let security = &config.security;
    assert_eq!(security.secret_key.as_ref().unwrap().expose(), SECRET_KEY);
    assert!(security.local_account.user_provisioning[&0].is_admin);
    let keycloak = &security.oidc_providers["KeyCloak"];
    assert_eq!(keycloak.scopes, ["email"]);
    assert!(keycloak.enable_pkce_s256_challenge);
    assert_eq!(keycloak.admin_role.as_ref().unwrap().name, "admins");
    let ldap = &security.ldap_providers["OpenLDAP"];
    assert_eq!(ldap.username_attributes, ["cn", "mail"]);
    assert_eq!(config.smtp_server.unwrap().secure, SmtpSecurity::Plain);
}

/// Project-W's documented Docker config (doc/installation.rst), with its
/// placeholders filled in.
#[test]
fn project_w_docker_config_with_env_tags_is_accepted() {
    let yaml = r#"
client_url: https://transcribe.example.org/#
web_server:
  allowed_hosts:
    - localhost
    - transcribe.example.org
  reverse_proxy:
    trusted_proxies:
      - "172.16.0.0/12" #private ip range used by docker by default
  no_https: true
postgres_connection_string: !ENV 'postgresql://project_w:${POSTGRES_PASSWORD}@postgres:5432/project_w'
redis_connection:
  connection_string: 'redis://redis:6379/project-W'
security:
  secret_key: !ENV ${SECRET_KEY}
  local_account:
    user_provisioning:
      0:
        email: admin@example.org
        password: !ENV ${ADMIN_PASSWORD}
        is_admin: true
smtp_server:
  hostname: mail.example.org
  port: 465
  secure: ssl
  sender_email: transcribe@example.org
  username: transcribe@example.org
  password: !ENV ${SMTP_PASSWORD}
cleanup:
  finished_job_retention_in_days: 7
  user_retention_in_days: 365
logging:
  console:
    fmt: "<%(levelname)s> [%(asctime)s | %(name)s] %(message)s"
    datefmt: "%m/%d/%Y %I:%M%p"
    level: WARNING
  file:
    path: ./file.log
    json_fmt: true
    level: DEBUG
"#;
    let loaded = load(
        yaml,
        &[
            ("POSTGRES_PASSWORD", "pg"),
            ("SECRET_KEY", SECRET_KEY),
            ("ADMIN_PASSWORD", "123456789012"),
            ("SMTP_PASSWORD", "smtp"),
        ],
    )
    .unwrap();
    assert_eq!(
        loaded.config.effective_database_url(),
        "postgresql://project_w:pg@postgres:5432/project_w"
    );
    // A numeric password read through !ENV stays text.
    assert_eq!(
        loaded.config.security.local_account.user_provisioning[&0]
            .password
            .expose(),
        "123456789012"
    );
    assert_eq!(loaded.config.logging.file.level, LogLevel::Debug);
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.contains("redis_connection")));
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.contains("logging.console.fmt")));
}

// ------------------------------------------------------- example drift

/// Maps whose keys are names chosen by the admin (providers, user and ToS ids).
const NAMED_ENTRY_MAPS: &[&str] = &[
    "user_provisioning",
    "oidc_providers",
    "ldap_providers",
    "terms_of_services",
];
/// Maps whose content is free-form.
const FREE_FORM_MAPS: &[&str] = &["additional_authorize_params"];
/// Keys example.yaml shows commented out, since they can't be active there
/// (mutually exclusive, or ignored with a warning).
const COMMENTED_OUT: &[&str] = &[
    "redis_connection",
    "redis_connection.connection_string",
    "redis_connection.unix_socket_path",
    "imprint.url",
];

fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Value::Mapping(mapping) = value else {
        return;
    };
    let named_entries = NAMED_ENTRY_MAPS.contains(&prefix.rsplit('.').next().unwrap_or(""));
    for (key, child) in mapping {
        let segment = match key {
            _ if named_entries => "*".to_owned(),
            Value::String(text) => text.clone(),
            other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
        };
        let path = if prefix.is_empty() {
            segment.clone()
        } else {
            format!("{prefix}.{segment}")
        };
        out.insert(path.clone());
        if !FREE_FORM_MAPS.contains(&segment.as_str()) {
            key_paths(child, &path, out);
        }
    }
}

/// A config with every optional section present, so that serializing it
/// shows every key Scribe has. Deserialized without validation.
const EVERY_SECTION: &str = r#"
client_url: https://scribe.example.org/#
web_server:
  reverse_proxy: {trusted_proxies: []}
  ssl: {cert_file: c, key_file: k}
redis_connection: {}
security:
  local_account:
    user_provisioning:
      0: {email: a@example.org, password: p}
  oidc_providers:
    x:
      base_url: https://x.example.org
      client_id: x
      client_secret: x
      user_role: {field_name: f, name: n}
      admin_role: {field_name: f, name: n}
  ldap_providers:
    y:
      server_address: ldap://y
      service_account_auth: {user: u, password: p}
      username_attributes: [uid]
      uid_attribute: uid
      mail_attribute: mail
      user_query: {base_dn: b, filter: f}
      admin_query: {base_dn: b, filter: f}
smtp_server: {hostname: h, sender_email: s@example.org}
imprint: {name: n}
terms_of_services:
  0: {name: n, version: 1, tos_html: t}
"#;

#[test]
fn example_config_documents_every_key() {
    let full: Config = serde_yaml::from_str(EVERY_SECTION).unwrap();
    let mut keys = BTreeSet::new();
    key_paths(&serde_yaml::to_value(&full).unwrap(), "", &mut keys);
    // Sanity: the walk reaches deep keys.
    assert!(keys.contains("security.ldap_providers.*.admin_query.filter"));
    assert!(keys.contains("web_server.ssl.key_file_password"));

    let example_text = std::fs::read_to_string(repo_file("config/example.yaml")).unwrap();
    let example: Value = serde_yaml::from_str(&example_text).unwrap();
    let mut documented = BTreeSet::new();
    key_paths(&example, "", &mut documented);

    let undocumented: Vec<&String> = keys
        .iter()
        .filter(|key| !documented.contains(*key))
        .filter(|key| {
            if COMMENTED_OUT.contains(&key.as_str()) {
                let leaf = key.rsplit('.').next().unwrap_or(key);
                assert!(
                    example_text.contains(&format!("# {leaf}:"))
                        || example_text.contains(&format!("#   {leaf}:")),
                    "{key} should be shown commented out in config/example.yaml"
                );
                false
            } else {
                true
            }
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "config/example.yaml lacks these keys; document them: {undocumented:?}"
    );
}

// ------------------------------------------------- environment layering

#[test]
fn environment_overrides_file_and_types_text_by_field() {
    let config = config(
        &format!("{MINIMAL}security:\n  tokens:\n    session_expiration_time_minutes: 30\n"),
        &[
            ("SCRIBE_WEB_SERVER__PORT", "8080"),
            ("SCRIBE_WEB_SERVER__NO_HTTPS", "true"),
            ("SCRIBE_WEB_SERVER__ADDRESS", "::"),
            (
                "SCRIBE_WEB_SERVER__ALLOWED_HOSTS",
                "scribe.example.org, localhost",
            ),
            (
                "SCRIBE_SECURITY__TOKENS__SESSION_EXPIRATION_TIME_MINUTES",
                "120",
            ),
            ("SCRIBE_SECURITY__LOCAL_ACCOUNT__MODE", "no_signup"),
            ("SCRIBE_DATABASE_URL", "postgres://scribe:pw@db/scribe"),
            ("SCRIBE_CLEANUP__FINISHED_JOB_RETENTION_IN_DAYS", "14"),
            ("SCRIBE_LOGGING__CONSOLE__LEVEL", "DEBUG"),
            // Not config keys, and not Scribe's.
            ("SCRIBE_CONFIG", "/elsewhere.yml"),
            ("SCRIBE_LOG", "debug"),
            ("PATH", "/usr/bin"),
        ],
    );
    assert_eq!(config.web_server.port, 8080);
    assert!(config.web_server.no_https);
    assert_eq!(config.web_server.address, "::".parse::<IpAddr>().unwrap());
    assert_eq!(
        config.web_server.allowed_hosts,
        ["scribe.example.org", "localhost"]
    );
    assert_eq!(config.security.tokens.session_expiration_time_minutes, 120);
    // Untouched siblings keep their values.
    assert_eq!(
        config
            .security
            .tokens
            .rolling_session_before_expiration_minutes,
        10
    );
    assert_eq!(
        config.security.local_account.mode,
        LocalAccountMode::NoSignup
    );
    assert_eq!(
        config.effective_database_url(),
        "postgres://scribe:pw@db/scribe"
    );
    assert_eq!(config.cleanup.finished_job_retention_in_days, Some(14));
    assert_eq!(config.logging.console.level, LogLevel::Debug);
}

#[test]
fn numeric_secrets_from_the_environment_stay_text() {
    let digits = "1234567890".repeat(6) + "1234";
    let config = config(
        MINIMAL,
        &[
            ("SCRIBE_SECURITY__SECRET_KEY", digits.as_str()),
            ("SCRIBE_SMTP_SERVER__HOSTNAME", "smtp.example.org"),
            ("SCRIBE_SMTP_SERVER__SENDER_EMAIL", "scribe@example.org"),
            ("SCRIBE_SMTP_SERVER__USERNAME", "0042"),
            ("SCRIBE_SMTP_SERVER__PASSWORD", "000123"),
            ("SCRIBE_SMTP_SERVER__PORT", "25"),
        ],
    );
    assert_eq!(config.security.secret_key.unwrap().expose(), &digits);
    let smtp = config.smtp_server.unwrap();
    assert_eq!(smtp.username.as_deref(), Some("0042"));
    assert_eq!(smtp.password.unwrap().expose(), "000123");
    assert_eq!(smtp.port, 25);
}

#[test]
fn environment_finds_provider_names_ignoring_case() {
    let yaml = format!(
        "{MINIMAL}security:\n  oidc_providers:\n    KeyCloak:\n      base_url: https://id.example.org/realms/r\n      client_id: scribe\n      client_secret: from-file\n"
    );
    let config = config(
        &yaml,
        &[
            (
                "SCRIBE_SECURITY__OIDC_PROVIDERS__KEYCLOAK__CLIENT_SECRET",
                "from-env",
            ),
            ("SCRIBE_SECURITY__OIDC_PROVIDERS__KEYCLOAK__HIDDEN", "yes"),
        ],
    );
    let providers = &config.security.oidc_providers;
    assert_eq!(providers.len(), 1);
    assert_eq!(providers["KeyCloak"].client_secret.expose(), "from-env");
    assert!(providers["KeyCloak"].hidden);
}

#[test]
fn environment_can_add_whole_sections_and_ids() {
    let config = config(
        MINIMAL,
        &[
            ("SCRIBE_TERMS_OF_SERVICES__3__NAME", "Terms"),
            ("SCRIBE_TERMS_OF_SERVICES__3__VERSION", "2"),
            ("SCRIBE_TERMS_OF_SERVICES__3__TOS_HTML", "<p>Be nice</p>"),
        ],
    );
    assert_eq!(config.terms_of_services[&3].version, 2);
}

#[test]
fn environment_replaces_the_files_other_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("never-read");
    let yaml = format!(
        "{MINIMAL}postgres_connection_string: postgresql://file/db\nsecurity:\n  secret_key_file: {}\n",
        missing.display()
    );
    let config = config(
        &yaml,
        &[
            ("SCRIBE_DATABASE_URL", "sqlite://./env.db"),
            ("SCRIBE_SECURITY__SECRET_KEY", SECRET_KEY),
        ],
    );
    assert_eq!(config.effective_database_url(), "sqlite://./env.db");
    assert_eq!(config.security.secret_key.unwrap().expose(), SECRET_KEY);
}

#[test]
fn unknown_key_from_the_environment_is_named_with_its_variable() {
    let message = error(MINIMAL, &[("SCRIBE_WEB_SERVER__PROT", "8080")]);
    assert!(message.contains("web_server.prot"), "{message}");
    assert!(message.contains("SCRIBE_WEB_SERVER__PROT"), "{message}");
    assert!(message.contains("unknown key"), "{message}");

    let message = error(MINIMAL, &[("SCRIBE_FOO", "1")]);
    assert!(message.contains("foo"), "{message}");
    assert!(message.contains("SCRIBE_FOO"), "{message}");
}

#[test]
fn wrong_type_from_the_environment_is_named_with_its_variable() {
    let message = error(MINIMAL, &[("SCRIBE_WEB_SERVER__PORT", "eighty")]);
    assert!(message.contains("web_server.port"), "{message}");
    assert!(message.contains("SCRIBE_WEB_SERVER__PORT"), "{message}");
    assert!(message.contains("u16"), "{message}");
}

#[test]
fn the_runner_daemons_variables_are_not_server_keys() {
    let loaded = config(
        MINIMAL,
        &[
            ("SCRIBE_RUNNER_TOKEN", "abc"),
            ("SCRIBE_RUNNER_BACKEND_URL", "http://scribe:5000"),
            ("SCRIBE_RUNNERS__HEARTBEAT_TIMEOUT_SECONDS", "5"),
        ],
    );
    assert_eq!(loaded.runners.heartbeat_timeout_seconds, 5);
}

#[test]
fn malformed_variable_names_are_rejected() {
    let message = error(MINIMAL, &[("SCRIBE_WEB_SERVER__", "1")]);
    assert!(message.contains("SCRIBE_WEB_SERVER__"), "{message}");
}

// -------------------------------------------------------------- !ENV

#[test]
fn env_tags_expand_with_and_without_defaults() {
    let yaml = format!(
        "{MINIMAL}database_url: !ENV \"postgresql://${{PG_USER}}:${{PG_PASSWORD}}@${{PG_HOST:localhost}}:${{PG_PORT:5432}}/scribe\"\n\
         data_dir: !ENV ${{DATA_DIR:/var/lib/scribe}}\n\
         database:\n  max_connections: !ENV ${{POOL:7}}\n"
    );
    let config = config(
        &yaml,
        &[
            ("PG_USER", "scribe"),
            ("PG_PASSWORD", "pw"),
            ("PG_PORT", "6543"),
        ],
    );
    assert_eq!(
        config.effective_database_url(),
        "postgresql://scribe:pw@localhost:6543/scribe"
    );
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/scribe"));
    assert_eq!(config.database.max_connections, 7);
}

#[test]
fn env_tag_with_a_missing_variable_names_key_and_variable() {
    let yaml = format!("{MINIMAL}security:\n  secret_key: !ENV ${{SECRET_KEY}}\n");
    let message = error(&yaml, &[]);
    assert!(message.contains("security.secret_key"), "{message}");
    assert!(message.contains("SECRET_KEY"), "{message}");
}

#[test]
fn bad_value_from_an_env_tag_says_so() {
    let yaml = format!("{MINIMAL}database:\n  max_connections: !ENV ${{POOL}}\n");
    let message = error(&yaml, &[("POOL", "many")]);
    assert!(message.contains("database.max_connections"), "{message}");
    assert!(message.contains("!ENV"), "{message}");
}

#[test]
fn variables_read_by_env_tags_are_not_config_keys() {
    let yaml = format!("{MINIMAL}security:\n  secret_key: !ENV ${{SCRIBE_KEY}}\n");
    let config = config(&yaml, &[("SCRIBE_KEY", SECRET_KEY)]);
    assert_eq!(config.security.secret_key.unwrap().expose(), SECRET_KEY);
}

#[test]
fn other_yaml_tags_are_rejected() {
    let message = error(&format!("{MINIMAL}data_dir: !FILE /x\n"), &[]);
    assert!(message.contains("data_dir"), "{message}");
    assert!(message.contains("!FILE"), "{message}");
}

// ------------------------------------------------------ *_file secrets

#[test]
fn secrets_are_read_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    };
    let key_file = write("secret_key", &format!("{SECRET_KEY}\n"));
    let smtp_file = write("smtp", "smtp pass with spaces \n");
    let client_file = write("client", "client-secret\r\n");
    let bind_file = write("bind", "bind-pw");
    let user_file = write("user", "user-password-123\n");
    let db_file = write("db", "postgresql://scribe:pw@db/scribe\n");
    let yaml = format!(
        r#"{MINIMAL}postgres_connection_string_file: {db_file}
security:
  secret_key_file: {key_file}
  local_account:
    user_provisioning:
      1: {{email: ops@example.org, password_file: {user_file}}}
  oidc_providers:
    Keycloak: {{base_url: "https://id.example.org/realms/r", client_id: scribe, client_secret_file: {client_file}}}
  ldap_providers:
    OpenLDAP:
      server_address: ldap://ldap.example.org
      service_account_auth: {{user: "cn=scribe,dc=example,dc=org", password_file: {bind_file}}}
      username_attributes: [uid]
      uid_attribute: uid
      mail_attribute: mail
      user_query: {{base_dn: "dc=example,dc=org", filter: "objectClass=inetOrgPerson"}}
smtp_server:
  hostname: smtp.example.org
  sender_email: scribe@example.org
  username: scribe
"#
    );
    let config = config(
        &yaml,
        &[("SCRIBE_SMTP_SERVER__PASSWORD_FILE", smtp_file.as_str())],
    );
    let security = &config.security;
    assert_eq!(security.secret_key.as_ref().unwrap().expose(), SECRET_KEY);
    assert_eq!(
        security.local_account.user_provisioning[&1]
            .password
            .expose(),
        "user-password-123"
    );
    assert_eq!(
        security.oidc_providers["Keycloak"].client_secret.expose(),
        "client-secret"
    );
    assert_eq!(
        security.ldap_providers["OpenLDAP"]
            .service_account_auth
            .password
            .expose(),
        "bind-pw"
    );
    assert_eq!(
        config
            .smtp_server
            .as_ref()
            .unwrap()
            .password
            .as_ref()
            .unwrap()
            .expose(),
        "smtp pass with spaces "
    );
    assert_eq!(
        config.effective_database_url(),
        "postgresql://scribe:pw@db/scribe"
    );
}

#[test]
fn a_secret_and_its_file_together_are_an_error() {
    let yaml = format!(
        "{MINIMAL}security:\n  secret_key: {SECRET_KEY}\n  secret_key_file: /run/secrets/key\n"
    );
    let message = error(&yaml, &[]);
    assert!(message.contains("security.secret_key"), "{message}");
    assert!(message.contains("secret_key_file"), "{message}");
}

#[test]
fn an_unreadable_secret_file_names_key_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let message = error(
        MINIMAL,
        &[(
            "SCRIBE_SECURITY__SECRET_KEY_FILE",
            &missing.display().to_string(),
        )],
    );
    assert!(message.contains("security.secret_key_file"), "{message}");
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("SCRIBE_SECURITY__SECRET_KEY_FILE"),
        "{message}"
    );
}

#[test]
fn file_suffix_only_works_for_secrets() {
    let message = error(&format!("{MINIMAL}data_dir_file: /x\n"), &[]);
    assert!(message.contains("data_dir_file"), "{message}");
    assert!(message.contains("unknown key"), "{message}");
}

// ----------------------------------------------- errors name the key

#[test]
fn unknown_key_in_the_file_is_named() {
    let message = error(
        &format!("{MINIMAL}security:\n  tokens:\n    lifetime: 5\n"),
        &[],
    );
    assert!(message.contains("security.tokens.lifetime"), "{message}");
    assert!(
        message.contains("session_expiration_time_minutes"),
        "{message}"
    );

    let message = error(&format!("{MINIMAL}colour: blue\n"), &[]);
    assert!(message.contains("colour"), "{message}");
}

#[test]
fn wrong_type_names_the_key() {
    let message = error(
        "client_url: http://localhost:5000/#\nweb_server:\n  no_https: true\n  port: [1]\n",
        &[],
    );
    assert!(message.contains("web_server.port"), "{message}");
    assert!(message.contains("u16"), "{message}");

    let message = error(
        &format!("{MINIMAL}security:\n  local_account:\n    mode: open\n"),
        &[],
    );
    assert!(message.contains("security.local_account.mode"), "{message}");
    assert!(message.contains("no_signup_hidden"), "{message}");

    let message = error(
        "client_url: http://localhost:5000/#\nweb_server: {no_https: true, address: localhost}\n",
        &[],
    );
    assert!(message.contains("web_server.address"), "{message}");
    assert!(message.contains("IP address"), "{message}");
}

#[test]
fn empty_sections_take_their_defaults() {
    let config = config(
        &format!(
            "{MINIMAL}security:\ncleanup:\nimprint:\nlogging:\n  console:\n    level: warning\n"
        ),
        &[],
    );
    assert_eq!(config.security.tokens.session_expiration_time_minutes, 60);
    assert!(config.imprint.is_none());
    assert_eq!(config.logging.console.level, LogLevel::Warning);

    let message = error(&format!("{MINIMAL}security: {{tokens: 5}}\n"), &[]);
    assert!(message.contains("security.tokens"), "{message}");
    assert!(message.contains("expected a section"), "{message}");
    let message = error(
        &format!("{MINIMAL}logging: {{console: {{level: verbose}}}}\n"),
        &[],
    );
    assert!(message.contains("logging.console.level"), "{message}");
    assert!(message.contains("WARNING"), "{message}");
}

#[test]
fn unquoted_numeric_secret_in_the_file_asks_for_quotes() {
    let digits = "1".repeat(64);
    let message = error(
        &format!("{MINIMAL}security:\n  secret_key: {digits}\n"),
        &[],
    );
    assert!(message.contains("security.secret_key"), "{message}");
    assert!(message.contains("quotes"), "{message}");
}

#[test]
fn missing_required_keys_are_named() {
    let message = error("web_server: {no_https: true}\n", &[]);
    assert!(message.contains("client_url"), "{message}");
    assert!(message.contains("required"), "{message}");

    let yaml = format!(
        "{MINIMAL}security:\n  oidc_providers:\n    Keycloak:\n      base_url: https://id.example.org\n      client_id: x\n"
    );
    let message = error(&yaml, &[]);
    assert!(
        message.contains("security.oidc_providers.Keycloak.client_secret"),
        "{message}"
    );
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("config.yml");
    let message = load_with_env(Some(&missing), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );

    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "client_url: [unclosed\n").unwrap();
    let err = load_with_env(Some(&broken), Vec::new()).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("broken.yml"), "{err}");

    let invalid = dir.path().join("invalid.yml");
    std::fs::write(
        &invalid,
        format!("{MINIMAL}database:\n  max_connections: -1\n"),
    )
    .unwrap();
    let message = load_with_env(Some(&invalid), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(message.contains("invalid.yml"), "{message}");
}

#[test]
fn database_url_and_its_alias_together_are_an_error() {
    let message = error(
        &format!(
            "{MINIMAL}database_url: sqlite://a.db\npostgres_connection_string: postgresql://b\n"
        ),
        &[],
    );
    assert!(message.contains("database_url"), "{message}");
    assert!(message.contains("postgres_connection_string"), "{message}");
}

// -------------------------------------------------------- validation

#[test]
fn client_url_follows_project_ws_pattern() {
    for ok in [
        "http://192.168.1.100:5173/#",
        "https://sub.example.org/apps/project-W/frontend/#",
        "https://example.com",
    ] {
        config(
            &format!("client_url: \"{ok}\"\nweb_server: {{no_https: true}}\n"),
            &[],
        );
    }
    for bad in [
        "ftp://example.com/#",
        "https://example.com/#/x",
        "localhost:5000",
    ] {
        assert_problem(
            &format!("client_url: \"{bad}\"\nweb_server: {{no_https: true}}\n"),
            "client_url",
        );
    }
}

#[test]
fn each_validation_rule_names_its_key() {
    let cases: &[(&str, &str)] = &[
        ("security: {secret_key: abc}", "security.secret_key"),
        (
            "security: {secret_key: \"zz6a5feb0eb502fb2b4f872026ce7b5d3986dbfef77d72d3f29050df2f8b3bdb\"}",
            "security.secret_key",
        ),
        (
            "security: {tokens: {session_expiration_time_minutes: 14}}",
            "security.tokens.session_expiration_time_minutes",
        ),
        (
            "security: {tokens: {rolling_session_before_expiration_minutes: 4}}",
            "security.tokens.rolling_session_before_expiration_minutes",
        ),
        (
            // 25 > 0.4 x 60
            "security: {tokens: {rolling_session_before_expiration_minutes: 25}}",
            "security.tokens.rolling_session_before_expiration_minutes",
        ),
        (
            "cleanup: {finished_job_retention_in_days: 0}",
            "cleanup.finished_job_retention_in_days",
        ),
        ("cleanup: {user_retention_in_days: 89}", "cleanup.user_retention_in_days"),
        (
            "terms_of_services: {0: {name: T, version: 0, tos_html: t}}",
            "terms_of_services.0.version",
        ),
        (
            "security: {local_account: {user_provisioning: {0: {email: admin@example.org, password: short}}}}",
            "security.local_account.user_provisioning.0.password",
        ),
        (
            "security: {local_account: {user_provisioning: {0: {email: admin, password: long-enough-pw}}}}",
            "security.local_account.user_provisioning.0.email",
        ),
        (
            "security: {local_account: {allowed_email_domains: [\"@example.org\"]}}",
            "security.local_account.allowed_email_domains[0]",
        ),
        (
            "smtp_server: {hostname: \"smtp example\", sender_email: a@example.org}",
            "smtp_server.hostname",
        ),
        (
            "smtp_server: {hostname: smtp.example.org, sender_email: nobody}",
            "smtp_server.sender_email",
        ),
        (
            "security: {oidc_providers: {Keycloak: {base_url: \"id.example.org\", client_id: a, client_secret: b}}}",
            "security.oidc_providers.Keycloak.base_url",
        ),
        (
            "security: {oidc_providers: {Keycloak: {base_url: \"https://id.example.org\", client_id: a, client_secret: b, icon_url: \"ftp://x/icon.svg\"}}}",
            "security.oidc_providers.Keycloak.icon_url",
        ),
        (
            "security: {ldap_providers: {LDAP: {server_address: \"https://ldap.example.org\", service_account_auth: {user: u, password: p}, username_attributes: [uid], uid_attribute: uid, mail_attribute: mail, user_query: {base_dn: b, filter: f}}}}",
            "security.ldap_providers.LDAP.server_address",
        ),
        (
            "security: {ldap_providers: {LDAP: {server_address: \"ldap://ldap.example.org\", service_account_auth: {user: u, password: p}, username_attributes: [uid], uid_attribute: uid, mail_attribute: mail}}}",
            "security.ldap_providers.LDAP",
        ),
        (
            "security: {ldap_providers: {LDAP: {server_address: \"ldaps://ldap.example.org\", start_tls: true, service_account_auth: {user: u, password: p}, username_attributes: [uid], uid_attribute: uid, mail_attribute: mail, admin_query: {base_dn: b, filter: f}, icon_url: nope}}}",
            "security.ldap_providers.LDAP.icon_url",
        ),
        ("database_url: mysql://x/y", "database_url"),
        ("postgres_connection_string: \"host=localhost\"", "database_url"),
        ("database: {max_connections: 0}", "database.max_connections"),
        ("imprint: {name: Me}", "imprint"),
        (
            "imprint: {name: Me, url: \"https://example.org/imprint\", additional_imprint_html: x}",
            "imprint",
        ),
        ("imprint: {name: Me, url: \"example.org\"}", "imprint.url"),
        (
            "imprint: {name: Me, email: me, additional_imprint_html: x}",
            "imprint.email",
        ),
    ];
    for (extra, key) in cases {
        assert_problem(&format!("{MINIMAL}{extra}\n"), key);
    }

    let web_cases: &[(&str, &str)] = &[
        (
            "{no_https: true, worker_count: 0}",
            "web_server.worker_count",
        ),
        (
            "{no_https: true, reverse_proxy: {trusted_proxies: [], root_path: scribe}}",
            "web_server.reverse_proxy.root_path",
        ),
        ("{no_https: false}", "web_server.ssl"),
    ];
    for (web_server, key) in web_cases {
        assert_problem(
            &format!("client_url: http://localhost:5000/#\nweb_server: {web_server}\n"),
            key,
        );
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let keys = problem_keys(&format!(
        "{MINIMAL}security: {{tokens: {{session_expiration_time_minutes: 10}}}}\ncleanup: {{user_retention_in_days: 1}}\n"
    ));
    assert!(keys.contains(&"security.tokens.session_expiration_time_minutes".to_owned()));
    assert!(keys.contains(&"cleanup.user_retention_in_days".to_owned()));
}

#[test]
fn provider_names_must_differ_beyond_case() {
    let provider = "{base_url: \"https://id.example.org\", client_id: a, client_secret: b}";
    assert_problem(
        &format!("{MINIMAL}security: {{oidc_providers: {{Keycloak: {provider}, keycloak: {provider}}}}}\n"),
        "security.oidc_providers.keycloak",
    );
}

#[test]
fn valid_edge_values_pass() {
    let config = config(
        &format!(
            "{MINIMAL}security: {{tokens: {{session_expiration_time_minutes: 15, rolling_session_before_expiration_minutes: 6}}}}\n\
             cleanup: {{finished_job_retention_in_days: 1, user_retention_in_days: 90}}\n"
        ),
        &[("SCRIBE_WEB_SERVER__PORT", "0"), ("SCRIBE_WEB_SERVER__ADDRESS", "10.0.0.5/24")],
    );
    assert_eq!(config.web_server.port, 0);
    assert_eq!(
        config.web_server.address,
        "10.0.0.5".parse::<IpAddr>().unwrap()
    );
}

// ---------------------------------------------------------- redaction

#[test]
fn secrets_never_show_in_debug_or_printed_config() {
    let path = repo_file("config/example.yaml");
    let loaded = load_with_env(Some(&path), example_env()).unwrap();
    let debug = format!("{:?}", loaded.config);
    let printed = loaded.config.to_redacted_yaml();
    for (name, secret) in example_env() {
        assert!(!debug.contains(&secret), "{name} leaks through Debug");
        assert!(
            !printed.contains(&secret),
            "{name} leaks through to_redacted_yaml"
        );
    }
    assert!(printed.contains("[redacted]"));
    // The printed config is still a readable YAML document of the settings.
    let reparsed: Value = serde_yaml::from_str(&printed).unwrap();
    assert_eq!(reparsed["web_server"]["port"], Value::from(5000));
    assert_eq!(reparsed["database_url"], Value::from("[redacted]"));
}

#[test]
fn errors_do_not_echo_secrets() {
    let message = error(
        &format!("{MINIMAL}security: {{secret_key: \"not-hex-but-secret-value\"}}\n"),
        &[],
    );
    assert!(!message.contains("not-hex-but-secret-value"), "{message}");
}
