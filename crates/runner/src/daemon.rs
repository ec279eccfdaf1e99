//! The runner's life: register, heartbeat, take jobs, hand in results, unregister.
//!
//! The heartbeat runs in this module's main loop and nothing in it waits for a job:
//! each job runs on its own task (download, processing, submission), so neither a
//! large download nor a long transcription can starve the heartbeat. The loop and the
//! job task share two things: the progress (an atomic) and a stop signal (a watch
//! channel: abort → submit "job was aborted"; discard → stop without submitting,
//! because the session is gone or the runner is shutting down).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::client::{ClientError, JobResult, RegisterRequest, RunnerClient};
use crate::config::Config;
use crate::processor::{JobInput, Processor, Progress};

/// Project-W's runner sends exactly this when it stops an aborted job.
pub const ABORTED_MSG: &str = "job was aborted";
/// Where the sources of this runner live (sent at registration).
pub const SOURCE_CODE_URL: &str = env!("CARGO_PKG_REPOSITORY");

/// Why the daemon stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the backend rejected this runner: {0}")]
    Rejected(ClientError),
    #[error("{0}")]
    Setup(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Run,
    Abort,
    Discard,
}

struct RunningJob {
    handle: JoinHandle<()>,
    stop: watch::Sender<Stop>,
}

/// Downloads of one job's audio before the job is failed (with backoff between them).
const AUDIO_ATTEMPTS: u32 = 4;
/// Retry delays: doubling from the first to the last.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a job task may take to wind down on shutdown.
const JOB_STOP_GRACE: Duration = Duration::from_secs(10);

fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(BACKOFF_MAX)
}

/// The git commit this binary was built from, if the build said (≤ 40 characters).
fn git_hash() -> String {
    option_env!("SCRIBE_GIT_HASH")
        .unwrap_or("unknown")
        .chars()
        .take(40)
        .collect()
}

/// Runs until `shutdown` is cancelled (then unregisters and returns `Ok`) or the
/// backend rejects the runner for good (unknown token, invalid registration).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let client = RunnerClient::new(&config.backend_url, config.token.clone())
        .map_err(|e| DaemonError::Setup(e.to_string()))?;
    let registration = RegisterRequest {
        name: config.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_hash: git_hash(),
        source_code_url: SOURCE_CODE_URL.to_owned(),
        priority: config.priority,
    };
    let processor = Arc::new(Processor::new(config.processor.clone()));
    // A runner that cannot transcribe must not take jobs.
    tokio::select! {
        ready = processor.warm_up() => ready.map_err(DaemonError::Setup)?,
        () = shutdown.cancelled() => return Ok(()),
    }
    let progress = Arc::new(Progress::default());

    loop {
        let session = tokio::select! {
            registered = register(&client, &registration) => registered?,
            () = shutdown.cancelled() => {
                unregister(&client).await;
                return Ok(());
            }
        };
        let mut ticker = tokio::time::interval(config.heartbeat_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut job: Option<RunningJob> = None;
        let mut aborting = false;

        // One session: ends when the backend forgets it (403) or on shutdown.
        let outcome: Result<(), DaemonError> = loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    info!("shutting down");
                    stop_job(job.take()).await;
                    unregister(&client).await;
                    return Ok(());
                }
                () = finished(&mut job) => {
                    job = None;
                    aborting = false;
                    // Ask for the next job now rather than one interval later.
                    ticker.reset_immediately();
                }
                _ = ticker.tick() => {
                    let reported = if job.is_some() { progress.get() } else { 0.0 };
                    match client.heartbeat(&session, reported).await {
                        Ok(beat) => match &job {
                            Some(running) if beat.abort => {
                                if !aborting {
                                    info!("the backend aborted the current job");
                                    aborting = true;
                                }
                                running.stop.send_replace(Stop::Abort);
                            }
                            Some(_) => {}
                            None if beat.job_assigned => {
                                info!("job assigned");
                                progress.set(0.0);
                                job = Some(start_job(
                                    client.clone(),
                                    session.clone(),
                                    Arc::clone(&processor),
                                    Arc::clone(&progress),
                                ));
                            }
                            None => {}
                        },
                        Err(ClientError::Forbidden(detail)) => {
                            warn!(%detail, "the backend no longer knows this session; registering again");
                            break Ok(());
                        }
                        Err(e @ ClientError::Unauthorized(_)) => {
                            break Err(DaemonError::Rejected(e));
                        }
                        Err(e) => warn!(error = %e, "heartbeat failed; retrying"),
                    }
                }
            }
        };
        // The session is gone, and with it our claim on the job.
        stop_job(job.take()).await;
        outcome?;
    }
}

/// Resolves when the running job's task ends; never if there is none.
async fn finished(job: &mut Option<RunningJob>) {
    match job {
        Some(running) => {
            if let Err(e) = (&mut running.handle).await {
                error!(error = %e, "the job task failed");
            }
        }
        None => std::future::pending().await,
    }
}

async fn stop_job(job: Option<RunningJob>) {
    if let Some(mut running) = job {
        running.stop.send_replace(Stop::Discard);
        if tokio::time::timeout(JOB_STOP_GRACE, &mut running.handle)
            .await
            .is_err()
        {
            running.handle.abort();
        }
    }
}

/// Registers, retrying network trouble with backoff. A 403 means the backend still
/// holds an old session of ours (it restarted, or we crashed): like Project-W's runner,
/// unregister and register again.
async fn register(client: &RunnerClient, request: &RegisterRequest) -> Result<String, DaemonError> {
    let mut delay = BACKOFF_MIN;
    let mut unregistered = false;
    loop {
        match client.register(request).await {
            Ok(registered) => {
                info!(id = registered.id, name = %request.name, "registered");
                return Ok(registered.session_token);
            }
            Err(ClientError::Forbidden(detail)) if !unregistered => {
                warn!(%detail, "already registered as online; unregistering and registering again");
                unregistered = true;
                unregister(client).await;
                continue;
            }
            Err(e) if e.is_transient() || matches!(e, ClientError::Forbidden(_)) => {
                warn!(error = %e, retry_in = ?delay, "registration failed; retrying");
                unregistered = false;
            }
            Err(e) => return Err(DaemonError::Rejected(e)),
        }
        tokio::time::sleep(delay).await;
        delay = next_backoff(delay);
    }
}

async fn unregister(client: &RunnerClient) {
    match client.unregister().await {
        Ok(()) => info!("unregistered"),
        Err(e) => warn!(error = %e, "unregistering failed"),
    }
}

fn start_job(
    client: RunnerClient,
    session: String,
    processor: Arc<Processor>,
    progress: Arc<Progress>,
) -> RunningJob {
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let handle = tokio::spawn(async move {
        let mut discard = stop_rx.clone();
        tokio::select! {
            () = handle_job(&client, &session, &processor, progress, stop_rx) => {}
            _ = discard.wait_for(|s| *s == Stop::Discard) => {
                info!("stopped the current job without a result");
            }
        }
    });
    RunningJob { handle, stop }
}

/// Retries `call` while it fails transiently, up to `attempts` times.
async fn retrying<T, F, Fut>(what: &str, attempts: u32, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut delay = BACKOFF_MIN;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if e.is_transient() && attempt < attempts => {
                warn!(error = %e, retry_in = ?delay, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = next_backoff(delay);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// One job, from its info to the submitted result.
async fn handle_job(
    client: &RunnerClient,
    session: &str,
    processor: &Processor,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<Stop>,
) {
    let info = match retrying("retrieving the job info", 5, || {
        client.retrieve_job_info(session)
    })
    .await
    {
        Ok(info) => info,
        Err(e) => {
            // 400 (no job any more) or 405 (aborted before we started): nothing to hand in.
            warn!(error = %e, "could not retrieve the job info; skipping the job");
            return;
        }
    };
    let job_id = info.id;
    info!(job_id, "job retrieved");

    let base = processor
        .config()
        .working_dir()
        .map_or_else(std::env::temp_dir, PathBuf::from);
    let job_dir = match tempfile::Builder::new()
        .prefix(&format!("scribe-job-{job_id}-"))
        .tempdir_in(&base)
    {
        Ok(dir) => dir,
        Err(e) => {
            // Nothing fetched yet, so the backend takes no result; the job stays ours
            // and the next heartbeat tries again.
            error!(job_id, error = %e, "could not create a job directory");
            return;
        }
    };

    let audio_path: PathBuf = job_dir.path().join("audio");
    let audio = match retrying("retrieving the job's audio", AUDIO_ATTEMPTS, || {
        client.retrieve_job_audio(session, &audio_path)
    })
    .await
    {
        Ok(audio) => audio,
        Err(e @ (ClientError::Invalid(_) | ClientError::Io(_))) => {
            // The backend marked the job in progress; tell it what went wrong.
            error!(job_id, error = %e, "could not store the job's audio");
            let msg = format!("the runner could not retrieve the audio: {e}");
            submit(client, session, job_id, JobResult::ErrorMsg(msg)).await;
            return;
        }
        Err(e) if e.is_transient() => {
            // The backend answers but can't serve this audio (e.g. its stored copy is
            // damaged): skipping would only fetch it again at the next heartbeat, for
            // ever. If the backend is down instead, this submit fails too and the job
            // is retried once it is back.
            error!(job_id, error = %e, "the job's audio could not be retrieved; failing the job");
            let msg = format!(
                "the runner could not retrieve the audio after {AUDIO_ATTEMPTS} attempts: {e}"
            );
            submit(client, session, job_id, JobResult::ErrorMsg(msg)).await;
            return;
        }
        Err(e) => {
            warn!(job_id, error = %e, "could not retrieve the job's audio; skipping the job");
            return;
        }
    };
    info!(job_id, bytes = audio.size, content_type = %audio.content_type, "audio retrieved");

    let input = JobInput {
        job_id,
        settings: info.settings,
        audio_path,
        audio,
        job_dir: job_dir.path().to_path_buf(),
        progress,
    };
    let result = tokio::select! {
        result = processor.process(&input) => match result {
            Ok(transcript) => {
                info!(job_id, "transcription finished");
                JobResult::Transcript(transcript)
            }
            Err(msg) => {
                warn!(job_id, error = %msg, "transcription failed");
                JobResult::ErrorMsg(msg)
            }
        },
        _ = stop.wait_for(|s| *s == Stop::Abort) => {
            info!(job_id, "job aborted");
            JobResult::ErrorMsg(ABORTED_MSG.to_owned())
        }
    };
    submit(client, session, job_id, result).await;
    drop(job_dir);
}

async fn submit(client: &RunnerClient, session: &str, job_id: i64, result: JobResult) {
    match retrying("submitting the result", 8, || {
        client.submit_job_result(session, &result)
    })
    .await
    {
        Ok(()) => info!(job_id, "result submitted"),
        Err(e) => warn!(job_id, error = %e, "the backend did not take the result"),
    }
}
