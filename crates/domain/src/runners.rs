//! Runners and the runner protocol (SPEC §3.6, §3.7): runner tokens (stored
//! hashed), online sessions (`runner_sessions`, one per runner), heartbeats,
//! handing out a job's settings and audio, and taking its result. Assignment
//! itself is [`crate::scheduling`].

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::entities::{jobs, runner_sessions, runners, users};
use crate::error::{DomainError, DomainResult};
use crate::events::{JobEvent, Message};
use crate::jobs::settings::JobSettings;
use crate::mail::{templates, OutgoingMail};
use crate::scheduling::{self, begin_write, step, write_lock, JOB_ABORTED};
use crate::storage::{self, BlobId, BlobStream};
use crate::tokens::hash_token;
use crate::Domain;

/// How often the reaper looks for silent runners, at most: with a shorter
/// `runners.heartbeat_timeout_seconds` it looks at least twice per timeout.
pub const REAPER_PERIOD: Duration = Duration::from_secs(5);

pub const NO_SUCH_RUNNER: &str = "No runner with that token exists!";
pub const NOT_ONLINE: &str = "This runner is currently not registered as online!";
pub const ALREADY_ONLINE: &str = "This runner is already registered as online!";
pub const WRONG_SESSION: &str = "The session token is invalid. Your runner token might have been compromised and used to re-register this runner on a different machine, if this wasn't you then immediately invalidate this runner! Refer to the documentation for how to do so";
pub const NO_JOB: &str = "This runner has currently no job assigned";
pub const NOT_PROCESSING: &str = "This runner is currently not processing a job!";
const INFO_OF_ABORTED: &str =
    "This job was aborted by a user. Can't get job info of an aborted job!";
const AUDIO_OF_ABORTED: &str =
    "This job was aborted by a user. Can't get job audio of an aborted job!";
const MAX_TOKEN_CHARS: usize = 512;

/// A new runner's id and its token (shown once).
#[derive(Debug, Clone)]
pub struct CreatedRunner {
    pub id: i64,
    pub token: String,
}

/// What a runner says about itself when it registers.
#[derive(Debug, Clone)]
pub struct Registration {
    pub name: String,
    pub version: String,
    pub git_hash: String,
    pub source_code_url: String,
    pub priority: i64,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub abort: bool,
    pub job_assigned: bool,
}

/// A submitted transcript in all five formats; stored as one encrypted JSON blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transcript {
    pub as_txt: String,
    pub as_srt: String,
    pub as_tsv: String,
    pub as_vtt: String,
    pub as_json: serde_json::Map<String, serde_json::Value>,
}

/// What a runner hands in: an error wins over a transcript.
#[derive(Debug, Clone)]
pub enum JobResult {
    Failed(String),
    Succeeded(Transcript),
}

/// A job's audio for its runner: the uploaded content type and the plaintext.
pub struct JobAudio {
    pub content_type: String,
    pub stream: BlobStream,
}

fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn for_update<S: QuerySelect>(query: S, conn: &impl ConnectionTrait) -> S {
    if conn.get_database_backend() == DbBackend::Postgres {
        query.lock(LockType::Update)
    } else {
        query
    }
}

/// Creates a runner; its token (256 random bits) is returned once, stored hashed.
pub async fn create_runner(d: &Domain) -> DomainResult<CreatedRunner> {
    let token = random_token();
    let model = runners::ActiveModel {
        token_hash: Set(hash_token(&token)),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&d.db)
    .await?;
    Ok(CreatedRunner {
        id: model.id,
        token,
    })
}

/// Takes a runner offline if it is online, then deletes it. Unknown ids are fine.
pub async fn invalidate_runner(d: &Domain, runner_id: i64) -> DomainResult<()> {
    unregister(d, runner_id).await?;
    runners::Entity::delete_by_id(runner_id).exec(&d.db).await?;
    Ok(())
}

/// The runner a Bearer token belongs to; `Unauthenticated` for any other token.
pub async fn authenticate(d: &Domain, token: &str) -> DomainResult<i64> {
    let unknown = || DomainError::Unauthenticated(NO_SUCH_RUNNER.to_owned());
    if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
        return Err(unknown());
    }
    let hash = hash_token(token);
    let runner = runners::Entity::find()
        .filter(runners::Column::TokenHash.eq(hash.clone()))
        .one(&d.db)
        .await?
        .ok_or_else(unknown)?;
    if bool::from(runner.token_hash.as_bytes().ct_eq(hash.as_bytes())) {
        Ok(runner.id)
    } else {
        Err(unknown())
    }
}

/// The online session of `runner_id` if `session_token` is its current one.
pub async fn online_session(
    d: &Domain,
    runner_id: i64,
    session_token: &str,
) -> DomainResult<runner_sessions::Model> {
    let session = runner_sessions::Entity::find_by_id(runner_id)
        .one(&d.db)
        .await?
        .ok_or_else(|| DomainError::Forbidden(NOT_ONLINE.to_owned()))?;
    let hash = hash_token(session_token);
    if bool::from(session.session_token_hash.as_bytes().ct_eq(hash.as_bytes())) {
        Ok(session)
    } else {
        Err(DomainError::Forbidden(WRONG_SESSION.to_owned()))
    }
}

/// Puts a runner online; returns its new session token. `Forbidden` if it
/// already is. Then assigns it a job if one is queued.
pub async fn register(d: &Domain, runner_id: i64, reg: Registration) -> DomainResult<String> {
    let token = random_token();
    let now = Utc::now();
    {
        let _guard = write_lock(d).await;
        if runner_sessions::Entity::find_by_id(runner_id)
            .one(&d.db)
            .await?
            .is_some()
        {
            return Err(DomainError::Forbidden(ALREADY_ONLINE.to_owned()));
        }
        let inserted = runner_sessions::ActiveModel {
            runner_id: Set(runner_id),
            session_token_hash: Set(hash_token(&token)),
            name: Set(reg.name),
            version: Set(reg.version),
            git_hash: Set(reg.git_hash),
            source_code_url: Set(reg.source_code_url),
            priority: Set(reg.priority),
            registered_at: Set(now),
            last_heartbeat: Set(now),
            job_id: Set(None),
            job_in_progress: Set(false),
        }
        .insert(&d.db)
        .await;
        if inserted.is_err() {
            // A concurrent registration won the primary key (or the runner was
            // deleted meanwhile); either way this one isn't online.
            return Err(DomainError::Forbidden(ALREADY_ONLINE.to_owned()));
        }
    }
    scheduling::schedule(d).await?;
    Ok(token)
}

/// Takes a runner offline (whether or not it is online). Its job goes back to
/// the queue, or fails if it was being aborted; then scheduling runs.
pub async fn unregister(d: &Domain, runner_id: i64) -> DomainResult<()> {
    let released = {
        let (_guard, txn) = begin_write(d).await?;
        let session = for_update(runner_sessions::Entity::find_by_id(runner_id), &txn)
            .one(&txn)
            .await?;
        let Some(session) = session else {
            txn.rollback().await?;
            return Ok(());
        };
        take_offline(d, txn, session).await?
    };
    if released {
        scheduling::schedule(d).await?;
    }
    Ok(())
}

/// Deletes a session and releases its job, committing `txn`; `true` if a job
/// went back to the queue.
async fn take_offline(
    d: &Domain,
    txn: sea_orm::DatabaseTransaction,
    session: runner_sessions::Model,
) -> DomainResult<bool> {
    runner_sessions::Entity::delete_by_id(session.runner_id)
        .exec(&txn)
        .await?;
    let mut messages = Vec::new();
    let mut requeued = false;
    if let Some(job_id) = session.job_id {
        if let Some(event) = scheduling::release_job(&txn, job_id).await? {
            messages.push(Message::Job(event));
            requeued = true;
        }
    }
    d.events.commit_and_send(txn, messages).await?;
    Ok(requeued)
}

/// A heartbeat (SPEC §3.6): refreshes `last_heartbeat`, stores a changed
/// progress while in progress, and tells the runner about its job.
/// How stale `last_heartbeat` may get before a heartbeat writes it: a
/// sixth of the timeout, at most five seconds. Runners beat every few seconds;
/// writing each beat would make a thousand runners a thousand writes a second
/// (one at a time on SQLite), while the reaper only needs to know who went
/// silent for the whole timeout.
fn heartbeat_resolution(config: &Config) -> chrono::Duration {
    let sixth_ms = config
        .runners
        .heartbeat_timeout_seconds
        .saturating_mul(1000)
        / 6;
    chrono::Duration::milliseconds(i64::try_from(sixth_ms.min(5000)).unwrap_or(5000))
}

pub async fn heartbeat(
    d: &Domain,
    session: &runner_sessions::Model,
    progress: f64,
) -> DomainResult<Heartbeat> {
    let now = Utc::now();
    if now - session.last_heartbeat >= heartbeat_resolution(&d.config) {
        runner_sessions::Entity::update_many()
            .col_expr(runner_sessions::Column::LastHeartbeat, Expr::value(now))
            .filter(runner_sessions::Column::RunnerId.eq(session.runner_id))
            .exec(&d.db)
            .await?;
    }
    let Some(job_id) = session.job_id else {
        return Ok(Heartbeat {
            abort: false,
            job_assigned: false,
        });
    };
    if session.job_in_progress {
        let job = jobs::Entity::find_by_id(job_id).one(&d.db).await?;
        let Some(job) = job else {
            return Ok(Heartbeat {
                abort: false,
                job_assigned: false,
            });
        };
        if job.step == step::ABORTING || job.abort_requested {
            return Ok(Heartbeat {
                abort: true,
                job_assigned: false,
            });
        }
        if job.step == step::RUNNER_IN_PROGRESS && job.progress != progress {
            let changed = jobs::Entity::update_many()
                .col_expr(jobs::Column::Progress, Expr::value(progress))
                .filter(jobs::Column::Id.eq(job_id))
                .filter(jobs::Column::Step.eq(step::RUNNER_IN_PROGRESS))
                .exec(&d.db)
                .await?;
            if changed.rows_affected > 0 {
                d.events
                    .publish(JobEvent::updated(job.user_id, job.id))
                    .await;
            }
        }
    }
    Ok(Heartbeat {
        abort: false,
        job_assigned: true,
    })
}

async fn assigned_job(
    d: &Domain,
    session: &runner_sessions::Model,
    aborted_message: &str,
) -> DomainResult<jobs::Model> {
    let job_id = session
        .job_id
        .ok_or_else(|| DomainError::Invalid(NO_JOB.to_owned()))?;
    let job = jobs::Entity::find_by_id(job_id)
        .one(&d.db)
        .await?
        .ok_or_else(|| DomainError::Invalid(NO_JOB.to_owned()))?;
    if job.step == step::ABORTING || job.abort_requested {
        return Err(DomainError::NotAllowed(aborted_message.to_owned()));
    }
    Ok(job)
}

/// The id and settings of the runner's job; `Invalid` without one,
/// `NotAllowed` if it was aborted.
pub async fn job_info(
    d: &Domain,
    session: &runner_sessions::Model,
) -> DomainResult<(i64, JobSettings)> {
    let job = assigned_job(d, session, INFO_OF_ABORTED).await?;
    let settings: JobSettings = serde_json::from_str(&job.settings)
        .map_err(|err| DomainError::internal("stored job settings", err))?;
    Ok((job.id, settings))
}

/// The audio of the runner's job; marks the job in progress.
pub async fn job_audio(d: &Domain, session: &runner_sessions::Model) -> DomainResult<JobAudio> {
    let job = assigned_job(d, session, AUDIO_OF_ABORTED).await?;
    let blob = job
        .audio_blob_id
        .as_deref()
        .ok_or_else(|| DomainError::internal("job audio", "the job has no audio"))
        .and_then(BlobId::parse)?;
    let stream = d.blobs.read(&blob).await?;
    if !session.job_in_progress {
        let txn = {
            let (_guard, txn) = begin_write(d).await?;
            runner_sessions::Entity::update_many()
                .col_expr(runner_sessions::Column::JobInProgress, Expr::value(true))
                .filter(runner_sessions::Column::RunnerId.eq(session.runner_id))
                .filter(runner_sessions::Column::JobId.eq(job.id))
                .exec(&txn)
                .await?;
            jobs::Entity::update_many()
                .col_expr(jobs::Column::Step, Expr::value(step::RUNNER_IN_PROGRESS))
                .filter(jobs::Column::Id.eq(job.id))
                .filter(jobs::Column::Step.eq(step::RUNNER_ASSIGNED))
                .exec(&txn)
                .await?;
            d.events
                .commit_and_send(
                    txn,
                    vec![Message::Job(JobEvent::updated(job.user_id, job.id))],
                )
                .await
        };
        txn?;
    }
    Ok(JobAudio {
        content_type: job.content_type,
        stream: storage::with_first_chunk_checked(stream).await?,
    })
}

/// Stores a runner's result for the job it is processing (SPEC §3.6, §3.11)
/// and frees the runner. `Invalid` unless the runner is in progress.
pub async fn submit_result(
    d: &Domain,
    session: &runner_sessions::Model,
    result: JobResult,
) -> DomainResult<()> {
    let (Some(job_id), true) = (session.job_id, session.job_in_progress) else {
        return Err(DomainError::Invalid(NOT_PROCESSING.to_owned()));
    };
    let job = jobs::Entity::find_by_id(job_id)
        .one(&d.db)
        .await?
        .ok_or_else(|| DomainError::Invalid(NOT_PROCESSING.to_owned()))?;
    let aborting = job.step == step::ABORTING;
    // Write the transcript blob before the transaction (it may be large).
    let (outcome, transcript_blob) = match result {
        JobResult::Failed(message) => (Err(message), None),
        JobResult::Succeeded(_) if aborting => (Err(JOB_ABORTED.to_owned()), None),
        JobResult::Succeeded(transcript) => {
            let bytes = serde_json::to_vec(&transcript)
                .map_err(|err| DomainError::internal("transcript", err))?;
            let mut writer = d.blobs.create().await?;
            if let Err(err) = writer.write(&bytes).await {
                let _ = writer.abort().await;
                return Err(err);
            }
            let info = writer.finish().await?;
            (Ok(()), Some(info.id))
        }
    };
    let committed = {
        let _guard = write_lock(d).await;
        finish_job(
            d,
            session.runner_id,
            &job,
            &outcome,
            transcript_blob.as_ref(),
        )
        .await
    };
    match committed {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            if let Some(blob) = &transcript_blob {
                scheduling::delete_blob(d, Some(blob.to_string())).await;
            }
            committed?;
            return Err(DomainError::Invalid(NOT_PROCESSING.to_owned()));
        }
    }
    scheduling::delete_blob(d, job.audio_blob_id.clone()).await;
    if let Ok(settings) = serde_json::from_str::<JobSettings>(&job.settings) {
        if settings.email_notification {
            notify_owner(d, &job, &outcome).await;
        }
    }
    scheduling::schedule(d).await
}

/// The transaction of [`submit_result`]; `false` if the runner no longer
/// held the job in progress (nothing changed).
async fn finish_job(
    d: &Domain,
    runner_id: i64,
    job: &jobs::Model,
    outcome: &Result<(), String>,
    transcript_blob: Option<&BlobId>,
) -> DomainResult<bool> {
    let txn = d.db.begin().await?;
    let freed = runner_sessions::Entity::update_many()
        .col_expr(
            runner_sessions::Column::JobId,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(runner_sessions::Column::JobInProgress, Expr::value(false))
        .filter(runner_sessions::Column::RunnerId.eq(runner_id))
        .filter(runner_sessions::Column::JobId.eq(job.id))
        .filter(runner_sessions::Column::JobInProgress.eq(true))
        .exec(&txn)
        .await?;
    if freed.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    let mut update = jobs::Entity::update_many()
        .col_expr(jobs::Column::FinishTimestamp, Expr::value(Utc::now()))
        .col_expr(
            jobs::Column::AudioBlobId,
            Expr::value(Option::<String>::None),
        )
        .filter(jobs::Column::Id.eq(job.id));
    update = match outcome {
        Ok(()) => update
            .col_expr(jobs::Column::Step, Expr::value(step::SUCCESS))
            .col_expr(jobs::Column::Progress, Expr::value(100.0))
            .col_expr(
                jobs::Column::TranscriptBlobId,
                Expr::value(transcript_blob.map(|id| id.to_string())),
            ),
        Err(message) => update
            .col_expr(jobs::Column::Step, Expr::value(step::FAILED))
            .col_expr(jobs::Column::Progress, Expr::value(0.0))
            .col_expr(jobs::Column::ErrorMsg, Expr::value(message.clone())),
    };
    update.exec(&txn).await?;
    d.events
        .commit_and_send(
            txn,
            vec![Message::Job(JobEvent::updated(job.user_id, job.id))],
        )
        .await?;
    Ok(true)
}

async fn notify_owner(d: &Domain, job: &jobs::Model, outcome: &Result<(), String>) {
    let owner = match users::Entity::find_by_id(job.user_id).one(&d.db).await {
        Ok(Some(owner)) => owner,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(job = job.id, error = %err, "could not look up a job's owner");
            return;
        }
    };
    let client_url = &d.config.client_url;
    let content = match outcome {
        Ok(()) => templates::job_succeeded(client_url, job.id, &job.file_name),
        Err(message) => templates::job_failed(client_url, job.id, &job.file_name, message),
    };
    if let Err(err) = d
        .mail
        .enqueue(&d.db, OutgoingMail::to_one(owner.email, content))
        .await
    {
        tracing::warn!(job = job.id, error = %err, "could not queue a job mail");
    }
}

/// Takes every runner silent for longer than `timeout` offline and
/// requeues (or fails) its job, then schedules. Safe in several replicas at
/// once: each session is removed by whoever locks it first.
pub async fn reap_silent_runners(d: &Domain, timeout: Duration) -> DomainResult<usize> {
    let cutoff = Utc::now()
        - chrono::Duration::from_std(timeout)
            .map_err(|err| DomainError::internal("runner timeout", err))?;
    let silent = runner_sessions::Entity::find()
        .filter(runner_sessions::Column::LastHeartbeat.lt(cutoff))
        .all(&d.db)
        .await?;
    let mut reaped = 0;
    for candidate in silent {
        let (_guard, txn) = begin_write(d).await?;
        let mut query = runner_sessions::Entity::find_by_id(candidate.runner_id)
            .filter(runner_sessions::Column::LastHeartbeat.lt(cutoff));
        if txn.get_database_backend() == DbBackend::Postgres {
            query = query.lock_with_behavior(
                LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            );
        }
        let Some(session) = query.one(&txn).await? else {
            txn.rollback().await?;
            continue;
        };
        tracing::info!(
            runner = session.runner_id,
            "runner went silent; taking it offline"
        );
        take_offline(d, txn, session).await?;
        reaped += 1;
    }
    if reaped > 0 {
        scheduling::schedule(d).await?;
    }
    Ok(reaped)
}

/// The reaper task, with `runners.heartbeat_timeout_seconds` (SPEC §3.6,
/// §3.11): every [`REAPER_PERIOD`] (or half the timeout, if shorter) until
/// cancelled.
pub async fn run_reaper(d: Domain, cancel: CancellationToken) {
    let timeout = d.config.runners.heartbeat_timeout();
    let period = REAPER_PERIOD
        .min(timeout / 2)
        .max(Duration::from_millis(100));
    loop {
        if let Err(err) = reap_silent_runners(&d, timeout).await {
            tracing::warn!(error = %err, "runner reaper failed");
        }
        // A safety net: an assignment that failed transiently (a scheduling
        // error after a submission is only logged) is retried here.
        if let Err(err) = scheduling::schedule(&d).await {
            tracing::warn!(error = %err, "periodic scheduling failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}
