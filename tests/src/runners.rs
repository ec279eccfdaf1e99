//! Runners and jobs for black-box tests: runner tokens, real `scribe-runner` daemons in
//! dummy mode (JSON logs the tests can read), jobs submitted and followed over HTTP, and
//! stored ciphertext altered in place (database rows or blob files) to check that the
//! server refuses it.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use reqwest::{Method, Response};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::accounts::bearer;
use crate::process::die_with_parent;
use crate::{json_body, scribe_runner_bin, Backend, LogLine, Logs, TestApp, TestDb};

pub const ADMIN: &str = "root@example.org";
pub const ADMIN_PASSWORD: &str = "Provisioned-Pass-1";
pub const USER: &str = "user@example.org";
pub const USER_PASSWORD: &str = "Provisioned-Pass-2";
pub const OTHER: &str = "other@example.org";
pub const OTHER_PASSWORD: &str = "Provisioned-Pass-3";

/// How long a daemon may take to register, and a job to reach a wanted step, on a
/// loaded 2-core machine.
pub const RUNNER_WAIT: Duration = Duration::from_secs(30);

/// Provisioned (so verified) admin, user and other user: no mail flow needed.
pub fn provisioning() -> Value {
    json!({"security": {"local_account": {"user_provisioning": {
        "0": {"email": ADMIN, "password": ADMIN_PASSWORD, "is_admin": true},
        "1": {"email": USER, "password": USER_PASSWORD, "is_admin": false},
        "2": {"email": OTHER, "password": OTHER_PASSWORD, "is_admin": false}
    }}}})
}

/// A port on 127.0.0.1 that was free a moment ago, for a server that must come back on
/// the same address after a restart (runners keep their backend URL).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

/// `POST /api/admins/create_runner` → (id, token).
pub async fn create_runner(app: &TestApp, admin_session: &str) -> (i64, String) {
    let response = bearer(
        app,
        Method::POST,
        "/api/admins/create_runner",
        admin_session,
    )
    .send()
    .await
    .expect("create_runner reaches the server");
    let body = json_body(response, 200).await;
    (
        body["id"].as_i64().expect("a runner id"),
        body["token"].as_str().expect("a runner token").to_owned(),
    )
}

/// How a dummy daemon is configured.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub name: String,
    pub priority: i64,
    pub heartbeat_secs: f64,
    pub dummy_secs: f64,
}

impl DaemonConfig {
    /// Beats every 0.2 s, priority 1, `dummy_secs` per job.
    pub fn dummy(name: &str, dummy_secs: f64) -> Self {
        Self {
            name: name.to_owned(),
            priority: 1,
            heartbeat_secs: 0.2,
            dummy_secs,
        }
    }

    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = priority;
        self
    }
}

/// A running `scribe-runner` in dummy mode with JSON logs, killed when dropped (and by
/// the kernel when the test process dies).
pub struct RunnerDaemon {
    pub name: String,
    pub logs: Logs,
    child: Child,
    _dir: TempDir,
}

impl RunnerDaemon {
    /// `scribe-runner --log-format json --config <tmp>/runner.yaml run`, the token in a file.
    pub fn start(backend_url: &str, token: &str, config: &DaemonConfig) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("scribe-runner-test-")
            .tempdir()
            .expect("a temp dir for the runner");
        let yaml = format!(
            "backend_url: {backend_url}\nname: {}\npriority: {}\nmode: dummy\n\
             heartbeat_interval_secs: {}\ndummy:\n  duration_secs: {}\n",
            config.name, config.priority, config.heartbeat_secs, config.dummy_secs
        );
        let (child, logs) = spawn_runner(dir.path(), token, &yaml, &["--log-format", "json"]);
        Self {
            name: config.name.clone(),
            logs,
            child,
            _dir: dir,
        }
    }

    /// Waits for the daemon's `registered` line written after log line `from`
    /// (see [`Logs::mark`]).
    pub async fn registered_since(&self, from: usize) -> LogLine {
        self.expect_log_from(from, "registered", |line| {
            line.message() == Some("registered")
        })
        .await
    }

    /// Waits for its first `registered` line.
    pub async fn registered(&self) -> LogLine {
        self.registered_since(0).await
    }

    /// Waits up to [`RUNNER_WAIT`] for a log line at index `from` or later.
    pub async fn expect_log_from(
        &self,
        from: usize,
        what: &str,
        predicate: impl Fn(&LogLine) -> bool,
    ) -> LogLine {
        match self.logs.wait_for_from(from, RUNNER_WAIT, predicate).await {
            Ok(line) => line,
            Err(e) => panic!(
                "runner {}: no log line {what} ({e}); its log:\n{}",
                self.name,
                self.logs.dump()
            ),
        }
    }

    /// The `job_id` of every log line whose message is `message` (e.g. `job retrieved`,
    /// `result submitted`), in order.
    pub fn job_ids_logged(&self, message: &str) -> Vec<i64> {
        self.logs
            .lines()
            .iter()
            .filter(|line| line.message() == Some(message))
            .filter_map(|line| line.field("job_id").and_then(Value::as_i64))
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the runner is still running")
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, SIGKILL, SIGTERM ...).
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: i32) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) takes plain integers; the pid is our own, not yet reaped child.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// `kill -9` and reap.
    pub async fn kill(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.wait_exit().await
    }

    /// SIGTERM and the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit().await
    }

    async fn wait_exit(&mut self) -> ExitStatus {
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(status) => status.expect("wait for scribe-runner"),
            Err(_) => panic!(
                "scribe-runner {} did not exit; its log:\n{}",
                self.name,
                self.logs.dump()
            ),
        }
    }
}

/// Writes the token to a file and `token_file: <it>` plus `yaml` to `runner.yaml` in
/// `dir`, then starts `scribe-runner <args> --config runner.yaml run` there: without the
/// test's own SCRIBE_* variables, killed when dropped and when the test process dies.
fn spawn_runner(dir: &Path, token: &str, yaml: &str, args: &[&str]) -> (Child, Logs) {
    let token_file = dir.join("runner-token");
    std::fs::write(&token_file, format!("{token}\n")).expect("write the token file");
    let config = dir.join("runner.yaml");
    std::fs::write(
        &config,
        format!("token_file: {}\n{yaml}", token_file.display()),
    )
    .expect("write the runner config");
    let mut command = Command::new(scribe_runner_bin());
    command
        .args(args)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SCRIBE_") {
            command.env_remove(&key);
        }
    }
    die_with_parent(&mut command);
    let mut child = command.spawn().expect("spawn scribe-runner");
    let logs = Logs::collect(child.stderr.take().expect("piped stderr"));
    (child, logs)
}

/// A running `scribe-runner` with any configuration (text logs), killed when dropped.
pub struct RunnerProcess {
    pub child: Child,
    pub stderr: Logs,
}

impl RunnerProcess {
    /// `scribe-runner --config <dir>/runner.yaml run` with `yaml` after the `token_file` line.
    pub fn start(dir: &Path, token: &str, yaml: &str) -> Self {
        let (child, stderr) = spawn_runner(dir, token, yaml, &[]);
        Self { child, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the runner is still running")
    }

    /// SIGTERM, then the exit status (fails after 20 s).
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(status) => status.expect("wait for scribe-runner"),
            Err(_) => panic!(
                "scribe-runner ignored SIGTERM; stderr:\n{}",
                self.stderr.dump()
            ),
        }
    }
}

/// Audio bytes that differ per `seed`, so each job's dummy transcript is its own.
pub fn audio(seed: u32, len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(7919)) % 251) as u8)
        .collect()
}

/// The multipart upload of `audio` as `audio/mpeg`; the response as it comes.
pub async fn upload(app: &TestApp, user: &str, file_name: &str, audio: Vec<u8>) -> Response {
    let part = Part::bytes(audio)
        .file_name(file_name.to_owned())
        .mime_str("audio/mpeg")
        .expect("a valid MIME type");
    bearer(app, Method::POST, "/api/jobs/submit_job", user)
        .multipart(Form::new().part("audio_file", part))
        .send()
        .await
        .expect("submit_job reaches the server")
}

/// Submits `audio` (as `talk.mp3`, `audio/mpeg`) and returns the job id.
pub async fn submit_job(app: &TestApp, user: &str, audio: Vec<u8>) -> i64 {
    json_body(upload(app, user, "talk.mp3", audio).await, 200)
        .await
        .as_i64()
        .expect("a job id")
}

/// JobInfo of the user's jobs among `ids` (the user's only).
pub async fn jobs_info(app: &TestApp, user: &str, ids: &[i64]) -> Vec<Value> {
    let query: Vec<String> = ids.iter().map(|id| format!("job_ids={id}")).collect();
    let path = format!("/api/jobs/info?{}", query.join("&"));
    let response = bearer(app, Method::GET, &path, user)
        .send()
        .await
        .expect("info reaches the server");
    match json_body(response, 200).await {
        Value::Array(jobs) => jobs,
        other => panic!("info is not a list: {other}"),
    }
}

/// JobInfo of one of the user's jobs (panics if the user can't see it).
pub async fn job_info(app: &TestApp, user: &str, id: i64) -> Value {
    jobs_info(app, user, &[id])
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("job {id} is not visible to its owner"))
}

/// Polls JobInfo every 50 ms until `done` holds; `context` (runner logs...) is shown
/// when `timeout` passes first.
pub async fn wait_for_job(
    app: &TestApp,
    user: &str,
    id: i64,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
    context: impl Fn() -> String,
) -> Value {
    let started = Instant::now();
    loop {
        let job = job_info(app, user, id).await;
        if done(&job) {
            return job;
        }
        assert!(
            started.elapsed() < timeout,
            "job {id} did not get there within {timeout:?}: {job}\n{}\n--- server ---\n{}",
            context(),
            app.logs().dump()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `download_transcript` as it comes.
pub async fn download(app: &TestApp, user: &str, id: i64, kind: &str) -> Response {
    let path = format!("/api/jobs/download_transcript?job_id={id}&transcript_type={kind}");
    bearer(app, Method::GET, &path, user)
        .send()
        .await
        .expect("download_transcript reaches the server")
}

/// The dummy's line for `audio` (crates/runner/src/processor.rs `dummy_line`: size, type
/// and an FNV-1a 64 checksum, so it proves the audio arrived intact).
pub fn dummy_line(audio: &[u8], content_type: &str) -> String {
    let checksum = audio.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "Dummy transcript of {} bytes of {content_type} (fnv1a64 {checksum:016x}).",
        audio.len()
    )
}

/// A text column of one row (`SELECT audio_blob_id FROM jobs WHERE id = 1`); `None` for
/// no row or NULL.
pub async fn scalar_text(db: &TestDb, sql: &str) -> Option<String> {
    match db.backend() {
        Backend::Sqlite => {
            let mut conn = SqliteConnection::connect(db.url())
                .await
                .expect("open SQLite");
            let value = sqlx::query_scalar::<_, Option<String>>(sql)
                .fetch_optional(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = conn.close().await;
            value.flatten()
        }
        Backend::Postgres => {
            let mut conn = PgConnection::connect(db.url())
                .await
                .expect("connect to PostgreSQL");
            let value = sqlx::query_scalar::<_, Option<String>>(sql)
                .fetch_optional(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = conn.close().await;
            value.flatten()
        }
    }
}

/// Rewrites the sealed chunks of blob `blob_id` in `blob_chunks` (database storage):
/// `tamper` gets them in index order and may change, drop or reorder them; they are
/// stored back under indexes 0, 1, ... in one transaction.
pub async fn tamper_blob_rows(db: &TestDb, blob_id: &str, tamper: impl FnOnce(&mut Vec<Vec<u8>>)) {
    const SELECT: &str = "SELECT data FROM blob_chunks WHERE blob_id = $1 ORDER BY chunk_index";
    const DELETE: &str = "DELETE FROM blob_chunks WHERE blob_id = $1";
    const INSERT: &str = "INSERT INTO blob_chunks (blob_id, chunk_index, data) VALUES ($1, $2, $3)";
    match db.backend() {
        Backend::Sqlite => {
            let mut conn = SqliteConnection::connect(db.url())
                .await
                .expect("open SQLite");
            let mut chunks: Vec<Vec<u8>> = sqlx::query_scalar(SELECT)
                .bind(blob_id)
                .fetch_all(&mut conn)
                .await
                .expect("read the chunks");
            assert!(!chunks.is_empty(), "blob {blob_id} has no chunk rows");
            tamper(&mut chunks);
            let mut txn = conn.begin().await.expect("begin");
            sqlx::query(DELETE)
                .bind(blob_id)
                .execute(&mut *txn)
                .await
                .expect("delete the chunks");
            for (index, chunk) in chunks.into_iter().enumerate() {
                sqlx::query(INSERT)
                    .bind(blob_id)
                    .bind(index as i64)
                    .bind(chunk)
                    .execute(&mut *txn)
                    .await
                    .expect("insert a chunk");
            }
            txn.commit().await.expect("commit");
            let _ = conn.close().await;
        }
        Backend::Postgres => {
            let mut conn = PgConnection::connect(db.url())
                .await
                .expect("connect to PostgreSQL");
            let mut chunks: Vec<Vec<u8>> = sqlx::query_scalar(SELECT)
                .bind(blob_id)
                .fetch_all(&mut conn)
                .await
                .expect("read the chunks");
            assert!(!chunks.is_empty(), "blob {blob_id} has no chunk rows");
            tamper(&mut chunks);
            let mut txn = conn.begin().await.expect("begin");
            sqlx::query(DELETE)
                .bind(blob_id)
                .execute(&mut *txn)
                .await
                .expect("delete the chunks");
            for (index, chunk) in chunks.into_iter().enumerate() {
                sqlx::query(INSERT)
                    .bind(blob_id)
                    .bind(index as i64)
                    .bind(chunk)
                    .execute(&mut *txn)
                    .await
                    .expect("insert a chunk");
            }
            txn.commit().await.expect("commit");
            let _ = conn.close().await;
        }
    }
}

/// The file of blob `blob_id` under the directory storage's `dir`.
pub fn blob_file(dir: &Path, blob_id: &str) -> PathBuf {
    dir.join(format!("{blob_id}.blob"))
}

/// Rewrites a blob file of the directory storage (`SCRBLOB1`, then per chunk a u32
/// big-endian length and the sealed bytes) the way [`tamper_blob_rows`] does the rows.
pub fn tamper_blob_file(path: &Path, tamper: impl FnOnce(&mut Vec<Vec<u8>>)) {
    const MAGIC: &[u8] = b"SCRBLOB1";
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("read blob file {}: {e}", path.display()));
    assert!(
        bytes.starts_with(MAGIC),
        "{} is no blob file",
        path.display()
    );
    let mut chunks = Vec::new();
    let mut rest = &bytes[MAGIC.len()..];
    while !rest.is_empty() {
        let (len, tail) = rest.split_at(4);
        let len = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
        let (chunk, tail) = tail.split_at(len);
        chunks.push(chunk.to_vec());
        rest = tail;
    }
    assert!(!chunks.is_empty(), "{} holds no chunk", path.display());
    tamper(&mut chunks);
    let mut out = MAGIC.to_vec();
    for chunk in chunks {
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(&chunk);
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A user's open `GET /api/jobs/events` stream and everything read from it so far.
pub struct EventStream {
    response: Response,
    pub received: String,
}

impl EventStream {
    /// Connects as `user`; the subscription exists once the headers are here.
    pub async fn open(app: &TestApp, user: &str) -> Self {
        let response = bearer(app, Method::GET, "/api/jobs/events", user)
            .send()
            .await
            .expect("events reaches the server");
        assert_eq!(response.status().as_u16(), 200, "events stream refused");
        Self {
            response,
            received: String::new(),
        }
    }

    /// `event: <name>\ndata: <job id>\n\n`, as the stream frames it.
    pub fn message(name: &str, job_id: i64) -> String {
        format!("event: {name}\ndata: {job_id}\n\n")
    }

    /// Whether anything read so far concerns `job_id`.
    pub fn mentions(&self, job_id: i64) -> bool {
        self.received.contains(&format!("data: {job_id}\n"))
    }

    /// Reads until `needle` has arrived; fails after `timeout`.
    pub async fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.received.contains(needle) {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no {needle:?} on the event stream within {timeout:?}; got {:?}",
                        self.received
                    )
                })
                .expect("read the event stream")
                .expect("the event stream stays open");
            self.received.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
