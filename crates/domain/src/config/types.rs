//! The configuration's shape. Keys, nesting and defaults follow Project-W
//! v0.6.0's settings model (backend/project_W/models/setting_models.py and
//! project_W_lib's logging settings), so its `config.yml` loads unchanged;
//! Scribe's own keys sit beside them. config/example.yaml documents each key
//! and a test keeps the two in step.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::de::{self, Unexpected};
use serde::{Deserialize, Deserializer, Serialize};

use super::secret::Secret;

/// Scribe's whole configuration. Unknown keys are errors at every level, as
/// in Project-W, so a typo can't silently fall back to a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// URL under which the web frontend is reached. Links in mails are built
    /// by appending to it (`{client_url}/local/activate?token=...`), so it
    /// includes the port unless it is 80/443, the path prefix if any, and ends
    /// in `/#` for a frontend with hash routing (Project-W's does).
    pub client_url: String,
    /// Where and how the HTTP server listens.
    #[serde(default)]
    pub web_server: WebServerConfig,
    /// Database to use: `sqlite://path/to/file.db` or
    /// `postgresql://user:password@host:5432/dbname`. Unset means a SQLite file
    /// `scribe.db` in `data_dir`. Project-W's `postgres_connection_string` is
    /// accepted as another name for this key.
    #[serde(default, alias = "postgres_connection_string")]
    pub database_url: Option<Secret<String>>,
    /// Connection pool and start-up behaviour of the database.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// Directory for Scribe's own files: the SQLite database (unless
    /// `database_url` says otherwise) and the generated secret key.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Directory of a built web frontend (e.g. Project-W's) to serve at `/`,
    /// with `index.html` for every path outside `/api`. Unset: no frontend.
    #[serde(default)]
    pub client_path: Option<PathBuf>,
    /// Where uploaded audio and transcripts are kept, always encrypted
    /// (Scribe's own section).
    #[serde(default)]
    pub storage: StorageConfig,
    /// Size limits (Scribe's own section).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// How runners are watched (Scribe's own section).
    #[serde(default)]
    pub runners: RunnersConfig,
    /// Project-W's Redis connection. Accepted so its config loads unchanged,
    /// and ignored: Scribe keeps its queue in the database.
    #[serde(default)]
    pub redis_connection: Option<RedisConnectionConfig>,
    /// Secret key, accounts and identity providers.
    #[serde(default)]
    pub security: SecurityConfig,
    /// Outgoing mail. Unset: mails are written to the log instead of sent.
    #[serde(default)]
    pub smtp_server: Option<SmtpConfig>,
    /// Who runs this instance, shown by the frontend.
    #[serde(default)]
    pub imprint: Option<ImprintConfig>,
    /// Terms every user has to accept before using the service, by id. Never
    /// change or reuse an id: acceptance is stored against it.
    #[serde(default)]
    pub terms_of_services: BTreeMap<u32, TosConfig>,
    /// Automatic deletion of old jobs and inactive users.
    #[serde(default)]
    pub cleanup: CleanupConfig,
    /// Log output on the console and, optionally, in a file.
    #[serde(default)]
    pub logging: LoggingConfig,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebServerConfig {
    /// IP address of the interface to listen on: `0.0.0.0` for all IPv4
    /// interfaces, `::` for all IPv6 ones, `127.0.0.1` for this machine only.
    /// Project-W's interface notation with a prefix (`10.0.0.5/24`) is
    /// accepted; the prefix is ignored.
    #[serde(deserialize_with = "deserialize_interface_address")]
    pub address: IpAddr,
    /// TCP port to listen on; 0 picks any free port (the server logs which).
    pub port: u16,
    /// Serve plain HTTP without `ssl`. Passwords and tokens then travel
    /// unencrypted, so only set this behind a TLS-terminating reverse proxy or
    /// for development. Also drops the `Secure` flag of the session cookie.
    pub no_https: bool,
    /// Number of worker threads serving requests; defaults to one per CPU core.
    pub worker_count: usize,
    /// Host names the server answers to (the `Host` header); `*` allows any,
    /// `*.example.org` any subdomain.
    pub allowed_hosts: Vec<String>,
    /// Set when Scribe runs behind a reverse proxy.
    pub reverse_proxy: Option<ReverseProxyConfig>,
    /// TLS certificate and key; required unless `no_https` is true.
    pub ssl: Option<SslConfig>,
    /// Largest JSON or form body accepted, in bytes; bigger requests get 413.
    /// Audio uploads are not bound by this.
    pub max_request_body_bytes: usize,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish
    /// before the server stops anyway, in seconds.
    pub shutdown_timeout_seconds: u64,
}

impl Default for WebServerConfig {
    fn default() -> Self {
        WebServerConfig {
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 5000,
            no_https: false,
            worker_count: std::thread::available_parallelism().map_or(2, |n| n.get()),
            allowed_hosts: vec!["*".to_owned()],
            reverse_proxy: None,
            ssl: None,
            max_request_body_bytes: 1024 * 1024,
            shutdown_timeout_seconds: 25,
        }
    }
}

/// Accepts an IP address, or Project-W's interface notation `address/prefix`.
fn deserialize_interface_address<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<IpAddr, D::Error> {
    const EXPECTED: &str = "an IP address such as 0.0.0.0, 127.0.0.1 or ::";
    let text = String::deserialize(deserializer)?;
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text.as_str(), None),
    };
    let invalid = || de::Error::invalid_value(Unexpected::Str(&text), &EXPECTED);
    let address: IpAddr = address.trim().parse().map_err(|_| invalid())?;
    if let Some(prefix) = prefix {
        let max = if address.is_ipv4() { 32 } else { 128 };
        match prefix.trim().parse::<u8>() {
            Ok(bits) if bits <= max => {}
            _ => return Err(invalid()),
        }
    }
    Ok(address)
}

/// Running behind a reverse proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseProxyConfig {
    /// Addresses or networks (`10.0.0.1`, `172.16.0.0/12`) of proxies whose
    /// `X-Forwarded-For` / `-Proto` / `-Host` headers are believed (client
    /// address, and the origin OIDC redirect URIs are built on).
    pub trusted_proxies: Vec<String>,
    /// Path prefix under which the proxy serves Scribe (e.g. `/scribe`);
    /// starts with `/`. Unset: served at the root.
    #[serde(default)]
    pub root_path: Option<String>,
}

/// TLS served by Scribe itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SslConfig {
    /// PEM file with the certificate (chain).
    pub cert_file: PathBuf,
    /// PEM file with the private key.
    pub key_file: PathBuf,
    /// Password of an encrypted private key. Also `key_file_password_file`.
    #[serde(default)]
    pub key_file_password: Option<Secret<String>>,
}

/// The database connection (Scribe's own section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Most connections kept open to the database.
    pub max_connections: u32,
    /// How long start-up keeps retrying an unreachable database, in seconds,
    /// before it gives up with an error.
    pub connect_timeout_seconds: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            max_connections: 10,
            connect_timeout_seconds: 30,
        }
    }
}

/// Blob storage: uploaded audio and transcripts. Whatever the backend, the
/// data is encrypted with a key derived from `security.secret_key`, and the
/// database keeps a catalogue of every blob.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `database`: in the database, in chunks; nothing else to set up or
    /// back up. `directory`: one file per blob in `directory`, which keeps
    /// the database small.
    pub backend: StorageBackend,
    /// Directory for `backend: directory`, created if missing. Unset:
    /// `<data_dir>/blobs`. Not used by the database backend.
    pub directory: Option<PathBuf>,
}

/// Where blob data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageBackend {
    #[default]
    Database,
    Directory,
}

/// Size limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest audio or video file a job may upload, in bytes (>= 1); a
    /// larger upload is refused with 413 and leaves nothing behind.
    pub max_upload_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_upload_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Runners (Scribe's own section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunnersConfig {
    /// Seconds without a heartbeat after which a runner is taken offline and
    /// its job goes back to the queue (>= 1; default 60). Runners beat every
    /// 10 s, so keep it well above that outside tests.
    pub heartbeat_timeout_seconds: u64,
}

impl Default for RunnersConfig {
    fn default() -> Self {
        RunnersConfig {
            heartbeat_timeout_seconds: 60,
        }
    }
}

impl RunnersConfig {
    /// [`Self::heartbeat_timeout_seconds`] as a duration.
    pub fn heartbeat_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.heartbeat_timeout_seconds)
    }
}

/// Project-W's Redis connection; read and ignored. Like Project-W, unknown
/// keys in it are ignored too.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RedisConnectionConfig {
    /// Redis URL (`redis://host:6379/db`). Ignored.
    #[serde(default)]
    pub connection_string: Option<Secret<String>>,
    /// Path of a Redis unix socket. Ignored.
    #[serde(default)]
    pub unix_socket_path: Option<PathBuf>,
}

/// Secret key, local accounts, sessions and identity providers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// 256-bit key as 64 hex characters (`openssl rand -hex 32`). It signs the
    /// links in mails and encrypts audio, transcripts and provider tokens at
    /// rest: keep it secret and back it up. Unset: Scribe generates one into
    /// `data_dir` and warns. Also `secret_key_file`.
    pub secret_key: Option<Secret<String>>,
    /// Accounts with email and password, managed by Scribe itself.
    pub local_account: LocalAccountConfig,
    /// Lifetime of login sessions.
    pub tokens: TokensConfig,
    /// Limits on failed logins (Scribe's own section; Project-W has none).
    pub login_throttling: LoginThrottlingConfig,
    /// OpenID Connect providers users can log in with, by the name shown on
    /// the login page ("Login with <name>"). The name is part of the redirect
    /// URI (`/api/oidc/auth/<name in lower case>`), so don't rename one.
    pub oidc_providers: BTreeMap<String, OidcProviderConfig>,
    /// LDAP directories users can log in with, by the name shown on the login
    /// page. The name identifies the directory's users, so don't rename one.
    pub ldap_providers: BTreeMap<String, LdapProviderConfig>,
}

/// Local accounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalAccountConfig {
    /// `enabled`: sign-up and login, both offered in the frontend.
    /// `no_signup`: login only (accounts come from provisioning or earlier
    /// sign-ups). `no_signup_hidden`: login only and not offered in the
    /// frontend, e.g. for provisioned admins. `disabled`: no local accounts at
    /// all, provisioned ones included; admins must come from OIDC or LDAP.
    pub mode: LocalAccountMode,
    /// If not empty, only addresses in these domains (the part after `@`,
    /// compared exactly) may sign up or be set as a new email address.
    pub allowed_email_domains: Vec<String>,
    /// Whether local users may create API tokens, which never expire (they
    /// end when the user is deleted).
    pub allow_creation_of_api_tokens: bool,
    /// Accounts created (verified) at start-up and brought back in line with
    /// this list (email, password, admin flag) at every start, by a number
    /// that identifies each. Removing an entry does not delete the account.
    pub user_provisioning: BTreeMap<u32, ProvisionedUser>,
    /// Address of the admin account Scribe creates at start-up when there is
    /// no admin at all and none is provisioned; its one-time password is
    /// written to the log once (Scribe's own key). Not used when `mode` is
    /// `disabled`.
    pub initial_admin_email: String,
}

impl Default for LocalAccountConfig {
    fn default() -> Self {
        LocalAccountConfig {
            mode: LocalAccountMode::Enabled,
            allowed_email_domains: Vec::new(),
            allow_creation_of_api_tokens: true,
            user_provisioning: BTreeMap::new(),
            initial_admin_email: "admin@localhost".to_owned(),
        }
    }
}

/// How far local accounts are enabled (Project-W's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalAccountMode {
    Disabled,
    NoSignupHidden,
    NoSignup,
    #[default]
    Enabled,
}

/// A local account kept in line with the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionedUser {
    /// The account's email address, treated as verified: make sure it works.
    pub email: String,
    /// Login password, at least 12 characters. Also `password_file`.
    pub password: Secret<String>,
    /// Whether the account has admin rights (full access to all users' data).
    /// Revoking this does not end the user's existing sessions.
    #[serde(default)]
    pub is_admin: bool,
}

/// Session tokens (API tokens don't expire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// How long a login session stays valid without use, in minutes (>= 15).
    pub session_expiration_time_minutes: u32,
    /// A session used within this many minutes of its expiry is renewed
    /// (>= 5 and at most 0.4 x the session lifetime).
    pub rolling_session_before_expiration_minutes: u32,
    /// Scribe: seconds an authenticated session may be answered from memory
    /// without a database round trip (0: never). Logouts, password changes
    /// and the like made through Scribe apply at once on every replica
    /// anyway; this bounds only changes made behind Scribe's back (the
    /// database edited by hand, a CLI command on SQLite).
    pub session_cache_seconds: u32,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            session_expiration_time_minutes: 60,
            rolling_session_before_expiration_minutes: 10,
            session_cache_seconds: 10,
        }
    }
}

/// Failed logins are counted in the database (so the limits hold across
/// restarts and replicas). An account is throttled per client address, so
/// someone guessing at an account from elsewhere never locks its owner out;
/// each address also has a limit over all accounts. Over a limit, logins get
/// 429 with `Retry-After` until the oldest counted failure ages out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginThrottlingConfig {
    /// Failed logins allowed for one account from one address within
    /// `account_window_minutes` (>= 1).
    pub max_failures_per_account: u32,
    /// The window for `max_failures_per_account`, in minutes (>= 1).
    pub account_window_minutes: u32,
    /// Failed logins allowed from one address, over all accounts, within
    /// `address_window_minutes` (>= 1).
    pub max_failures_per_address: u32,
    /// The window for `max_failures_per_address`, in minutes (>= 1).
    pub address_window_minutes: u32,
}

impl Default for LoginThrottlingConfig {
    fn default() -> Self {
        LoginThrottlingConfig {
            max_failures_per_account: 10,
            account_window_minutes: 15,
            max_failures_per_address: 100,
            address_window_minutes: 60,
        }
    }
}

/// An OpenID Connect provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Issuer URL; `<base_url>/.well-known/openid-configuration` must return
    /// the provider's metadata (Keycloak: `https://host/realms/<realm>`).
    pub base_url: String,
    /// Client id registered at the provider for Scribe.
    pub client_id: String,
    /// Client secret registered at the provider. Also `client_secret_file`.
    pub client_secret: Secret<String>,
    /// How the client authenticates at the token endpoint:
    /// `client_secret_basic` (Authorization header) or `client_secret_post`.
    #[serde(default)]
    pub client_auth_method: OidcClientAuthMethod,
    /// Scopes requested besides `openid`.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// Extra query parameters for the authorization request (Google needs
    /// `access_type: offline` and `prompt: consent` for refresh tokens).
    #[serde(default)]
    pub additional_authorize_params: BTreeMap<String, String>,
    /// Names of the claims holding the email address and its verified flag.
    #[serde(default)]
    pub claim_map: OidcClaimMap,
    /// Use PKCE with the S256 challenge (the provider must support it).
    #[serde(default = "default_true")]
    pub enable_pkce_s256_challenge: bool,
    /// Only users with this role may log in. Unset: every user of the provider.
    #[serde(default)]
    pub user_role: Option<OidcRoleConfig>,
    /// Users with this role are admins (and need no `user_role`). Unset: no
    /// admins from this provider.
    #[serde(default)]
    pub admin_role: Option<OidcRoleConfig>,
    /// PEM file of CA certificates to trust for this provider (self-signed
    /// setups). Unset: the system's trust store.
    #[serde(default)]
    pub ca_pem_file_path: Option<PathBuf>,
    /// Don't offer this provider on the login page (e.g. admins only).
    #[serde(default)]
    pub hidden: bool,
    /// http(s) URL of a square icon (PNG with transparency, or SVG) shown next
    /// to "Login with <name>".
    #[serde(default)]
    pub icon_url: Option<String>,
    /// Whether users of this provider may create API tokens; they are revoked
    /// when the user loses access at the provider.
    #[serde(default = "default_true")]
    pub allow_creation_of_api_tokens: bool,
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["email".to_owned()]
}

fn default_true() -> bool {
    true
}

/// Client authentication at the OIDC token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OidcClientAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// Claim names for the email address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcClaimMap {
    /// Claim with the user's email address.
    pub email: String,
    /// Claim that says the address is verified.
    pub email_verified: String,
}

impl Default for OidcClaimMap {
    fn default() -> Self {
        OidcClaimMap {
            email: "email".to_owned(),
            email_verified: "email_verified".to_owned(),
        }
    }
}

/// A role required in the ID token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcRoleConfig {
    /// Claim holding the user's roles or groups (e.g. `roles`, `groups`).
    pub field_name: String,
    /// The role or group the claim must contain.
    pub name: String,
}

/// An LDAP directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapProviderConfig {
    /// `ldap://host:389` (plain, or StartTLS with `start_tls`),
    /// `ldaps://host:636` (TLS) or `ldapi://%2Frun%2Fslapd%2Fldapi` (socket).
    pub server_address: String,
    /// Upgrade an `ldap://` connection with StartTLS (Scribe's own key).
    #[serde(default)]
    pub start_tls: bool,
    /// Service account used to search for users: it needs read access to the
    /// users and the attributes used below, not to their passwords.
    pub service_account_auth: LdapServiceAccountConfig,
    /// Attributes a user may log in with (e.g. `uid`, `mail`); a login matches
    /// any of them.
    pub username_attributes: Vec<String>,
    /// Attribute with a unique, never reassigned user id (`uid`, `entryUUID`,
    /// `objectGUID`).
    pub uid_attribute: String,
    /// Attribute with the user's email address.
    pub mail_attribute: String,
    /// Where ordinary users are found. Unset: nobody logs in as a user.
    #[serde(default)]
    pub user_query: Option<LdapQueryConfig>,
    /// Where admins are found (searched first). Unset: no admins from here.
    #[serde(default)]
    pub admin_query: Option<LdapQueryConfig>,
    /// PEM file of CA certificates to trust for this server. Unset: the
    /// system's trust store.
    #[serde(default)]
    pub ca_pem_file_path: Option<PathBuf>,
    /// Don't offer this directory on the login page.
    #[serde(default)]
    pub hidden: bool,
    /// http(s) URL of a square icon shown next to "Login with <name>".
    #[serde(default)]
    pub icon_url: Option<String>,
    /// Whether users of this directory may create API tokens; they are revoked
    /// when the user disappears from the directory.
    #[serde(default = "default_true")]
    pub allow_creation_of_api_tokens: bool,
    /// How long Scribe waits for the directory, to connect and for each
    /// answer, before a login fails with 503 (Scribe's own key).
    #[serde(default = "default_ldap_timeout_seconds")]
    pub timeout_seconds: u32,
}

fn default_ldap_timeout_seconds() -> u32 {
    10
}

/// The bind account for LDAP searches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapServiceAccountConfig {
    /// Bind mechanism: `SIMPLE`. Project-W's `DIGEST-MD5` and `NTLM` are
    /// accepted in the file, but Scribe can't bind with them (logins answer 503
    /// and the log says why).
    #[serde(default)]
    pub mechanism: LdapAuthMechanism,
    /// Bind DN (or user name, for NTLM) of the service account.
    pub user: String,
    /// Its password. Also `password_file`.
    pub password: Secret<String>,
}

/// LDAP bind mechanisms (Project-W's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LdapAuthMechanism {
    #[default]
    #[serde(rename = "SIMPLE")]
    Simple,
    #[serde(rename = "DIGEST-MD5")]
    DigestMd5,
    #[serde(rename = "NTLM")]
    Ntlm,
}

/// An LDAP search for users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapQueryConfig {
    /// DN under which to search.
    pub base_dn: String,
    /// Filter the users must match, written without its outer parentheses
    /// (`objectClass=inetOrgPerson`, `&(objectClass=person)(memberOf=...)`), as
    /// Project-W wraps it: `(&(<filter>)(|(<attr1>=<login>)(<attr2>=<login>)))`.
    pub filter: String,
}

/// The SMTP server mails are sent through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name of the SMTP server.
    pub hostname: String,
    /// Its port: usually 587 (STARTTLS), 465 (TLS) or 25.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls`, `ssl` (TLS from the first byte) or `plain` (unencrypted).
    #[serde(default)]
    pub secure: SmtpSecurity,
    /// Sender address of Scribe's mails.
    pub sender_email: String,
    /// Login name; with `password`, Scribe authenticates, else it doesn't.
    #[serde(default)]
    pub username: Option<String>,
    /// Login password. Also `password_file`.
    #[serde(default)]
    pub password: Option<Secret<String>>,
}

fn default_smtp_port() -> u16 {
    587
}

/// Transport security towards the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    Plain,
    #[default]
    Starttls,
    Ssl,
}

/// The imprint shown by the frontend. Give either `url` or
/// `additional_imprint_html`, not both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImprintConfig {
    /// Person or organisation running this instance.
    pub name: String,
    /// Contact address.
    #[serde(default)]
    pub email: Option<String>,
    /// Link to an imprint hosted elsewhere.
    #[serde(default)]
    pub url: Option<String>,
    /// Imprint content (HTML) shown by the frontend itself.
    #[serde(default)]
    pub additional_imprint_html: Option<String>,
}

/// One set of terms of service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TosConfig {
    /// Title shown above the terms.
    pub name: String,
    /// Version, starting at 1; raising it makes every user accept again.
    pub version: u32,
    /// The terms as HTML (may link elsewhere).
    pub tos_html: String,
}

/// Automatic cleanup (runs at most once a day).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleanupConfig {
    /// Delete finished (succeeded or failed) jobs, transcripts included, this
    /// many days after they finished (>= 1). Unset: keep them.
    pub finished_job_retention_in_days: Option<u32>,
    /// Delete users (and all their data) who haven't used Scribe for this many
    /// days (>= 90), after warning mails 30 and 7 days before. Unset: keep them.
    pub user_retention_in_days: Option<u32>,
}

/// Logging (Project-W's keys).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Log lines on standard error.
    pub console: ConsoleLoggingConfig,
    /// Log lines appended to a file.
    pub file: FileLoggingConfig,
}

const DEFAULT_LOG_FMT: &str = "%(name)s | [%(asctime)s %(levelname)s] %(message)s";
const DEFAULT_LOG_DATEFMT: &str = "%Y-%m-%d %H:%M:%S";

/// Console logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleLoggingConfig {
    /// Least severe messages logged: `DEBUG`, `INFO`, `WARNING`, `ERROR` or
    /// `CRITICAL`. `DEBUG` is verbose and may log personal data; use it only
    /// briefly.
    pub level: LogLevel,
    /// Project-W's Python log format; accepted for compatibility and ignored
    /// (Scribe writes its own format).
    pub fmt: String,
    /// Project-W's Python date format; accepted for compatibility and ignored.
    pub datefmt: String,
    /// One JSON object per line (for Loki, Elasticsearch...) instead of text.
    pub json_fmt: bool,
}

impl Default for ConsoleLoggingConfig {
    fn default() -> Self {
        ConsoleLoggingConfig {
            level: LogLevel::Info,
            fmt: DEFAULT_LOG_FMT.to_owned(),
            datefmt: DEFAULT_LOG_DATEFMT.to_owned(),
            json_fmt: false,
        }
    }
}

/// File logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileLoggingConfig {
    /// Least severe messages written to the file (as for the console).
    pub level: LogLevel,
    /// Accepted for compatibility with Project-W and ignored.
    pub fmt: String,
    /// Accepted for compatibility with Project-W and ignored.
    pub datefmt: String,
    /// One JSON object per line instead of text.
    pub json_fmt: bool,
    /// File to append to; created if missing (its directory must exist).
    /// Unset: no file logging.
    pub path: Option<PathBuf>,
}

impl Default for FileLoggingConfig {
    fn default() -> Self {
        FileLoggingConfig {
            level: LogLevel::Info,
            fmt: DEFAULT_LOG_FMT.to_owned(),
            datefmt: DEFAULT_LOG_DATEFMT.to_owned(),
            json_fmt: false,
            path: None,
        }
    }
}

impl ConsoleLoggingConfig {
    /// Whether `fmt` or `datefmt` were changed, which Scribe can't honour.
    pub(crate) fn custom_python_format(&self) -> bool {
        self.fmt != DEFAULT_LOG_FMT || self.datefmt != DEFAULT_LOG_DATEFMT
    }
}

impl FileLoggingConfig {
    /// Whether `fmt` or `datefmt` were changed, which Scribe can't honour.
    pub(crate) fn custom_python_format(&self) -> bool {
        self.fmt != DEFAULT_LOG_FMT || self.datefmt != DEFAULT_LOG_DATEFMT
    }
}

/// Log levels with Python's names, as Project-W writes them; any case is
/// accepted (`info`), and `WARN` for `WARNING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.trim().to_ascii_uppercase().as_str() {
            "DEBUG" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARNING" | "WARN" => Ok(LogLevel::Warning),
            "ERROR" => Ok(LogLevel::Error),
            "CRITICAL" => Ok(LogLevel::Critical),
            _ => Err(de::Error::invalid_value(
                Unexpected::Str(&text),
                &"one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
            )),
        }
    }
}

impl LogLevel {
    /// The tracing level that lets the same messages through; tracing has no
    /// level above ERROR, so CRITICAL maps to it.
    pub fn as_tracing_level(self) -> tracing::Level {
        match self {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warning => tracing::Level::WARN,
            LogLevel::Error | LogLevel::Critical => tracing::Level::ERROR,
        }
    }
}

impl Config {
    /// The database URL in effect: `database_url`, or the SQLite file
    /// `scribe.db` in `data_dir`.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().clone(),
            None => format!("sqlite://{}", self.data_dir.join("scribe.db").display()),
        }
    }

    /// The directory of the `directory` storage backend: `storage.directory`,
    /// or `blobs` in `data_dir`.
    pub fn blob_directory(&self) -> PathBuf {
        self.storage
            .directory
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    /// The effective configuration as YAML with every secret replaced by
    /// `[redacted]`; what `scribe check-config` prints.
    pub fn to_redacted_yaml(&self) -> String {
        serde_yaml::to_string(self)
            .unwrap_or_else(|err| format!("# the configuration could not be printed: {err}\n"))
    }
}
