//! The black-box harness: the real `scribe` binary, started on port 0 against a fresh SQLite
//! file or a fresh PostgreSQL database, driven over real HTTP.
//!
//! - [`TestDb`] makes the database ([`Backend::Sqlite`]: a file in a temp dir;
//!   [`Backend::Postgres`]: `scribe_test_<random>` on the server named by
//!   `SCRIBE_TEST_POSTGRES_URL`, dropped again by a guard; `SCRIBE_TEST_KEEP_DB=1` keeps it).
//! - [`TestSetup`] is one test's world before the server starts: temp dir, database and config.
//!   It can run CLI subcommands against that config ([`TestSetup::run`]) or start the server.
//! - [`TestApp`] is a started server: base URL, a cookie-keeping client, its logs.
//! - [`db_test!`] turns one test body into a SQLite and a PostgreSQL test.
//!
//! Readiness is the server's own `listening` log line, never a sleep.

// Panicking is how a harness reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod accounts;
mod assertions;
mod db;
pub mod ldap;
mod logs;
pub mod oidc;
mod process;
pub mod runners;
pub mod smtp;
pub mod whisper;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{json, Value};
use tempfile::TempDir;

pub use assertions::*;
pub use db::{postgres_admin_url, Backend, TestDb};
pub use logs::{LogLine, Logs};
pub use process::{
    run_scribe, run_scribe_in, scribe_bin, scribe_runner_bin, CliOutput, ServerProcess,
};
pub use reqwest;
pub use serde_json;
pub use tempfile;

/// How long a server may take from spawn to its `listening` line. Generous: on a loaded
/// 2-core CI machine a PostgreSQL start-up with migrations can be slow.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// SPEC/issue 3: graceful shutdown must finish within 30 s.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`TestApp::expect_log`] waits for a log line (e.g. a mail written to the log).
pub const LOG_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound for a CLI subcommand that is expected to finish on its own.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root (where `openapi/` and `config/` live).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// Turns one async test body into two `#[tokio::test]`s, `sqlite` and `postgres`, inside a
/// module named after the test (so `cargo nextest run about_` selects both).
///
/// ```text
/// db_test!(async fn about_works(app: TestApp) { app.get("/api/about").await; });
/// db_test!(async fn custom(backend: Backend) { let app = spawn_app_with(backend, json!({})).await; });
/// ```
/// The body sees everything the enclosing module imports.
#[macro_export]
macro_rules! db_test {
    ($(#[$attr:meta])* async fn $name:ident($app:ident : TestApp) $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                #[allow(unused_mut)]
                let mut $app = $crate::spawn_app($crate::Backend::Sqlite).await;
                $body
            }

            #[tokio::test]
            async fn postgres() {
                #[allow(unused_mut)]
                let mut $app = $crate::spawn_app($crate::Backend::Postgres).await;
                $body
            }
        }
    };
    ($(#[$attr:meta])* async fn $name:ident($backend:ident : Backend) $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let $backend = $crate::Backend::Sqlite;
                $body
            }

            #[tokio::test]
            async fn postgres() {
                let $backend = $crate::Backend::Postgres;
                $body
            }
        }
    };
}

/// Starts a server with the base config on a fresh database of `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    TestSetup::new(backend).await.spawn().await
}

/// Starts a server whose config is the base config with `overrides` deep-merged over it.
pub async fn spawn_app_with(backend: Backend, overrides: Value) -> TestApp {
    TestSetup::new(backend)
        .await
        .with_config(overrides)
        .spawn()
        .await
}

/// A fresh 32-byte key as the 64 hex characters `security.secret_key` expects.
pub fn random_secret_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// One test's world before (and while) a server runs on it.
pub struct TestSetup {
    pub backend: Backend,
    /// The config as JSON; written as YAML to [`TestSetup::config_path`] before each use.
    pub config: Value,
    /// When set, written verbatim instead of `config` (for YAML tags like `!ENV`).
    pub raw_config: Option<String>,
    /// Extra environment for every process started from this setup.
    pub env: Vec<(String, String)>,
    // Field order is drop order: the database goes before the directory holding it.
    pub db: TestDb,
    pub dir: TempDir,
}

impl TestSetup {
    /// A temp dir, a fresh database and the base config: that database, `data_dir` in the
    /// temp dir, 127.0.0.1 port 0 without TLS, a random secret key, JSON logs on stderr.
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("scribe-test-")
            .tempdir()
            .expect("create a temp dir");
        let db = TestDb::create(backend, dir.path()).await;
        let config = json!({
            "client_url": "http://localhost:5173/#",
            "database_url": db.url(),
            "data_dir": dir.path().join("data"),
            "web_server": { "address": "127.0.0.1", "port": 0, "no_https": true },
            "security": { "secret_key": random_secret_key() },
            "logging": { "console": { "level": "INFO", "json_fmt": true } },
            "database": { "connect_timeout_seconds": 30 },
        });
        Self {
            backend,
            config,
            raw_config: None,
            env: Vec::new(),
            db,
            dir,
        }
    }

    /// Deep-merges `overrides` into the config (objects merge key by key; anything else,
    /// `null` included, replaces).
    pub fn merge_config(&mut self, overrides: Value) -> &mut Self {
        merge_json(&mut self.config, overrides);
        self
    }

    /// Builder form of [`TestSetup::merge_config`].
    pub fn with_config(mut self, overrides: Value) -> Self {
        self.merge_config(overrides);
        self
    }

    /// Removes the key at a dotted path (`"security.secret_key"`) from the config.
    pub fn remove_config(&mut self, dotted: &str) -> &mut Self {
        let mut parts: Vec<&str> = dotted.split('.').collect();
        let last = parts.pop().expect("a non-empty path");
        let mut node = &mut self.config;
        for part in parts {
            match node.get_mut(part) {
                Some(next) => node = next,
                None => return self,
            }
        }
        if let Some(map) = node.as_object_mut() {
            map.remove(last);
        }
        self
    }

    /// Writes this YAML text as the config file instead of the JSON config.
    pub fn with_raw_config(mut self, yaml: impl Into<String>) -> Self {
        self.raw_config = Some(yaml.into());
        self
    }

    /// Adds an environment variable for every process started from this setup.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("scribe.yaml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes the config file and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let path = self.config_path();
        let text = match &self.raw_config {
            Some(raw) => raw.clone(),
            None => serde_yaml::to_string(&self.config).expect("config serialises as YAML"),
        };
        std::fs::write(&path, text).expect("write the config file");
        path
    }

    /// `scribe --config <this setup's config> <args...>`, run to completion in the temp dir.
    pub async fn run(&self, args: &[&str]) -> CliOutput {
        self.run_with_timeout(args, CLI_TIMEOUT).await
    }

    pub async fn run_with_timeout(&self, args: &[&str], timeout: Duration) -> CliOutput {
        let config = self.write_config();
        let mut full: Vec<String> = vec!["--config".into(), config.display().to_string()];
        full.extend(args.iter().map(|a| a.to_string()));
        process::run(&scribe_bin(), &full, &self.env, self.dir.path(), timeout).await
    }

    /// Starts `scribe --config <config> serve` and waits for its `listening` line.
    pub async fn spawn(self) -> TestApp {
        let server = self.start_server().await;
        TestApp::new(server, self)
    }

    async fn start_server(&self) -> ServerProcess {
        let config = self.write_config();
        let args = [
            "--config".to_string(),
            config.display().to_string(),
            "serve".into(),
        ];
        ServerProcess::start(&scribe_bin(), &args, &self.env, self.dir.path()).await
    }
}

/// A running server on its own database.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base_url: String,
    pub address: SocketAddr,
    /// Keeps cookies, follows redirects, ignores proxies, 30 s per request.
    pub client: Client,
    // Field order is drop order: the server dies before its database is dropped.
    pub server: ServerProcess,
    pub setup: TestSetup,
}

impl TestApp {
    fn new(server: ServerProcess, setup: TestSetup) -> Self {
        let address = server.address;
        Self {
            base_url: format!("http://{address}"),
            address,
            client: http_client(),
            server,
            setup,
        }
    }

    pub fn backend(&self) -> Backend {
        self.setup.backend
    }

    pub fn db(&self) -> &TestDb {
        &self.setup.db
    }

    /// The server's stderr, one entry per line.
    pub fn logs(&self) -> &Logs {
        &self.server.stderr
    }

    /// Waits (up to [`LOG_TIMEOUT`]) for a server log line matching `predicate`, old or new;
    /// fails the test with the whole log when none comes. `what` names it in the failure.
    pub async fn expect_log(&self, what: &str, predicate: impl Fn(&LogLine) -> bool) -> LogLine {
        self.logs().expect_line(what, LOG_TIMEOUT, predicate).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        send(self.request(Method::GET, path)).await
    }

    /// POST without a body.
    pub async fn post(&self, path: &str) -> Response {
        send(self.request(Method::POST, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Response {
        send(self.request(Method::POST, path).form(form)).await
    }

    /// POST raw bytes with a chosen Content-Type: for 413 (too large), 415 (wrong type) and
    /// 422 (malformed JSON) checks.
    pub async fn post_bytes(&self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        send(
            self.request(Method::POST, path)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Response {
        send(self.request(Method::DELETE, path)).await
    }

    /// Sends `request` (a whole HTTP/1.1 request, sent byte for byte: no URL normalising,
    /// so `..` and odd encodings arrive as written) and returns the raw response. Add
    /// `Connection: close` so the server ends the response by closing.
    pub async fn raw_http(&self, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.address)
            .await
            .expect("connect to the server");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
            .await
            .expect("the server answers and closes within 30 s")
            .expect("read the response");
        String::from_utf8_lossy(&response).into_owned()
    }

    /// GET that must answer 200 with exactly `application/json`; returns the body.
    pub async fn get_json(&self, path: &str) -> Value {
        json_body(self.get(path).await, 200).await
    }

    /// Sends SIGTERM and waits (up to [`SHUTDOWN_TIMEOUT`]) for the exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        self.server.signal(libc::SIGTERM);
        self.server.wait_exit(SHUTDOWN_TIMEOUT).await
    }

    /// Sends SIGINT (Ctrl-C) and waits (up to [`SHUTDOWN_TIMEOUT`]) for the exit.
    pub async fn interrupt(&mut self) -> std::process::ExitStatus {
        self.server.signal(libc::SIGINT);
        self.server.wait_exit(SHUTDOWN_TIMEOUT).await
    }

    /// Stops the server (SIGTERM, must exit 0) and hands back the setup, database intact.
    pub async fn stop(mut self) -> TestSetup {
        let status = self.terminate().await;
        assert!(
            status.success(),
            "scribe exited with {status} on SIGTERM; stderr:\n{}",
            self.logs().dump()
        );
        self.setup
    }

    /// Stops the server and starts a new one on the same database and config.
    pub async fn restart(self) -> TestApp {
        self.stop().await.spawn().await
    }
}

/// The client every test uses: cookie store on (the `token` cookie), no proxy from the
/// environment, a per-request timeout so a hang fails instead of blocking the suite.
pub fn http_client() -> Client {
    Client::builder()
        .cookie_store(true)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build the HTTP client")
}

async fn send(request: RequestBuilder) -> Response {
    let description = format!("{request:?}");
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("request failed: {e}\n{description}"))
}

/// Objects merge key by key; any other value (null included) replaces.
pub fn merge_json(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                match base.get_mut(&key) {
                    Some(slot) if slot.is_object() && value.is_object() => merge_json(slot, value),
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overrides) => *base = overrides,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_json_merges_objects_and_replaces_the_rest() {
        let mut base = json!({"a": {"b": 1, "c": [1]}, "d": 1});
        merge_json(&mut base, json!({"a": {"c": [2], "e": null}, "f": "x"}));
        assert_eq!(
            base,
            json!({"a": {"b": 1, "c": [2], "e": null}, "d": 1, "f": "x"})
        );
    }
}
