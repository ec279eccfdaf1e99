//! A real OpenID provider for black-box tests, and a browser to log in through it.
//!
//! [`OidcProvider`] runs `tests/oidc-provider/provider.js` (the certified `oidc-provider`
//! npm package) with Node on 127.0.0.1 and a free port: one provider per test, so its issuer
//! URL, users and clients are the test's own. Its fixed users (see provider.js):
//!
//! | user  | email              | email_verified | roles                        |
//! |-------|--------------------|----------------|------------------------------|
//! | alice | alice@example.org  | true           | "scribe-user"                |
//! | bob   | bob@example.org    | true           | ["staff", "scribe-admin"]    |
//! | carol | carol@example.org  | false          | "scribe-user"                |
//! | dave  | dave@example.org   | true           | ["staff", "visitor"]         |
//! | erin  | erin@example.org   | true           | (none)                       |
//!
//! each with the password `<user>-password`.
//!
//! Node and the npm packages must be there (`scripts/test` runs `npm ci`); when they aren't,
//! the test fails with a message saying what to do, it is never skipped.
//! `SCRIBE_TEST_NODE` names the node binary (default `node`), `SCRIBE_TEST_OIDC_PROVIDER_DIR`
//! the directory with provider.js and its node_modules (default `tests/oidc-provider`).
//!
//! [`Browser`] is a cookie-keeping client that follows redirects one at a time, so a test
//! can stop at Scribe's callback URL and tamper with it or replay it.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{header, Client, Response, StatusCode, Url};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::{merge_json, repo_root, spawn_app_with, Backend, TestApp};

/// The provider's name in Scribe's config (note the case: routes take any case,
/// `users/info` keeps this spelling).
pub const IDP: &str = "TestIdP";
pub const CLIENT_ID: &str = "scribe";
pub const CLIENT_SECRET: &str = "scribe-client-secret";
pub const USER_ROLE: &str = "scribe-user";
pub const ADMIN_ROLE: &str = "scribe-admin";
/// How long the provider may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 3;
/// Redirects a login may take, at most.
const MAX_REDIRECTS: usize = 20;

/// The password of a test user.
pub fn password(user: &str) -> String {
    format!("{user}-password")
}

fn node() -> String {
    std::env::var("SCRIBE_TEST_NODE").unwrap_or_else(|_| "node".to_owned())
}

fn provider_dir() -> PathBuf {
    std::env::var_os("SCRIBE_TEST_OIDC_PROVIDER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests").join("oidc-provider"))
}

/// A running provider; stopped when dropped.
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`: Scribe's `base_url`.
    pub issuer: String,
    options: Value,
    child: Child,
    // Kept open: the provider exits when it closes.
    _stdin: ChildStdin,
    stderr: Arc<Mutex<String>>,
    http: Client,
}

impl OidcProvider {
    /// A provider with the default options (ID tokens carry only `sub`; the claims come
    /// from the userinfo endpoint).
    pub async fn start() -> Self {
        Self::start_with(json!({})).await
    }

    /// `options`: `conformIdTokenClaims` (false puts the claims into the ID token too, as
    /// Keycloak does), `port` (0 = any free one).
    pub async fn start_with(options: Value) -> Self {
        let dir = provider_dir();
        let script = dir.join("provider.js");
        assert!(
            dir.join("node_modules").join("oidc-provider").is_dir(),
            "The OpenID provider for the OIDC tests is not installed: {} has no \
             node_modules/oidc-provider. Run `npm ci` in that directory (scripts/test does this), \
             or set SCRIBE_TEST_OIDC_PROVIDER_DIR.",
            dir.display()
        );
        // A start that hangs (seen once in CI under heavy load: no output, no exit) is
        // retried with a fresh process; a provider that fails to start keeps failing.
        let mut failures = Vec::new();
        let (child, stdin, stderr, mut lines, line) = loop {
            let (mut child, stdin, stdout, stderr) = spawn_provider(&script, &dir, &options);
            let mut lines = BufReader::new(stdout).lines();
            match tokio::time::timeout(START_TIMEOUT, lines.next_line()).await {
                Ok(Ok(Some(line))) => break (child, stdin, stderr, lines, line),
                other => {
                    let exited = child.try_wait();
                    let _ = child.kill().await;
                    failures.push(format!(
                        "attempt {}: {other:?}, process status {exited:?}; stderr:\n{}",
                        failures.len() + 1,
                        stderr.lock().unwrap()
                    ));
                    assert!(
                        failures.len() < START_ATTEMPTS,
                        "the OpenID provider did not start:\n{}",
                        failures.join("\n")
                    );
                }
            }
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the provider's first line is not JSON ({e}): {line}"));
        let issuer = ready["issuer"]
            .as_str()
            .unwrap_or_else(|| panic!("no issuer in the provider's first line: {line}"))
            .to_owned();
        // Drain stdout so the provider never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            issuer,
            options,
            child,
            _stdin: stdin,
            stderr,
            http: Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client"),
        }
    }

    /// The port the provider listens on.
    pub fn port(&self) -> u16 {
        Url::parse(&self.issuer)
            .expect("the issuer is a URL")
            .port()
            .expect("the issuer has a port")
    }

    /// What the provider wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stops the provider (it can't be reached any more).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts a provider like this one on the same port after [`OidcProvider::stop`]:
    /// same issuer, new signing key, fresh state (users back to the fixed set).
    pub async fn restart_on(port: u16, options: &Value) -> Self {
        let mut options = options.clone();
        merge_json(&mut options, json!({"port": port}));
        Self::start_with(options).await
    }

    /// The options this provider was started with.
    pub fn options(&self) -> &Value {
        &self.options
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.issuer))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the provider's control API: {e}"));
        assert!(
            response.status().is_success(),
            "the provider's control API answered {} to {path}; stderr:\n{}",
            response.status(),
            self.stderr()
        );
    }

    /// Registers (or replaces) a confidential client allowed the code and refresh grants.
    pub async fn register_client(
        &self,
        client_id: &str,
        client_secret: &str,
        auth_method: &str,
        redirect_uris: &[String],
    ) {
        self.control(
            reqwest::Method::POST,
            "/__test/clients",
            json!({
                "client_id": client_id,
                "client_secret": client_secret,
                "token_endpoint_auth_method": auth_method,
                "redirect_uris": redirect_uris,
            }),
        )
        .await;
    }

    /// Creates or replaces a user's claims (the password stays, or is `<id>-password`).
    pub async fn set_claims(&self, user: &str, claims: Value) {
        self.control(
            reqwest::Method::POST,
            &format!("/__test/accounts/{user}"),
            json!({ "claims": claims }),
        )
        .await;
    }

    /// Every token request so far: `{client_id, method, grant_type}`, `method` being how
    /// the client authenticated (`client_secret_basic`, `client_secret_post` or `none`).
    pub async fn token_requests(&self) -> Vec<Value> {
        let response = self
            .http
            .get(format!("{}/__test/token-requests", self.issuer))
            .send()
            .await
            .unwrap_or_else(|e| panic!("the provider's control API: {e}"));
        response
            .json::<Vec<Value>>()
            .await
            .expect("a JSON list of token requests")
    }

    /// Removes a user: the provider then refuses their refresh tokens.
    pub async fn delete_account(&self, user: &str) {
        self.control(
            reqwest::Method::DELETE,
            &format!("/__test/accounts/{user}"),
            json!({}),
        )
        .await;
    }
}

/// The provider entry of Scribe's config for `provider`: client [`CLIENT_ID`] with
/// `client_secret_basic`, scopes `email` and `roles`, PKCE, user role [`USER_ROLE`] and
/// admin role [`ADMIN_ROLE`] in the `roles` claim; `overrides` merged over it.
pub fn provider_config(provider: &OidcProvider, overrides: Value) -> Value {
    let mut config = json!({
        "base_url": provider.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "client_auth_method": "client_secret_basic",
        "scopes": ["email", "roles"],
        "enable_pkce_s256_challenge": true,
        "user_role": {"field_name": "roles", "name": USER_ROLE},
        "admin_role": {"field_name": "roles", "name": ADMIN_ROLE},
    });
    merge_json(&mut config, overrides);
    config
}

/// Scribe's redirect URI for provider `name` on `app`.
pub fn redirect_uri(app: &TestApp, name: &str) -> String {
    app.url(&format!("/api/oidc/auth/{}", name.to_lowercase()))
}

/// A provider (started with `provider_options`) and a server with it configured as [`IDP`]
/// (`overrides` merged over [`provider_config`]); the client is registered at the provider
/// with the auth method the config names and Scribe's redirect URI.
pub async fn app_with_provider(
    backend: Backend,
    provider_options: Value,
    overrides: Value,
) -> (TestApp, OidcProvider) {
    let provider = OidcProvider::start_with(provider_options).await;
    let entry = provider_config(&provider, overrides);
    let app = spawn_app_with(
        backend,
        json!({"security": {"oidc_providers": {IDP: entry.clone()}}}),
    )
    .await;
    provider
        .register_client(
            entry["client_id"].as_str().unwrap(),
            entry["client_secret"].as_str().unwrap(),
            entry["client_auth_method"].as_str().unwrap(),
            &[redirect_uri(&app, IDP)],
        )
        .await;
    (app, provider)
}

/// Where a walk through redirects ended.
pub enum Stop {
    /// A response that isn't a redirect, from this URL.
    Page(Url, Response),
    /// The next redirect goes to this URL, which starts with the prefix asked for; it
    /// wasn't visited.
    At(String),
}

/// A browser: keeps cookies (for Scribe and the provider alike, both on 127.0.0.1),
/// follows redirects one at a time.
pub struct Browser {
    pub client: Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            client: Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .user_agent("oidc-blackbox-browser")
                .build()
                .expect("an HTTP client"),
        }
    }

    pub async fn get(&self, url: &str) -> Response {
        self.client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// Follows redirects from `response` until a page, or until a redirect whose target
    /// starts with `stop_at`.
    pub async fn follow(&self, mut response: Response, stop_at: &str) -> Stop {
        for _ in 0..MAX_REDIRECTS {
            if !response.status().is_redirection() {
                let url = response.url().clone();
                return Stop::Page(url, response);
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("a redirect without Location from {}", response.url()));
            let next = response
                .url()
                .join(location)
                .unwrap_or_else(|e| panic!("bad Location {location}: {e}"))
                .to_string();
            if next.starts_with(stop_at) {
                return Stop::At(next);
            }
            response = self.get(&next).await;
        }
        panic!("more than {MAX_REDIRECTS} redirects");
    }

    /// Starts a login at Scribe (`/api/oidc/login/<idp>`), signs in on the provider's
    /// login form as `user` with `password`, and returns the URL the provider sends the
    /// browser back to: Scribe's callback with `code` and `state`, not yet visited.
    pub async fn sign_in(&self, app: &TestApp, idp: &str, user: &str, password: &str) -> String {
        let start = self.get(&app.url(&format!("/api/oidc/login/{idp}"))).await;
        assert_eq!(
            start.status(),
            StatusCode::FOUND,
            "oidc/login must redirect to the provider"
        );
        self.sign_in_from(start, app, user, password).await
    }

    /// [`Browser::sign_in`] from Scribe's answer to `oidc/login`.
    pub async fn sign_in_from(
        &self,
        start: Response,
        app: &TestApp,
        user: &str,
        password: &str,
    ) -> String {
        let callback = app.url("/api/oidc/auth/");
        let (page_url, page) = match self.follow(start, &callback).await {
            Stop::Page(url, page) => (url, page),
            Stop::At(url) => panic!("the provider skipped its login form and went to {url}"),
        };
        let html = page.text().await.expect("the login page");
        let action = form_action(&html)
            .unwrap_or_else(|| panic!("no form on the provider's page {page_url}:\n{html}"));
        let submit = page_url.join(&action).expect("the form's action URL");
        let response = self
            .client
            .post(submit.clone())
            .form(&[("login", user), ("password", password)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {submit}: {e}"));
        match self.follow(response, &callback).await {
            Stop::At(url) => url,
            Stop::Page(url, page) => {
                let status = page.status();
                let body = page.text().await.unwrap_or_default();
                panic!("after the login form the provider showed {url} ({status}):\n{body}")
            }
        }
    }

    /// Signs in at the provider and then visits Scribe's callback: the callback's answer.
    pub async fn log_in(&self, app: &TestApp, user: &str) -> Response {
        let callback = self.sign_in(app, IDP, user, &password(user)).await;
        self.get(&callback).await
    }
}

/// The `action` of the first `<form>` in `html`, HTML entities for `&` undone.
fn form_action(html: &str) -> Option<String> {
    let form = html.find("<form")?;
    let rest = &html[form..];
    let start = rest.find("action=\"")? + "action=\"".len();
    let end = rest[start..].find('"')?;
    Some(rest[start..start + end].replace("&amp;", "&"))
}

/// The value of a response's `Set-Cookie` for `name` (`None` if it sets none), with its
/// attributes.
pub fn set_cookie(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `url` with query parameter `name` set to `value`.
pub fn with_query_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = Url::parse(url).expect("a URL");
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            if k == name {
                (k.into_owned(), value.to_owned())
            } else {
                (k.into_owned(), v.into_owned())
            }
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

/// Starts `node provider.js <options>`, collecting its stderr in the background.
fn spawn_provider(
    script: &std::path::Path,
    dir: &std::path::Path,
    options: &Value,
) -> (
    Child,
    ChildStdin,
    tokio::process::ChildStdout,
    Arc<Mutex<String>>,
) {
    let mut child = Command::new(node())
        .arg(script)
        .arg(options.to_string())
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "could not start the OpenID provider with `{} {}`: {e}. The OIDC tests need \
                 Node.js 20 or later (set SCRIBE_TEST_NODE to its path).",
                node(),
                script.display()
            )
        });
    let stdin = child.stdin.take().expect("the provider's stdin");
    let stdout = child.stdout.take().expect("the provider's stdout");
    let mut stderr_pipe = child.stderr.take().expect("the provider's stderr");
    let stderr = Arc::new(Mutex::new(String::new()));
    let collected = stderr.clone();
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stderr_pipe.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            collected
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    (child, stdin, stdout, stderr)
}
