//! Deleting finished jobs (SPEC §3.5 `delete`) with their audio and transcript.

use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect};

use super::queries::FINISHED_STEPS;
use crate::entities::{jobs, runner_sessions, users};
use crate::error::{DomainError, DomainResult};
use crate::events::{JobEvent, Message};
use crate::scheduling::{self, begin_write};
use crate::storage::BlobId;
use crate::Domain;

/// Deletes the user's jobs among `job_ids`; unknown and foreign ids are ignored.
/// If any of them isn't finished (success, failed or downloaded) nothing is
/// deleted and the answer is Project-W's 400: a queued or running job must be
/// aborted first. Sends `job_deleted` for each deleted job.
pub async fn delete_jobs(d: &Domain, user_id: i64, job_ids: &[i64]) -> DomainResult<()> {
    if job_ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<(i64, String, Option<String>, Option<String>)> = jobs::Entity::find()
        .select_only()
        .column(jobs::Column::Id)
        .column(jobs::Column::Step)
        .column(jobs::Column::AudioBlobId)
        .column(jobs::Column::TranscriptBlobId)
        .filter(jobs::Column::UserId.eq(user_id))
        .filter(jobs::Column::Id.is_in(job_ids.iter().copied()))
        .into_tuple()
        .all(&d.db)
        .await?;
    if let Some((id, ..)) = rows
        .iter()
        .find(|(_, step, ..)| !FINISHED_STEPS.contains(&step.as_str()))
    {
        return Err(DomainError::Invalid(format!(
            "The job with id {id} is currently still running. Only finished jobs can be deleted!"
        )));
    }
    let ids: Vec<i64> = rows.iter().map(|(id, ..)| *id).collect();
    // A finished job never becomes unfinished again, so the check above still
    // holds; the step condition only guards against surprises.
    jobs::Entity::delete_many()
        .filter(jobs::Column::UserId.eq(user_id))
        .filter(jobs::Column::Id.is_in(ids.iter().copied()))
        .filter(jobs::Column::Step.is_in(FINISHED_STEPS))
        .exec(&d.db)
        .await?;
    for (id, _, audio, transcript) in rows {
        for blob in [audio, transcript].into_iter().flatten() {
            delete_blob(d, &blob).await;
        }
        d.events.publish(JobEvent::deleted(user_id, id)).await;
    }
    tracing::info!(user_id, jobs = ?ids, "jobs deleted");
    Ok(())
}

/// Deletes a user together with every job of theirs, whatever its state
/// (SPEC §3.11): queued jobs leave the queue, runners holding one are freed
/// (a runner in progress then hears `job_assigned: false` and its result is
/// refused), the audio and transcripts are deleted, and scheduling carries on
/// with the freed runners. Tokens, settings and the rest cascade with the row.
pub(crate) async fn delete_user_and_jobs(d: &Domain, user_id: i64) -> DomainResult<()> {
    let (rows, freed) = {
        let (_guard, txn) = begin_write(d).await?;
        let mut query = jobs::Entity::find()
            .select_only()
            .column(jobs::Column::Id)
            .column(jobs::Column::AudioBlobId)
            .column(jobs::Column::TranscriptBlobId)
            .filter(jobs::Column::UserId.eq(user_id));
        if txn.get_database_backend() == DbBackend::Postgres {
            // Waits for an assignment in flight, and keeps the scheduler
            // (SKIP LOCKED) away from these jobs until they are gone.
            query = query.lock(LockType::Update);
        }
        let rows: Vec<(i64, Option<String>, Option<String>)> = query.into_tuple().all(&txn).await?;
        let freed = if rows.is_empty() {
            0
        } else {
            runner_sessions::Entity::update_many()
                .col_expr(
                    runner_sessions::Column::JobId,
                    Expr::value(Option::<i64>::None),
                )
                .col_expr(runner_sessions::Column::JobInProgress, Expr::value(false))
                .filter(runner_sessions::Column::JobId.is_in(rows.iter().map(|(id, ..)| *id)))
                .exec(&txn)
                .await?
                .rows_affected
        };
        users::Entity::delete_by_id(user_id).exec(&txn).await?;
        let messages = rows
            .iter()
            .map(|(id, ..)| Message::Job(JobEvent::deleted(user_id, *id)))
            .collect();
        d.events.commit_and_send(txn, messages).await?;
        crate::tokens::credentials_changed(d, user_id).await;
        (rows, freed)
    };
    for (_, audio, transcript) in rows {
        for blob in [audio, transcript].into_iter().flatten() {
            delete_blob(d, &blob).await;
        }
    }
    if freed > 0 {
        scheduling::schedule(d).await?;
    }
    Ok(())
}

/// Removes a blob whose job row is gone. A failure only leaves an unreferenced
/// blob (logged), never a job without its data, so it doesn't fail the request.
pub(crate) async fn delete_blob(d: &Domain, blob: &str) {
    let result = match BlobId::parse(blob) {
        Ok(id) => d.blobs.delete(&id).await.map(|_| ()),
        Err(err) => Err(err),
    };
    if let Err(err) = result {
        tracing::warn!(blob, error = %err, "could not delete a job's blob");
    }
}
