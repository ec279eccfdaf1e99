//! Finding and running the binaries under test.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::logs::{Logs, WaitError};
use crate::{CLI_TIMEOUT, READY_TIMEOUT};

/// Overrides where the `scribe` binary is looked for.
pub const SCRIBE_BIN_VAR: &str = "SCRIBE_BIN";
pub const SCRIBE_RUNNER_BIN_VAR: &str = "SCRIBE_RUNNER_BIN";

/// `$SCRIBE_BIN`, else `scribe` in the target directory this test binary was built into
/// (`target/<profile>/deps/blackbox-… → target/<profile>/scribe`).
pub fn scribe_bin() -> PathBuf {
    find_bin("scribe", SCRIBE_BIN_VAR, "scribe-server")
}

/// `$SCRIBE_RUNNER_BIN`, else `scribe-runner` next to `scribe`.
pub fn scribe_runner_bin() -> PathBuf {
    find_bin("scribe-runner", SCRIBE_RUNNER_BIN_VAR, "scribe-runner")
}

fn find_bin(name: &str, var: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{var}={} does not name a file",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // deps/ holds test executables; the binaries sit one level up.
    let dir = exe
        .parent()
        .map(|d| {
            if d.ends_with("deps") {
                d.parent().unwrap_or(d)
            } else {
                d
            }
        })
        .expect("the test executable has a directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "\n\nThe black-box tests run the real `{name}` binary, but {} does not exist.\n\
         Run the suite with `scripts/test` (it builds every binary first), or build it with \
         `cargo build -p {package}`, or point {var} at one.\n",
        path.display()
    );
    path
}

/// A command with the environment every child of the harness gets: `SCRIBE_*` variables of
/// the developer's shell (and the harness's own, like `SCRIBE_TEST_POSTGRES_URL`) removed
/// so they can't override a test's config, then the test's own `env` added.
fn command(bin: &Path, args: &[String], env: &[(String, String)], cwd: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(cwd);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SCRIBE_") {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (OsStr::new(k), OsStr::new(v))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    cmd
}

/// If the test process is killed (nextest's timeout, Ctrl-C), its servers must not live on.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only makes one async-signal-safe
    // syscall, touching no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_cmd: &mut Command) {}

/// What a finished CLI run produced.
#[derive(Debug)]
pub struct CliOutput {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CliOutput {
    /// The exit code; `None` if a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "expected success\n{self}");
        self
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "unexpected exit code\n{self}");
        self
    }

    /// stdout and stderr together, for "the message says …" checks.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics unless the output is free of panic traces.
    pub fn assert_no_panic(&self) -> &Self {
        let out = self.output();
        for marker in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(!out.contains(marker), "output contains {marker:?}\n{self}");
        }
        self
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit: {} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command, self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// `scribe <args>` with `env`, in a fresh empty temp dir, to completion.
pub async fn run_scribe(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let dir = tempfile::tempdir().expect("create a temp dir");
    run_scribe_in(dir.path(), args, env).await
}

/// `scribe <args>` with `env`, in `cwd`, to completion.
pub async fn run_scribe_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    run(&scribe_bin(), &args, &env, cwd, CLI_TIMEOUT).await
}

/// Runs `bin` to completion; a run past `timeout` is killed and fails the test.
pub(crate) async fn run(
    bin: &Path,
    args: &[String],
    env: &[(String, String)],
    cwd: &Path,
    timeout: Duration,
) -> CliOutput {
    let description = describe(bin, args, env);
    let started = Instant::now();
    let mut child = command(bin, args, env, cwd)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {description}: {e}"));
    let stdout = Logs::collect(child.stdout.take().expect("piped stdout"));
    let stderr = Logs::collect(child.stderr.take().expect("piped stderr"));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.expect("wait for the child"),
        Err(_) => {
            let _ = child.start_kill();
            panic!(
                "$ {description}\ndid not finish within {timeout:?}\n--- stdout ---\n{}--- stderr ---\n{}",
                stdout.dump(),
                stderr.dump()
            );
        }
    };
    // The process is gone; let the readers reach end of file (bounded, in case a
    // grandchild inherited the pipes).
    for logs in [&stdout, &stderr] {
        let _ = logs.wait_for(Duration::from_secs(5), |_| false).await;
    }
    CliOutput {
        command: description,
        status,
        stdout: stdout.dump(),
        stderr: stderr.dump(),
        elapsed: started.elapsed(),
    }
}

fn describe(bin: &Path, args: &[String], env: &[(String, String)]) -> String {
    let mut parts: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.push(bin.display().to_string());
    parts.extend(args.iter().cloned());
    parts.join(" ")
}

/// A running `scribe serve`, killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub address: SocketAddr,
    pub stderr: Logs,
    pub stdout: Logs,
    pub command: String,
}

impl ServerProcess {
    /// Spawns the server and waits for its `listening` line (message `listening`, field
    /// `address`): the socket is bound and the app serves. A server that exits or stays
    /// silent fails the test with everything it wrote.
    pub async fn start(bin: &Path, args: &[String], env: &[(String, String)], cwd: &Path) -> Self {
        let description = describe(bin, args, env);
        let mut child = command(bin, args, env, cwd)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {description}: {e}"));
        let stdout = Logs::collect(child.stdout.take().expect("piped stdout"));
        let stderr = Logs::collect(child.stderr.take().expect("piped stderr"));
        let ready = stderr
            .wait_for(READY_TIMEOUT, |line| {
                line.message() == Some("listening") && line.field("address").is_some()
            })
            .await;
        let line = match ready {
            Ok(line) => line,
            Err(e) => {
                let status = match e {
                    WaitError::Closed => {
                        match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                            Ok(Ok(status)) => status.to_string(),
                            _ => "still running".to_string(),
                        }
                    }
                    WaitError::Timeout(_) => "still running".to_string(),
                };
                let _ = child.start_kill();
                panic!(
                    "\n$ {description}\nnever logged `listening` with an `address` ({e}; process: {status})\n\
                     --- stderr ---\n{}--- stdout ---\n{}",
                    stderr.dump(),
                    stdout.dump()
                );
            }
        };
        let text = line.field_text("address").unwrap_or_default();
        let address: SocketAddr = text
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("`listening` address {text:?} is not host:port: {e}"));
        Self {
            child,
            address,
            stderr,
            stdout,
            command: description,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: i32) {
        let pid = self.pid().expect("the server is still running") as libc::pid_t;
        // SAFETY: kill(2) takes plain integers; the pid is our own, not yet reaped child.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the server to exit; fails the test (with its log) after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => panic!(
                "scribe did not exit within {timeout:?}; stderr:\n{}",
                self.stderr.dump()
            ),
        }
    }

    /// The exit status if the server has exited already.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll the server")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
