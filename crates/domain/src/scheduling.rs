//! The queue and its assignments (SPEC §3.6, §3.11), all in the database
//! (SPEC §2 "State"): a queued job is a `jobs` row in step `pending_runner`,
//! an online runner is a `runner_sessions` row, and an assignment is
//! `runner_sessions.job_id` (unique: one job never goes to two runners) plus
//! the job's step `runner_assigned`.
//!
//! [`schedule`] gives the oldest queued job (lowest id) to the free online
//! runner with the highest priority, until either runs out. Each assignment
//! is one transaction. On PostgreSQL both rows are picked with `FOR UPDATE
//! SKIP LOCKED`, so several replicas scheduling at once never pick the same
//! job or runner, and the conditional updates (`step = 'pending_runner'`,
//! `job_id IS NULL`) re-check it anyway. SQLite is one process: its writing
//! transactions are serialised by [`write_lock`].

use chrono::Utc;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use tokio::sync::{Mutex, MutexGuard};

use crate::entities::{jobs, runner_sessions};
use crate::error::{DomainError, DomainResult};
use crate::events::{JobEvent, Message};
use crate::storage::BlobId;
use crate::Domain;

/// Job steps as stored in `jobs.step`.
pub mod step {
    pub const NOT_QUEUED: &str = "not_queued";
    pub const PENDING_RUNNER: &str = "pending_runner";
    pub const RUNNER_ASSIGNED: &str = "runner_assigned";
    pub const RUNNER_IN_PROGRESS: &str = "runner_in_progress";
    pub const ABORTING: &str = "aborting";
    pub const SUCCESS: &str = "success";
    pub const FAILED: &str = "failed";
    pub const DOWNLOADED: &str = "downloaded";
}

/// The error message of a job that was aborted (Project-W's wording).
pub const JOB_ABORTED: &str = "Job was aborted";
const NOT_RUNNING: &str = "At least one of the provided jobs is currently not running";

static SQLITE_WRITES: Mutex<()> = Mutex::const_new(());

/// Serialises this module's read-then-write transactions on SQLite (one
/// process; a deferred transaction that reads first could otherwise fail to
/// upgrade to a write lock). `None` on PostgreSQL, where row locks do the job.
pub(crate) async fn write_lock(d: &Domain) -> Option<MutexGuard<'static, ()>> {
    if d.db.get_database_backend() == DbBackend::Sqlite {
        Some(SQLITE_WRITES.lock().await)
    } else {
        None
    }
}

/// Begins a read-then-write transaction. On SQLite its first statement is a
/// no-op write, which takes the database's write lock at once (like `BEGIN
/// IMMEDIATE`, which sea-orm can't issue): a deferred transaction that read
/// first fails with SQLITE_BUSY_SNAPSHOT when another connection (a heartbeat,
/// say) wrote meanwhile, and waiting can't cure that.
pub(crate) async fn begin_write(
    d: &Domain,
) -> DomainResult<(Option<MutexGuard<'static, ()>>, DatabaseTransaction)> {
    let guard = write_lock(d).await;
    let txn = d.db.begin().await?;
    if d.db.get_database_backend() == DbBackend::Sqlite {
        txn.execute_unprepared("UPDATE runner_sessions SET priority = priority WHERE 0")
            .await?;
    }
    Ok((guard, txn))
}

fn is_postgres(conn: &impl ConnectionTrait) -> bool {
    conn.get_database_backend() == DbBackend::Postgres
}

/// Assigns queued jobs to free online runners until one of them runs out.
pub async fn schedule(d: &Domain) -> DomainResult<()> {
    // Bounded so that a persistent conflict can't spin forever.
    for _ in 0..10_000 {
        if !assign_one(d).await? {
            break;
        }
    }
    Ok(())
}

/// One assignment; `false` when there is no free runner or no queued job.
async fn assign_one(d: &Domain) -> DomainResult<bool> {
    let (_guard, txn) = begin_write(d).await?;
    let mut runner_query = runner_sessions::Entity::find()
        .filter(runner_sessions::Column::JobId.is_null())
        .order_by_desc(runner_sessions::Column::Priority)
        .order_by_asc(runner_sessions::Column::RegisteredAt)
        .order_by_asc(runner_sessions::Column::RunnerId);
    if is_postgres(&txn) {
        runner_query = runner_query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let Some(runner) = runner_query.one(&txn).await? else {
        txn.rollback().await?;
        return Ok(false);
    };
    let mut job_query = jobs::Entity::find()
        .filter(jobs::Column::Step.eq(step::PENDING_RUNNER))
        .order_by_asc(jobs::Column::Id);
    if is_postgres(&txn) {
        job_query = job_query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let Some(job) = job_query.one(&txn).await? else {
        txn.rollback().await?;
        return Ok(false);
    };
    let taken = jobs::Entity::update_many()
        .col_expr(jobs::Column::Step, Expr::value(step::RUNNER_ASSIGNED))
        .col_expr(jobs::Column::Progress, Expr::value(0.0))
        .col_expr(jobs::Column::RunnerId, Expr::value(runner.runner_id))
        .col_expr(jobs::Column::RunnerName, Expr::value(runner.name.clone()))
        .col_expr(
            jobs::Column::RunnerVersion,
            Expr::value(runner.version.clone()),
        )
        .col_expr(
            jobs::Column::RunnerGitHash,
            Expr::value(runner.git_hash.clone()),
        )
        .col_expr(
            jobs::Column::RunnerSourceCodeUrl,
            Expr::value(runner.source_code_url.clone()),
        )
        .filter(jobs::Column::Id.eq(job.id))
        .filter(jobs::Column::Step.eq(step::PENDING_RUNNER))
        .exec(&txn)
        .await?;
    let seated = runner_sessions::Entity::update_many()
        .col_expr(runner_sessions::Column::JobId, Expr::value(job.id))
        .col_expr(runner_sessions::Column::JobInProgress, Expr::value(false))
        .filter(runner_sessions::Column::RunnerId.eq(runner.runner_id))
        .filter(runner_sessions::Column::JobId.is_null())
        .exec(&txn)
        .await;
    let seated = match seated {
        Ok(result) => result.rows_affected,
        // The unique index on job_id: another process took this job meanwhile.
        Err(_) => 0,
    };
    if taken.rows_affected != 1 || seated != 1 {
        txn.rollback().await?;
        // Someone else changed one of the rows; look again.
        return Ok(true);
    }
    d.events
        .commit_and_send(
            txn,
            vec![Message::Job(JobEvent::updated(job.user_id, job.id))],
        )
        .await?;
    tracing::debug!(job = job.id, runner = runner.runner_id, "job assigned");
    Ok(true)
}

/// Takes a job away from a runner that went away (unregistered, invalidated
/// or silent): an aborting job fails with "Job was aborted", any other one
/// goes back to the queue at its old position. Runs inside the caller's
/// transaction; returns the event to send after the commit.
pub(crate) async fn release_job(
    txn: &DatabaseTransaction,
    job_id: i64,
) -> DomainResult<Option<JobEvent>> {
    let Some(job) = jobs::Entity::find_by_id(job_id).one(txn).await? else {
        return Ok(None);
    };
    match job.step.as_str() {
        step::ABORTING => {
            finish_failed(txn, job_id, JOB_ABORTED).await?;
        }
        step::RUNNER_ASSIGNED | step::RUNNER_IN_PROGRESS => {
            jobs::Entity::update_many()
                .col_expr(jobs::Column::Step, Expr::value(step::PENDING_RUNNER))
                .col_expr(jobs::Column::Progress, Expr::value(0.0))
                .col_expr(jobs::Column::RunnerId, Expr::value(Option::<i64>::None))
                .col_expr(
                    jobs::Column::RunnerName,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    jobs::Column::RunnerVersion,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    jobs::Column::RunnerGitHash,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    jobs::Column::RunnerSourceCodeUrl,
                    Expr::value(Option::<String>::None),
                )
                .filter(jobs::Column::Id.eq(job_id))
                .exec(txn)
                .await?;
        }
        _ => return Ok(None),
    }
    Ok(Some(JobEvent::updated(job.user_id, job.id)))
}

/// Marks a job failed with `error_msg` (its runner snapshot is kept).
pub(crate) async fn finish_failed(
    conn: &impl ConnectionTrait,
    job_id: i64,
    error_msg: &str,
) -> DomainResult<()> {
    jobs::Entity::update_many()
        .col_expr(jobs::Column::Step, Expr::value(step::FAILED))
        .col_expr(jobs::Column::ErrorMsg, Expr::value(error_msg.to_owned()))
        .col_expr(jobs::Column::Progress, Expr::value(0.0))
        .col_expr(jobs::Column::FinishTimestamp, Expr::value(Utc::now()))
        .filter(jobs::Column::Id.eq(job_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Deletes a blob after the commit that dropped its reference; a failure
/// only leaves garbage, so it is logged.
pub(crate) async fn delete_blob(d: &Domain, id: Option<String>) {
    let Some(id) = id else { return };
    let result = match BlobId::parse(&id) {
        Ok(id) => d.blobs.delete(&id).await.map(|_| ()),
        Err(err) => Err(err),
    };
    if let Err(err) = result {
        tracing::warn!(blob = %id, error = %err, "could not delete a blob");
    }
}

/// Aborts `user_id`'s jobs among `job_ids` (SPEC §3.5 `abort`, §3.6, §3.11).
///
/// Ids of other users' jobs and unknown ids are ignored. If any listed job of
/// the user is already finished or aborting, nothing changes and the answer is
/// `Invalid`. By state: queued (or never queued) → failed "Job was aborted";
/// assigned but not yet fetched → failed at once and its runner is free again;
/// in progress → `aborting` (the runner learns it from its next heartbeat).
/// The audio of every aborted job is deleted; each job gets `job_updated`.
pub async fn abort_jobs(d: &Domain, user_id: i64, job_ids: &[i64]) -> DomainResult<()> {
    if job_ids.is_empty() {
        return Ok(());
    }
    let mut freed_runner = false;
    let mut blobs = Vec::new();
    {
        let (_guard, txn) = begin_write(d).await?;
        let mut query = jobs::Entity::find()
            .filter(jobs::Column::UserId.eq(user_id))
            .filter(jobs::Column::Id.is_in(job_ids.iter().copied()))
            .order_by_asc(jobs::Column::Id);
        if is_postgres(&txn) {
            query = query.lock(LockType::Update);
        }
        let found = query.all(&txn).await?;
        if found.iter().any(|job| {
            matches!(
                job.step.as_str(),
                step::SUCCESS | step::FAILED | step::DOWNLOADED | step::ABORTING
            )
        }) {
            txn.rollback().await?;
            return Err(DomainError::Invalid(NOT_RUNNING.to_owned()));
        }
        let mut messages = Vec::new();
        for job in found {
            match job.step.as_str() {
                step::RUNNER_IN_PROGRESS => {
                    jobs::Entity::update_many()
                        .col_expr(jobs::Column::Step, Expr::value(step::ABORTING))
                        .col_expr(jobs::Column::AbortRequested, Expr::value(true))
                        .col_expr(
                            jobs::Column::AudioBlobId,
                            Expr::value(Option::<String>::None),
                        )
                        .filter(jobs::Column::Id.eq(job.id))
                        .exec(&txn)
                        .await?;
                }
                step::RUNNER_ASSIGNED => {
                    runner_sessions::Entity::update_many()
                        .col_expr(
                            runner_sessions::Column::JobId,
                            Expr::value(Option::<i64>::None),
                        )
                        .col_expr(runner_sessions::Column::JobInProgress, Expr::value(false))
                        .filter(runner_sessions::Column::JobId.eq(job.id))
                        .exec(&txn)
                        .await?;
                    abort_at_once(&txn, job.id).await?;
                    freed_runner = true;
                }
                _ => abort_at_once(&txn, job.id).await?,
            }
            blobs.push(job.audio_blob_id.clone());
            messages.push(Message::Job(JobEvent::updated(user_id, job.id)));
        }
        d.events.commit_and_send(txn, messages).await?;
    }
    for blob in blobs {
        delete_blob(d, blob).await;
    }
    if freed_runner {
        schedule(d).await?;
    }
    Ok(())
}

async fn abort_at_once(txn: &DatabaseTransaction, job_id: i64) -> DomainResult<()> {
    finish_failed(txn, job_id, JOB_ABORTED).await?;
    jobs::Entity::update_many()
        .col_expr(jobs::Column::AbortRequested, Expr::value(true))
        .col_expr(
            jobs::Column::AudioBlobId,
            Expr::value(Option::<String>::None),
        )
        .filter(jobs::Column::Id.eq(job_id))
        .exec(txn)
        .await?;
    Ok(())
}
