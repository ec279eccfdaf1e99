//! Talking to a provider: its HTTP client (rustls; the system's CA store or the
//! provider's `ca_pem_file_path`; no redirects, bounded time), and its metadata
//! and signing keys from discovery, fetched on first use and kept per process.
//! A provider that is down when Scribe starts costs nothing but a failed login
//! until it is back; signing keys are fetched again when an ID token names a
//! key Scribe doesn't know (the provider rotated its keys).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthType, Client, ClientId, ClientSecret, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, JsonWebKeySet,
    StandardErrorResponse, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::config::{OidcClientAuthMethod, OidcProviderConfig};

/// Claims beyond the standard ones (role claims, a custom email claim), kept
/// as sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OtherClaims(pub serde_json::Map<String, serde_json::Value>);

impl AdditionalClaims for OtherClaims {}

pub type TokenFields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub type TokenResponse = StandardTokenResponse<TokenFields, CoreTokenType>;

pub type OidcClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Connecting and the whole of one request to a provider.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Metadata is fetched again after this long, so endpoint changes arrive.
const METADATA_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// An unknown signing key triggers a new fetch at most this often.
const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Largest metadata document accepted.
const MAX_METADATA_BYTES: usize = 1024 * 1024;

/// A discovered provider.
pub struct Provider {
    /// The configuration this was built from; a different one rebuilds it.
    config: OidcProviderConfig,
    /// The issuer as the metadata names it.
    pub issuer: String,
    pub client: OidcClient,
    pub http: reqwest::Client,
    fetched_at: Instant,
}

/// Discovered providers by lower-case name.
static PROVIDERS: LazyLock<Mutex<HashMap<String, Arc<Provider>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn cached(key: &str, config: &OidcProviderConfig) -> Option<Arc<Provider>> {
    let providers = PROVIDERS.lock().unwrap_or_else(|e| e.into_inner());
    providers
        .get(key)
        .filter(|p| p.config == *config && p.fetched_at.elapsed() < METADATA_MAX_AGE)
        .cloned()
}

fn remember(key: &str, provider: Arc<Provider>) {
    PROVIDERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.to_owned(), provider);
}

/// The provider `key` (its lower-case name), discovered now if not yet known.
/// The error is for the log and for the admin: it names what failed.
pub async fn get(key: &str, config: &OidcProviderConfig) -> Result<Arc<Provider>, String> {
    if let Some(provider) = cached(key, config) {
        return Ok(provider);
    }
    let provider = Arc::new(discover(config).await?);
    tracing::info!(provider = key, "fetched the OIDC provider's metadata");
    remember(key, provider.clone());
    Ok(provider)
}

/// Discovers `key` again (new signing keys), unless that happened moments ago;
/// `None` when nothing new was fetched.
pub async fn refetch(key: &str, stale: &Provider) -> Option<Arc<Provider>> {
    if stale.fetched_at.elapsed() < REFETCH_MIN_INTERVAL {
        return None;
    }
    match discover(&stale.config).await {
        Ok(provider) => {
            let provider = Arc::new(provider);
            remember(key, provider.clone());
            Some(provider)
        }
        Err(err) => {
            tracing::warn!(provider = key, error = %err, "could not refetch the OIDC provider's keys");
            None
        }
    }
}

fn http_client(config: &OidcProviderConfig) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        // Following redirects would let a provider's answer send Scribe anywhere.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("Scribe/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.ca_pem_file_path {
        let pem = std::fs::read(path)
            .map_err(|err| format!("could not read ca_pem_file_path {}: {err}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
            format!(
                "ca_pem_file_path {} holds no usable PEM certificate: {err}",
                path.display()
            )
        })?;
        if certificates.is_empty() {
            return Err(format!(
                "ca_pem_file_path {} holds no PEM certificate",
                path.display()
            ));
        }
        // Like Project-W: the file's CAs replace the system's for this provider.
        builder = builder.tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|err| format!("could not set up the HTTP client: {err}"))
}

/// Without the trailing slash some providers' issuers have.
fn trimmed(url: &str) -> &str {
    url.strip_suffix('/').unwrap_or(url)
}

async fn discover(config: &OidcProviderConfig) -> Result<Provider, String> {
    let http = http_client(config)?;
    let base = trimmed(&config.base_url);
    let metadata_url = format!("{base}/.well-known/openid-configuration");
    let response = http
        .get(&metadata_url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|err| format!("could not fetch {metadata_url}: {}", error_chain(&err)))?;
    if !response.status().is_success() {
        return Err(format!("{metadata_url} answered {}", response.status()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|err| format!("could not read {metadata_url}: {}", error_chain(&err)))?;
    if body.len() > MAX_METADATA_BYTES {
        return Err(format!("{metadata_url} sent more than 1 MiB"));
    }
    let metadata: CoreProviderMetadata = serde_json::from_slice(&body)
        .map_err(|err| format!("{metadata_url} is not OpenID provider metadata: {err}"))?;
    // OpenID Connect Discovery §4.3: the issuer must be the URL the metadata
    // was fetched for, or a provider could speak for another.
    if trimmed(metadata.issuer().as_str()) != base {
        return Err(format!(
            "the metadata at {metadata_url} names the issuer {}, which is not base_url {}",
            metadata.issuer().as_str(),
            config.base_url
        ));
    }
    let jwks = JsonWebKeySet::fetch_async(metadata.jwks_uri(), &http)
        .await
        .map_err(|err| {
            format!(
                "could not fetch the signing keys from {}: {}",
                metadata.jwks_uri().as_str(),
                error_chain(&err)
            )
        })?;
    let issuer = metadata.issuer().as_str().to_owned();
    let metadata = metadata.set_jwks(jwks);
    let client = OidcClient::from_provider_metadata(
        metadata,
        ClientId::new(config.client_id.clone()),
        Some(ClientSecret::new(config.client_secret.expose().clone())),
    )
    .set_auth_type(match config.client_auth_method {
        OidcClientAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
        OidcClientAuthMethod::ClientSecretPost => AuthType::RequestBody,
    });
    Ok(Provider {
        config: config.clone(),
        issuer,
        client,
        http,
        fetched_at: Instant::now(),
    })
}

/// An error with its causes, `a: b: c` (reqwest's own message leaves out why
/// a connection failed).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}
