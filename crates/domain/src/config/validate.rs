//! Rules a deserialized config must follow: Project-W's constraints (so a
//! config it rejects is rejected here too, with the key named) plus Scribe's
//! own. All problems are reported at once.

use std::collections::BTreeMap;

use regex::Regex;

use super::error::Problem;
use super::types::{Config, LdapProviderConfig, OidcProviderConfig};
use crate::email_address::EmailAddress;

/// Project-W's pattern for `client_url` (setting_models.py, `Settings`).
const CLIENT_URL_PATTERN: &str = r"^(http|https):\/\/(([a-zA-Z0-9\-]+\.)+[a-zA-Z0-9\-]+|localhost)(:[0-9]+)?((\/[a-zA-Z0-9\-]+)+)?(\/#)?$";
/// Project-W's pattern for `smtp_server.hostname`.
const SMTP_HOSTNAME_PATTERN: &str = r"^[a-zA-Z0-9\-]+(\.[a-zA-Z0-9\-]+)*$";
/// Project-W's pattern for `allowed_email_domains` items.
const EMAIL_DOMAIN_PATTERN: &str = r"^([a-zA-Z0-9\-]+\.)+[a-zA-Z0-9\-]+$";

const MIN_SESSION_MINUTES: u32 = 15;
const MIN_ROLLING_MINUTES: u32 = 5;
const MIN_USER_RETENTION_DAYS: u32 = 90;
const MIN_PROVISIONED_PASSWORD_CHARS: usize = 12;

fn matches(pattern: &str, text: &str) -> bool {
    // The patterns are constants covered by tests; a failure to compile would
    // show up there, not at an admin's site.
    Regex::new(pattern).is_ok_and(|regex| regex.is_match(text))
}

/// One `@`, something before it, and a domain with a dot (or `localhost`).
/// Deliverability is the mail server's business.
pub(crate) fn is_plausible_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let domain_ok = domain.eq_ignore_ascii_case("localhost")
        || (domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains(".."));
    !local.is_empty()
        && !domain.contains('@')
        && !text.chars().any(char::is_whitespace)
        && domain_ok
}

fn is_http_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some_and(|host| !host.is_empty())
    })
}

fn is_ldap_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|url| matches!(url.scheme(), "ldap" | "ldaps" | "ldapi"))
}

fn is_database_url(text: &str) -> bool {
    let lower = text.trim().to_ascii_lowercase();
    ["sqlite:", "postgres:", "postgresql:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
}

/// Collects problems, each under its dotted key.
#[derive(Default)]
struct Report(Vec<Problem>);

impl Report {
    fn check(&mut self, ok: bool, key: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.0.push(Problem::new(key, message));
        }
    }
}

pub(crate) fn validate(config: &Config) -> Vec<Problem> {
    let mut report = Report::default();
    let r = &mut report;

    r.check(
        matches(CLIENT_URL_PATTERN, &config.client_url),
        "client_url",
        format!(
            "expected the frontend's URL: http:// or https://, a host name, an optional port and \
             path, and /# at the end for hash routing (e.g. https://scribe.example.org/#); got `{}`",
            config.client_url
        ),
    );

    validate_web_server(config, r);

    if let Some(url) = &config.database_url {
        r.check(
            is_database_url(url.expose()),
            "database_url",
            "expected a URL starting with sqlite:, postgres: or postgresql: (this key is also \
             written postgres_connection_string)",
        );
    }
    r.check(
        config.database.max_connections >= 1,
        "database.max_connections",
        "expected at least 1",
    );

    validate_security(config, r);

    r.check(
        config.limits.max_upload_bytes >= 1,
        "limits.max_upload_bytes",
        "expected at least 1 (byte)",
    );
    r.check(
        config.runners.heartbeat_timeout_seconds >= 1,
        "runners.heartbeat_timeout_seconds",
        "expected at least 1 (second)",
    );
    if let Some(directory) = &config.storage.directory {
        r.check(
            !directory.as_os_str().is_empty(),
            "storage.directory",
            "expected a directory path, or no value for <data_dir>/blobs",
        );
    }

    if let Some(smtp) = &config.smtp_server {
        r.check(
            matches(SMTP_HOSTNAME_PATTERN, &smtp.hostname),
            "smtp_server.hostname",
            format!(
                "expected a host name such as smtp.example.org; got `{}`",
                smtp.hostname
            ),
        );
        r.check(
            is_plausible_email(&smtp.sender_email),
            "smtp_server.sender_email",
            format!("expected an email address; got `{}`", smtp.sender_email),
        );
    }

    if let Some(imprint) = &config.imprint {
        if let Some(email) = &imprint.email {
            r.check(
                is_plausible_email(email),
                "imprint.email",
                format!("expected an email address; got `{email}`"),
            );
        }
        if let Some(url) = &imprint.url {
            r.check(
                is_http_url(url),
                "imprint.url",
                format!("expected an http(s) URL; got `{url}`"),
            );
        }
        // Project-W's rule: the frontend either links to or shows the imprint.
        r.check(
            imprint.url.is_some() != imprint.additional_imprint_html.is_some(),
            "imprint",
            "set exactly one of url (a link to an imprint elsewhere) and \
             additional_imprint_html (the imprint's content)",
        );
    }

    for (id, tos) in &config.terms_of_services {
        r.check(
            tos.version >= 1,
            format!("terms_of_services.{id}.version"),
            "expected a version of at least 1",
        );
    }

    if let Some(days) = config.cleanup.finished_job_retention_in_days {
        r.check(
            days >= 1,
            "cleanup.finished_job_retention_in_days",
            "expected at least 1 day, or no value to keep finished jobs",
        );
    }
    if let Some(days) = config.cleanup.user_retention_in_days {
        r.check(
            days >= MIN_USER_RETENTION_DAYS,
            "cleanup.user_retention_in_days",
            format!(
                "expected at least {MIN_USER_RETENTION_DAYS} days, or no value to keep inactive users"
            ),
        );
    }

    report.0
}

fn validate_web_server(config: &Config, r: &mut Report) {
    let web = &config.web_server;
    r.check(
        web.worker_count >= 1,
        "web_server.worker_count",
        "expected at least 1",
    );
    r.check(
        web.max_request_body_bytes >= 1,
        "web_server.max_request_body_bytes",
        "expected at least 1",
    );
    if let Some(root_path) = web
        .reverse_proxy
        .as_ref()
        .and_then(|p| p.root_path.as_ref())
    {
        r.check(
            root_path.starts_with('/'),
            "web_server.reverse_proxy.root_path",
            format!("expected a path starting with / (e.g. /scribe); got `{root_path}`"),
        );
    }
    // As Project-W: without TLS, passwords and tokens travel in the clear, so
    // that has to be asked for explicitly.
    r.check(
        web.ssl.is_some() || web.no_https,
        "web_server.ssl",
        "TLS settings (cert_file, key_file) are required unless web_server.no_https is true; \
         set no_https: true when a reverse proxy terminates TLS or for development",
    );
}

fn validate_security(config: &Config, r: &mut Report) {
    let security = &config.security;
    if let Some(key) = &security.secret_key {
        let key = key.expose().trim();
        r.check(
            key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()),
            "security.secret_key",
            "expected 64 hexadecimal characters (256 bits), e.g. from `openssl rand -hex 32`",
        );
    }

    let local = &security.local_account;
    for (index, domain) in local.allowed_email_domains.iter().enumerate() {
        r.check(
            matches(EMAIL_DOMAIN_PATTERN, domain),
            format!("security.local_account.allowed_email_domains[{index}]"),
            format!("expected a domain such as example.org; got `{domain}`"),
        );
    }
    let mut emails: BTreeMap<String, u32> = BTreeMap::new();
    for (id, user) in &local.user_provisioning {
        let key = format!("security.local_account.user_provisioning.{id}");
        if let Err(err) = EmailAddress::parse(&user.email) {
            r.check(
                false,
                format!("{key}.email"),
                format!("expected an email address; got `{}`: {err}", user.email),
            );
        }
        r.check(
            user.password.expose().chars().count() >= MIN_PROVISIONED_PASSWORD_CHARS,
            format!("{key}.password"),
            format!("expected at least {MIN_PROVISIONED_PASSWORD_CHARS} characters"),
        );
        if let Some(first) = emails.insert(user.email.to_lowercase(), *id) {
            r.check(
                false,
                format!("{key}.email"),
                format!("the same address as user_provisioning.{first}; each provisioned user needs its own"),
            );
        }
    }

    if let Err(err) = EmailAddress::parse(&local.initial_admin_email) {
        r.check(
            false,
            "security.local_account.initial_admin_email",
            format!(
                "expected an email address; got `{}`: {err}",
                local.initial_admin_email
            ),
        );
    }

    let throttling = &security.login_throttling;
    for (name, value) in [
        (
            "max_failures_per_account",
            throttling.max_failures_per_account,
        ),
        ("account_window_minutes", throttling.account_window_minutes),
        (
            "max_failures_per_address",
            throttling.max_failures_per_address,
        ),
        ("address_window_minutes", throttling.address_window_minutes),
    ] {
        r.check(
            value >= 1,
            format!("security.login_throttling.{name}"),
            "expected at least 1",
        );
    }

    let tokens = &security.tokens;
    let session = tokens.session_expiration_time_minutes;
    let rolling = tokens.rolling_session_before_expiration_minutes;
    r.check(
        session >= MIN_SESSION_MINUTES,
        "security.tokens.session_expiration_time_minutes",
        format!("expected at least {MIN_SESSION_MINUTES} minutes; got {session}"),
    );
    r.check(
        rolling >= MIN_ROLLING_MINUTES,
        "security.tokens.rolling_session_before_expiration_minutes",
        format!("expected at least {MIN_ROLLING_MINUTES} minutes; got {rolling}"),
    );
    // rolling <= 0.4 x session, in integers.
    r.check(
        u64::from(rolling) * 10 <= u64::from(session) * 4,
        "security.tokens.rolling_session_before_expiration_minutes",
        format!(
            "expected at most 0.4 x session_expiration_time_minutes ({session}); got {rolling}"
        ),
    );

    for (name, provider) in &security.oidc_providers {
        validate_oidc(&format!("security.oidc_providers.{name}"), provider, r);
    }
    for (name, provider) in &security.ldap_providers {
        validate_ldap(&format!("security.ldap_providers.{name}"), provider, r);
    }
    // Login routes match provider names case-insensitively (SPEC §3.10).
    for (section, names) in [
        (
            "oidc_providers",
            security.oidc_providers.keys().collect::<Vec<_>>(),
        ),
        (
            "ldap_providers",
            security.ldap_providers.keys().collect::<Vec<_>>(),
        ),
    ] {
        let mut seen: BTreeMap<String, &String> = BTreeMap::new();
        for name in names {
            r.check(
                !name.trim().is_empty(),
                format!("security.{section}"),
                "a provider needs a non-empty name",
            );
            if let Some(other) = seen.insert(name.to_lowercase(), name) {
                r.check(
                    false,
                    format!("security.{section}.{name}"),
                    format!(
                        "provider names are matched ignoring case, so this clashes with `{other}`"
                    ),
                );
            }
        }
    }
}

fn validate_icon_url(key: &str, icon_url: Option<&String>, r: &mut Report) {
    if let Some(url) = icon_url {
        r.check(
            is_http_url(url),
            format!("{key}.icon_url"),
            format!("expected an http(s) URL; got `{url}`"),
        );
    }
}

fn validate_oidc(key: &str, provider: &OidcProviderConfig, r: &mut Report) {
    r.check(
        is_http_url(&provider.base_url),
        format!("{key}.base_url"),
        format!(
            "expected the provider's http(s) issuer URL (e.g. https://id.example.org/realms/main); got `{}`",
            provider.base_url
        ),
    );
    r.check(
        !provider.client_id.is_empty(),
        format!("{key}.client_id"),
        "expected the client id registered at the provider",
    );
    validate_icon_url(key, provider.icon_url.as_ref(), r);
}

fn validate_ldap(key: &str, provider: &LdapProviderConfig, r: &mut Report) {
    r.check(
        is_ldap_url(&provider.server_address),
        format!("{key}.server_address"),
        format!(
            "expected a URL starting with ldap://, ldaps:// or ldapi://; got `{}`",
            provider.server_address
        ),
    );
    r.check(
        !provider.start_tls
            || provider
                .server_address
                .to_ascii_lowercase()
                .starts_with("ldap://"),
        format!("{key}.start_tls"),
        "StartTLS upgrades an ldap:// connection; ldaps:// is already encrypted",
    );
    r.check(
        provider.user_query.is_some() || provider.admin_query.is_some(),
        key,
        "set user_query, admin_query or both; without either nobody can log in here",
    );
    r.check(
        !provider.username_attributes.is_empty(),
        format!("{key}.username_attributes"),
        "expected at least one attribute to match the login name against (e.g. uid, mail)",
    );
    validate_icon_url(key, provider.icon_url.as_ref(), r);
}

/// Things that work but deserve the admin's attention.
pub(crate) fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.redis_connection.is_some() {
        warnings.push("redis_connection is ignored: Scribe needs no Redis".to_owned());
    }
    if config.logging.console.custom_python_format() {
        warnings.push(
            "logging.console.fmt and datefmt are accepted for compatibility with Project-W but \
             ignored: Scribe writes its own log format"
                .to_owned(),
        );
    }
    if config.logging.file.custom_python_format() {
        warnings.push(
            "logging.file.fmt and datefmt are accepted for compatibility with Project-W but \
             ignored: Scribe writes its own log format"
                .to_owned(),
        );
    }
    if let Some(smtp) = &config.smtp_server {
        if smtp.username.is_some() != smtp.password.is_some() {
            warnings.push(
                "smtp_server: only one of username and password is set, so Scribe sends mail \
                 without logging in"
                    .to_owned(),
            );
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile() {
        for pattern in [
            CLIENT_URL_PATTERN,
            SMTP_HOSTNAME_PATTERN,
            EMAIL_DOMAIN_PATTERN,
        ] {
            assert!(Regex::new(pattern).is_ok(), "{pattern}");
        }
    }

    #[test]
    fn client_url_follows_project_w() {
        for ok in [
            "https://example.com/#",
            "https://sub.example.org/apps/project-W/frontend/#",
            "http://localhost:5173/#",
            "http://192.168.1.100:5173/#",
            "https://scribe.example.org",
        ] {
            assert!(matches(CLIENT_URL_PATTERN, ok), "{ok}");
        }
        for bad in [
            "ftp://example.com/#",
            "https://example.com/#/",
            "example.com",
            "https://exa mple.com",
            "https://example.com/",
        ] {
            assert!(!matches(CLIENT_URL_PATTERN, bad), "{bad}");
        }
    }

    #[test]
    fn emails_are_plausible_or_not() {
        for ok in [
            "a@example.org",
            "admin@localhost",
            "first.last+tag@sub.example.co.uk",
        ] {
            assert!(is_plausible_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@example.org",
            "a@b@example.org",
            "a@example",
            "a@.org",
            "a b@x.org",
            "a@x..org",
        ] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
    }

    #[test]
    fn urls_by_scheme() {
        assert!(is_http_url("https://id.example.org/realms/main"));
        assert!(!is_http_url("ldap://id.example.org"));
        assert!(!is_http_url("not a url"));
        assert!(is_ldap_url("ldapi://%2Frun%2Fslapd%2Fldapi"));
        assert!(is_ldap_url("ldaps://dc1.corp.example.com:636"));
        assert!(!is_ldap_url("https://dc1.corp.example.com"));
        assert!(is_database_url("postgresql://scribe@localhost/scribe"));
        assert!(is_database_url("sqlite://./data/scribe.db"));
        assert!(!is_database_url("mysql://x"));
    }
}
