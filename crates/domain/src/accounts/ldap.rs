//! LDAP logins (SPEC §3.4) and the directory's side of revalidation.
//!
//! A login binds as the service account, looks the user up by any of the
//! `username_attributes`, first under `admin_query` (a user found there is an
//! admin), then under `user_query`, and then binds as the entry found with the
//! password given. The login name goes into the filter escaped per RFC 4515,
//! so `*`, `(` or `)` in it are plain characters that can't widen the search;
//! an empty password is refused before anything is sent, since a simple bind
//! with one is an anonymous bind that "succeeds".
//!
//! Connections: searches run on connections bound as the service account,
//! kept per directory (a few idle ones are reused; at most [`MAX_OPEN`] are in
//! use at once). A password is checked on a fresh connection that is closed
//! right after, so no connection carries a user's identity back into the pool.
//! Every network step is bounded by the provider's `timeout_seconds`; after the
//! directory failed to answer, requests fail at once for [`OUTAGE_BACKOFF`]
//! instead of each waiting out the timeout again.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ldap3::{ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::revalidation::AccessCheck;
use super::{
    admin_privileges_for_scope, is_unique_violation, LoginAttempt, NewUser, UserType,
    UNKNOWN_DEVICE,
};
use crate::config::{LdapAuthMechanism, LdapProviderConfig, LdapQueryConfig};
use crate::email_address::EmailAddress;
use crate::entities::{tokens, users};
use crate::error::{DomainError, DomainResult};
use crate::tokens::IssuedToken;
use crate::{throttle, Domain};

/// Project-W's answer for a wrong password and for an unknown user alike.
const WRONG_CREDENTIALS: &str = "Incorrect username or password";
/// Idle service connections kept per directory.
const MAX_IDLE: usize = 4;
/// Connections in use at once per directory (searches and password checks);
/// more concurrent logins wait (up to the timeout) for one to come free.
pub const MAX_OPEN: usize = 16;
/// Idle connections older than this are closed rather than reused: servers and
/// firewalls drop quiet connections, often without telling.
const IDLE_LIFETIME: Duration = Duration::from_secs(60);
/// After the directory was unreachable, fail at once for this long.
pub const OUTAGE_BACKOFF: Duration = Duration::from_secs(5);
/// Longer login names can't be an uid or an address; refused unsent.
const MAX_LOGIN_NAME_CHARS: usize = 320;
/// More than one entry for a login name is an error; asking for two is enough
/// to tell.
const SIZE_LIMIT: i32 = 2;

fn unknown_provider(name: &str) -> DomainError {
    DomainError::Invalid(format!(
        "Could not query user, ldap server {name} not known"
    ))
}

fn wrong_credentials() -> DomainError {
    DomainError::Unauthenticated(WRONG_CREDENTIALS.to_owned())
}

/// Logs a user in with a directory and returns a new session token.
///
/// 400 for an unknown provider (names are case-sensitive) and for a scope the
/// user can't have, 429 when throttled, 401 "Incorrect username or password"
/// for an unknown user, a wrong or empty password and a name that matches
/// more than one entry, 503 when the directory can't be reached or refuses
/// the service account.
pub async fn login_ldap(
    d: &Domain,
    provider_name: &str,
    attempt: LoginAttempt<'_>,
) -> DomainResult<IssuedToken> {
    let provider = d
        .config
        .security
        .ldap_providers
        .get(provider_name)
        .ok_or_else(|| unknown_provider(provider_name))?;
    let account = throttle::account_key(&format!("ldap:{provider_name}"), attempt.username);
    throttle::check(d, &account, attempt.client_address).await?;

    let plausible = !attempt.password.is_empty()
        && !attempt.username.trim().is_empty()
        && attempt.username.chars().count() <= MAX_LOGIN_NAME_CHARS;
    let found = if plausible {
        let directory =
            directory(provider_name, provider).map_err(|f| f.log_and_answer(provider_name))?;
        let found = directory
            .find_by_login_name(provider, attempt.username)
            .await
            .map_err(|f| directory.fail(f))?;
        match found {
            Some(found) => directory
                .check_password(&found.dn, attempt.password)
                .await
                .map_err(|f| directory.fail(f))?
                .then_some(found),
            None => None,
        }
    } else {
        None
    };
    let Some(found) = found else {
        throttle::record_failure(d, &account, attempt.client_address).await?;
        return Err(wrong_credentials());
    };
    // A scope the user can't have is refused before anything is written.
    let admin_privileges = admin_privileges_for_scope(attempt.scope, found.is_admin)?;
    throttle::clear(d, &account, attempt.client_address).await?;

    let user_id = ensure_user(d, provider_name, &found).await?;
    let name = attempt.user_agent.unwrap_or(UNKNOWN_DEVICE);
    let token = crate::tokens::issue_session(d, user_id, name, admin_privileges).await?;
    tracing::info!(
        user_id,
        provider = provider_name,
        is_admin = found.is_admin,
        admin_privileges,
        "LDAP login"
    );
    Ok(token)
}

/// Asks the user's directory whether they may still log in, and as what.
/// Gone from both queries (or the provider gone from the config): revoked.
/// Directory unreachable or refusing the service account: unknown.
pub async fn check_access(d: &Domain, user: &users::Model) -> DomainResult<AccessCheck> {
    let Some(provider) = d.config.security.ldap_providers.get(&user.provider_name) else {
        tracing::warn!(
            user_id = user.id,
            provider = %user.provider_name,
            "LDAP provider no longer configured: the user's access is revoked"
        );
        return Ok(AccessCheck::Revoked);
    };
    let Some(uid) = user.external_id.as_deref() else {
        tracing::warn!(user_id = user.id, "LDAP user without a stored uid");
        return Ok(AccessCheck::Unknown);
    };
    let directory = match directory(&user.provider_name, provider) {
        Ok(directory) => directory,
        Err(failure) => {
            failure.log_and_answer(&user.provider_name);
            return Ok(AccessCheck::Unknown);
        }
    };
    let condition = format!("({}={})", provider.uid_attribute, uid_assertion(uid));
    match directory.find(provider, &condition).await {
        Ok(Some(found)) => Ok(AccessCheck::Granted {
            is_admin: found.is_admin,
        }),
        Ok(None) => Ok(AccessCheck::Revoked),
        Err(failure) => {
            directory.fail(failure);
            Ok(AccessCheck::Unknown)
        }
    }
}

/// Binds to every configured directory once as its service account and logs
/// the outcome, so a wrong address or password shows at start-up rather than
/// at the first login. Never fails.
pub async fn check_directories(d: &Domain) {
    for (name, provider) in &d.config.security.ldap_providers {
        let result = match directory(name, provider) {
            Ok(directory) => directory.warm_up().await.map_err(|f| directory.fail(f)),
            Err(failure) => Err(failure.log_and_answer(name)),
        };
        if result.is_ok() {
            tracing::info!(
                provider = %name,
                server = %provider.server_address,
                "LDAP directory reachable; service account bound"
            );
        }
    }
}

/// Creates the user on first login; later logins bring the address and the
/// admin flag in line with the directory. Returns the user's id.
async fn ensure_user(d: &Domain, provider_name: &str, found: &DirectoryUser) -> DomainResult<i64> {
    let email = EmailAddress::parse(&found.email).map_err(|err| {
        DomainError::internal(
            "ldap",
            format!(
                "directory {provider_name} has the invalid email address {:?} for {}: {err}",
                found.email, found.dn
            ),
        )
    })?;
    let email_taken = || {
        DomainError::Conflict(format!(
            "Another user of {provider_name} already has the email address {email}; ask the \
             administrator to fix the directory"
        ))
    };
    let by_uid = || {
        users::Entity::find()
            .filter(users::Column::UserType.eq(UserType::Ldap.as_str()))
            .filter(users::Column::ProviderName.eq(provider_name))
            .filter(users::Column::ExternalId.eq(found.uid.as_str()))
    };
    let mut existing = by_uid().one(&d.db).await?;
    if existing.is_none() {
        let inserted = NewUser::external(
            UserType::Ldap,
            provider_name,
            &found.uid,
            email.as_str(),
            found.is_admin,
        )
        .insert(&d.db)
        .await;
        match inserted {
            Ok(user) => {
                tracing::info!(
                    user_id = user.id,
                    provider = provider_name,
                    "LDAP user created"
                );
                return Ok(user.id);
            }
            // The same user logging in twice at once, or the address in use.
            Err(err) if is_unique_violation(&err) => {
                existing = by_uid().one(&d.db).await?;
                if existing.is_none() {
                    return Err(email_taken());
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    let Some(user) = existing else {
        return Err(email_taken());
    };
    if user.email == email.as_str() && user.is_admin == found.is_admin && user.is_verified {
        return Ok(user.id);
    }
    let txn = d.db.begin().await?;
    let updated = users::Entity::update_many()
        .col_expr(users::Column::Email, Expr::value(email.as_str()))
        .col_expr(users::Column::IsAdmin, Expr::value(found.is_admin))
        .col_expr(users::Column::IsVerified, Expr::value(true))
        .filter(users::Column::Id.eq(user.id))
        .exec(&txn)
        .await;
    match updated {
        Ok(_) => {}
        Err(err) if is_unique_violation(&err) => return Err(email_taken()),
        Err(err) => return Err(err.into()),
    }
    // Someone no longer admin in the directory loses admin sessions now,
    // not only at the next revalidation.
    if user.is_admin && !found.is_admin {
        tokens::Entity::update_many()
            .col_expr(tokens::Column::AdminPrivileges, Expr::value(false))
            .filter(tokens::Column::UserId.eq(user.id))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    crate::tokens::credentials_changed(d, user.id).await;
    tracing::info!(
        user_id = user.id,
        email_changed = user.email != email.as_str(),
        is_admin = found.is_admin,
        "LDAP user updated from the directory"
    );
    Ok(user.id)
}

/// The filter value for a stored uid. Binary uids (Active Directory's
/// `objectGUID`) are stored in their escaped form already, see [`uid_of`].
fn uid_assertion(uid: &str) -> std::borrow::Cow<'_, str> {
    if is_escaped_bytes(uid) {
        uid.into()
    } else {
        ldap_escape(uid)
    }
}

/// `\xx` repeated: the RFC 4515 form of arbitrary bytes.
fn is_escaped_bytes(text: &str) -> bool {
    !text.is_empty()
        && text.as_bytes().chunks(3).all(|chunk| {
            chunk.len() == 3
                && chunk[0] == b'\\'
                && chunk[1..]
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        })
}

fn escape_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// `filter` as the config writes it (Project-W's form, without the outer
/// parentheses), as a parenthesised filter; one written with them is kept.
fn parenthesised(filter: &str) -> String {
    let filter = filter.trim();
    if filter.starts_with('(') {
        filter.to_owned()
    } else {
        format!("({filter})")
    }
}

fn login_name_condition(attributes: &[String], login_name: &str) -> String {
    let value = ldap_escape(login_name);
    let alternatives: String = attributes
        .iter()
        .map(|attribute| format!("({attribute}={value})"))
        .collect();
    format!("(|{alternatives})")
}

/// A user entry as a login or revalidation needs it.
#[derive(Debug, Clone)]
struct DirectoryUser {
    dn: String,
    uid: String,
    email: String,
    is_admin: bool,
}

/// Why the directory couldn't be used; each is a 503 to the client.
#[derive(Debug)]
enum Failure {
    /// Connecting, TLS, I/O or a timeout: the directory is down or too slow.
    Unreachable(String),
    /// Every allowed connection is in use.
    Busy,
    /// The directory answers but the settings don't work with it (service
    /// bind refused, bad filter or base DN, unreadable CA file...).
    Misconfigured(String),
}

impl Failure {
    /// Logs the cause and returns the client's error.
    fn log_and_answer(self, provider: &str) -> DomainError {
        match self {
            Failure::Unreachable(cause) => {
                tracing::warn!(provider, %cause, "LDAP directory unreachable");
                DomainError::Unavailable(
                    "The login server can't be reached right now. Please try again later."
                        .to_owned(),
                )
            }
            Failure::Busy => {
                tracing::warn!(provider, "all LDAP connections are busy");
                DomainError::Unavailable(
                    "The login server is busy right now. Please try again later.".to_owned(),
                )
            }
            Failure::Misconfigured(cause) => {
                tracing::error!(provider, %cause, "LDAP provider misconfigured");
                DomainError::Unavailable(
                    "Logging in with this provider doesn't work right now: its settings need the \
                     administrator's attention."
                        .to_owned(),
                )
            }
        }
    }
}

/// A connection or operation error from ldap3: a broken filter in the config
/// is the config's fault; an LDAP result code is classified by the caller;
/// everything else is the connection's.
fn classify(err: LdapError, doing: &str) -> Failure {
    match err {
        LdapError::FilterParsing => {
            Failure::Misconfigured(format!("{doing}: a configured filter is not valid LDAP"))
        }
        LdapError::LdapResult { result } => {
            Failure::Misconfigured(format!("{doing}: the directory answered {result}"))
        }
        other => Failure::Unreachable(format!("{doing}: {other}")),
    }
}

/// One directory's connection settings and its pool.
struct Directory {
    name: String,
    url: String,
    settings: LdapConnSettings,
    timeout: Duration,
    bind_dn: String,
    bind_password: String,
    mechanism: LdapAuthMechanism,
    idle: Mutex<Vec<(Ldap, Instant)>>,
    open: Semaphore,
    unreachable_until: Mutex<Option<Instant>>,
}

/// Pools are kept for the life of the process, by everything that makes two
/// connections interchangeable: the same settings share one pool, a changed
/// setting (another config in the same process, as in tests) gets its own.
static DIRECTORIES: LazyLock<Mutex<HashMap<String, Arc<Directory>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent between statements.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn directory_key(provider: &LdapProviderConfig) -> String {
    let password = Sha256::digest(provider.service_account_auth.password.expose().as_bytes());
    format!(
        "{}\n{}\n{:?}\n{:?}\n{}\n{}\n{}",
        provider.server_address,
        provider.start_tls,
        provider.ca_pem_file_path,
        provider.service_account_auth.mechanism,
        provider.service_account_auth.user,
        hex::encode(password),
        provider.timeout_seconds,
    )
}

fn directory(name: &str, provider: &LdapProviderConfig) -> Result<Arc<Directory>, Failure> {
    let key = directory_key(provider);
    if let Some(existing) = lock(&DIRECTORIES).get(&key) {
        return Ok(existing.clone());
    }
    // Built outside the lock: reading the CA file or the system's trust store
    // takes a moment. Two builders racing both succeed; one pool wins.
    let built = Arc::new(Directory::new(name, provider)?);
    Ok(lock(&DIRECTORIES).entry(key).or_insert(built).clone())
}

fn tls_config(provider: &LdapProviderConfig) -> Result<Arc<rustls::ClientConfig>, Failure> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    match &provider.ca_pem_file_path {
        Some(path) => {
            let unreadable = |err: &dyn std::fmt::Display| {
                Failure::Misconfigured(format!("ca_pem_file_path {}: {err}", path.display()))
            };
            let certificates =
                CertificateDer::pem_file_iter(path).map_err(|err| unreadable(&err))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|err| unreadable(&err))?;
                roots.add(certificate).map_err(|err| unreadable(&err))?;
            }
            if roots.is_empty() {
                return Err(unreadable(&"no certificate in the file"));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(%error, "reading the system's trust store");
            }
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(Failure::Misconfigured(
                    "the system's trust store has no certificates; set ca_pem_file_path".to_owned(),
                ));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| Failure::Misconfigured(format!("TLS: {err}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Directory {
    fn new(name: &str, provider: &LdapProviderConfig) -> Result<Self, Failure> {
        let url = url::Url::parse(&provider.server_address).map_err(|err| {
            Failure::Misconfigured(format!("server_address {}: {err}", provider.server_address))
        })?;
        // ldap3 needs a host for TCP URLs (it panics without one).
        if url.scheme() != "ldapi" && url.host_str().is_none_or(str::is_empty) {
            return Err(Failure::Misconfigured(format!(
                "server_address {} names no host",
                provider.server_address
            )));
        }
        let timeout = Duration::from_secs(provider.timeout_seconds.max(1).into());
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(provider.start_tls);
        if provider.start_tls || url.scheme() == "ldaps" {
            settings = settings.set_config(tls_config(provider)?);
        }
        Ok(Directory {
            name: name.to_owned(),
            url: provider.server_address.clone(),
            settings,
            timeout,
            bind_dn: provider.service_account_auth.user.clone(),
            bind_password: provider.service_account_auth.password.expose().clone(),
            mechanism: provider.service_account_auth.mechanism,
            idle: Mutex::new(Vec::new()),
            open: Semaphore::new(MAX_OPEN),
            unreachable_until: Mutex::new(None),
        })
    }

    /// Logs `failure` (remembering an outage) and returns the client's error.
    fn fail(&self, failure: Failure) -> DomainError {
        if matches!(failure, Failure::Unreachable(_)) {
            *lock(&self.unreachable_until) = Some(Instant::now() + OUTAGE_BACKOFF);
        }
        failure.log_and_answer(&self.name)
    }

    /// A new, unbound connection.
    async fn connect(&self) -> Result<Ldap, Failure> {
        if lock(&self.unreachable_until).is_some_and(|until| Instant::now() < until) {
            return Err(Failure::Unreachable(
                "it was unreachable moments ago; not trying again yet".to_owned(),
            ));
        }
        let connecting = LdapConnAsync::with_settings(self.settings.clone(), &self.url);
        let (connection, ldap) = timeout(self.timeout, connecting)
            .await
            .map_err(|_| Failure::Unreachable(format!("connecting to {}: timed out", self.url)))?
            .map_err(|err| classify(err, &format!("connecting to {}", self.url)))?;
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.drive().await {
                tracing::debug!(provider = %name, error = %err, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// Binds `ldap` with a simple bind; `Ok(false)` when the directory refuses
    /// the credentials.
    async fn simple_bind(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        password: &str,
    ) -> Result<bool, Failure> {
        let result = timeout(self.timeout, ldap.simple_bind(dn, password))
            .await
            .map_err(|_| Failure::Unreachable("bind: timed out".to_owned()))?
            .map_err(|err| classify(err, "bind"))?;
        match result.rc {
            0 => Ok(true),
            rc => {
                tracing::debug!(provider = %self.name, rc, text = %result.text, "LDAP bind refused");
                Ok(false)
            }
        }
    }

    /// A new connection bound as the service account.
    async fn connect_service(&self) -> Result<Ldap, Failure> {
        if self.mechanism != LdapAuthMechanism::Simple {
            return Err(Failure::Misconfigured(format!(
                "service_account_auth.mechanism {:?} is not supported; use SIMPLE (over ldaps:// \
                 or with start_tls)",
                self.mechanism
            )));
        }
        let mut ldap = self.connect().await?;
        if self
            .simple_bind(&mut ldap, &self.bind_dn, &self.bind_password)
            .await?
        {
            Ok(ldap)
        } else {
            Err(Failure::Misconfigured(format!(
                "the directory refused the service account {}",
                self.bind_dn
            )))
        }
    }

    fn take_idle(&self) -> Option<Ldap> {
        let mut idle = lock(&self.idle);
        while let Some((mut ldap, since)) = idle.pop() {
            if since.elapsed() < IDLE_LIFETIME && !ldap.is_closed() {
                return Some(ldap);
            }
        }
        None
    }

    fn put_idle(&self, ldap: Ldap) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push((ldap, Instant::now()));
        }
    }

    /// Opens (or reuses) a service connection and puts it back: for the
    /// start-up check.
    async fn warm_up(&self) -> Result<(), Failure> {
        let _permit = self.permit().await?;
        let ldap = match self.take_idle() {
            Some(ldap) => ldap,
            None => self.connect_service().await?,
        };
        self.put_idle(ldap);
        Ok(())
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Failure> {
        match timeout(self.timeout, self.open.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Failure::Busy),
        }
    }

    /// Entries under `base_dn` matching `filter`, at most [`SIZE_LIMIT`].
    async fn search(
        &self,
        base_dn: &str,
        filter: &str,
        attributes: &[&str],
    ) -> Result<Vec<SearchEntry>, Failure> {
        let _permit = self.permit().await?;
        // An idle connection may have been closed by the server meanwhile: a
        // connection error on a reused one is retried once on a fresh one.
        let mut retry_allowed = true;
        loop {
            let (mut ldap, reused) = match self.take_idle() {
                Some(ldap) => (ldap, true),
                None => (self.connect_service().await?, false),
            };
            let options = ldap3::SearchOptions::new()
                .sizelimit(SIZE_LIMIT)
                .timelimit(i32::try_from(self.timeout.as_secs()).unwrap_or(i32::MAX));
            let searching = ldap.with_search_options(options).search(
                base_dn,
                Scope::Subtree,
                filter,
                attributes.to_vec(),
            );
            let result = match timeout(self.timeout, searching).await {
                Ok(Ok(result)) => result,
                Ok(Err(err)) => match classify(err, "search") {
                    Failure::Unreachable(_) if reused && retry_allowed => {
                        retry_allowed = false;
                        continue;
                    }
                    failure => return Err(failure),
                },
                Err(_) => return Err(Failure::Unreachable("search: timed out".to_owned())),
            };
            let ldap3::SearchResult(raw_entries, outcome) = result;
            // 4: sizeLimitExceeded, the entries so far came with it (ambiguous).
            if outcome.rc != 0 && outcome.rc != 4 {
                self.put_idle(ldap);
                return Err(Failure::Misconfigured(format!(
                    "search under {base_dn}: the directory answered {outcome}"
                )));
            }
            self.put_idle(ldap);
            let mut entries = Vec::with_capacity(raw_entries.len());
            for raw in raw_entries {
                // ldap3 panics on an entry it can't parse; that's the
                // directory's problem, not a reason to take the worker down.
                let entry = catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(raw)))
                    .map_err(|_| {
                        Failure::Misconfigured(format!(
                            "search under {base_dn}: the directory sent an unparsable entry"
                        ))
                    })?;
                entries.push(entry);
            }
            return Ok(entries);
        }
    }

    /// The one user under `query` matching `condition` (a parenthesised
    /// filter); `None` when there is none, several, or one without the uid
    /// or mail attribute.
    async fn find_in(
        &self,
        provider: &LdapProviderConfig,
        query: &LdapQueryConfig,
        condition: &str,
        is_admin: bool,
    ) -> Result<Option<DirectoryUser>, Failure> {
        let filter = format!("(&{}{condition})", parenthesised(&query.filter));
        let attributes = [
            provider.uid_attribute.as_str(),
            provider.mail_attribute.as_str(),
        ];
        let entries = self.search(&query.base_dn, &filter, &attributes).await?;
        match entries.as_slice() {
            [] => Ok(None),
            [entry] => {
                let uid = uid_of(entry, &provider.uid_attribute);
                let email = first_value(entry, &provider.mail_attribute);
                match (uid, email) {
                    (Some(uid), Some(email)) => Ok(Some(DirectoryUser {
                        dn: entry.dn.clone(),
                        uid,
                        email,
                        is_admin,
                    })),
                    _ => {
                        tracing::error!(
                            provider = %self.name,
                            dn = %entry.dn,
                            uid_attribute = %provider.uid_attribute,
                            mail_attribute = %provider.mail_attribute,
                            "LDAP entry lacks the uid or the mail attribute; it can't log in"
                        );
                        Ok(None)
                    }
                }
            }
            _ => {
                tracing::error!(
                    provider = %self.name,
                    base_dn = %query.base_dn,
                    "LDAP query matched more than one entry; none can log in with that name"
                );
                Ok(None)
            }
        }
    }

    /// Admins first: a user under `admin_query` is an admin even if
    /// `user_query` doesn't match them.
    async fn find(
        &self,
        provider: &LdapProviderConfig,
        condition: &str,
    ) -> Result<Option<DirectoryUser>, Failure> {
        if let Some(query) = &provider.admin_query {
            if let Some(found) = self.find_in(provider, query, condition, true).await? {
                return Ok(Some(found));
            }
        }
        if let Some(query) = &provider.user_query {
            return self.find_in(provider, query, condition, false).await;
        }
        Ok(None)
    }

    async fn find_by_login_name(
        &self,
        provider: &LdapProviderConfig,
        login_name: &str,
    ) -> Result<Option<DirectoryUser>, Failure> {
        let condition = login_name_condition(&provider.username_attributes, login_name);
        self.find(provider, &condition).await
    }

    /// Whether `password` is the entry's: a bind as `dn` on a connection of
    /// its own, closed right after.
    async fn check_password(&self, dn: &str, password: &str) -> Result<bool, Failure> {
        if dn.is_empty() || password.is_empty() {
            return Ok(false);
        }
        // Counts towards the open connections, so a burst of logins can't
        // open more than MAX_OPEN (plus the idle ones) to the directory.
        let _permit = self.permit().await?;
        let mut ldap = self.connect().await?;
        let matches = self.simple_bind(&mut ldap, dn, password).await?;
        // Politeness only: dropping the handle closes the connection anyway.
        let _ = timeout(self.timeout, ldap.unbind()).await;
        Ok(matches)
    }
}

/// The first value of `attribute` (names compare case-insensitively).
fn first_value(entry: &SearchEntry, attribute: &str) -> Option<String> {
    entry
        .attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .and_then(|(_, values)| values.first())
        .filter(|value| !value.is_empty())
        .cloned()
}

/// The uid as stored in `users.external_id`: text as it is; a binary value
/// (e.g. `objectGUID`: not UTF-8, or UTF-8 only by chance, with control
/// characters) in its RFC 4515 escaped form, which a filter takes unchanged.
fn uid_of(entry: &SearchEntry, attribute: &str) -> Option<String> {
    let text = first_value(entry, attribute).map(|value| {
        if value.chars().any(char::is_control) {
            escape_bytes(value.as_bytes())
        } else {
            value
        }
    });
    text.or_else(|| {
        entry
            .bin_attrs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
            .and_then(|(_, values)| values.first())
            .filter(|value| !value.is_empty())
            .map(|value| escape_bytes(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names_cannot_widen_the_filter() {
        let attributes = vec!["uid".to_owned(), "mail".to_owned()];
        assert_eq!(
            login_name_condition(&attributes, "*"),
            r"(|(uid=\2a)(mail=\2a))"
        );
        assert_eq!(
            login_name_condition(&attributes, "*)(uid=*"),
            r"(|(uid=\2a\29\28uid=\2a)(mail=\2a\29\28uid=\2a))"
        );
        assert_eq!(
            login_name_condition(&attributes[..1], r"admin)(|(uid=*"),
            r"(|(uid=admin\29\28|\28uid=\2a))"
        );
        assert_eq!(
            login_name_condition(&attributes[..1], "a\\b\0"),
            r"(|(uid=a\5cb\00))"
        );
    }

    #[test]
    fn filters_are_parenthesised_once() {
        assert_eq!(parenthesised("objectClass=person"), "(objectClass=person)");
        assert_eq!(parenthesised("&(a=1)(b=2)"), "(&(a=1)(b=2))");
        assert_eq!(parenthesised(" (&(a=1)(b=2)) "), "(&(a=1)(b=2))");
    }

    #[test]
    fn binary_uids_round_trip_through_their_escaped_form() {
        let escaped = escape_bytes(&[0x00, 0xff, 0x2a]);
        assert_eq!(escaped, r"\00\ff\2a");
        assert!(is_escaped_bytes(&escaped));
        assert_eq!(uid_assertion(&escaped), escaped);
        assert!(!is_escaped_bytes("alice"));
        assert!(!is_escaped_bytes(r"\0g"));
        assert!(!is_escaped_bytes(""));
        assert_eq!(uid_assertion("a*"), r"a\2a");
    }

    #[test]
    fn uids_are_text_unless_binary() {
        let entry = |attrs: Vec<(&str, &str)>, bin_attrs: Vec<(&str, Vec<u8>)>| SearchEntry {
            dn: "cn=x".to_owned(),
            attrs: attrs
                .into_iter()
                .map(|(name, value)| (name.to_owned(), vec![value.to_owned()]))
                .collect(),
            bin_attrs: bin_attrs
                .into_iter()
                .map(|(name, value)| (name.to_owned(), vec![value]))
                .collect(),
        };
        let text = entry(vec![("entryUUID", "5f1a-77")], vec![]);
        assert_eq!(uid_of(&text, "entryuuid").as_deref(), Some("5f1a-77"));
        let utf8_by_chance = entry(vec![("objectGUID", "a\u{1}b")], vec![]);
        assert_eq!(
            uid_of(&utf8_by_chance, "objectGUID").as_deref(),
            Some(r"\61\01\62")
        );
        let binary = entry(vec![], vec![("objectGUID", vec![0xff, 0x00])]);
        assert_eq!(uid_of(&binary, "objectGUID").as_deref(), Some(r"\ff\00"));
        assert_eq!(uid_of(&binary, "uid"), None);
        assert_eq!(first_value(&text, "mail"), None);
    }
}
