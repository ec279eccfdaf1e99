//! Deleting finished jobs after `cleanup.finished_job_retention_in_days`
//! (SPEC §3.8 "Cleanup", §3.10): success, failed and downloaded jobs whose
//! `finish_timestamp` is older than the retention go, with their audio and
//! transcript blobs, and each owner's event stream gets `job_deleted`.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::deletion::delete_blob;
use super::queries::FINISHED_STEPS;
use crate::entities::jobs;
use crate::error::DomainResult;
use crate::events::JobEvent;
use crate::Domain;

/// Rows per round trip, so that a large backlog never loads at once.
const BATCH: u64 = 500;

/// Applies the configured retention; `0` when it is not set (cleanup off).
pub async fn purge_finished_jobs(d: &Domain) -> DomainResult<u64> {
    match d.config.cleanup.finished_job_retention_in_days {
        Some(days) => {
            let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
            purge_jobs_finished_before(d, cutoff).await
        }
        None => Ok(0),
    }
}

/// Deletes every finished job whose `finish_timestamp` is before `cutoff`;
/// returns how many rows went. Safe in several replicas at once: a row that
/// another replica deleted first is simply not deleted again (its blobs'
/// deletion is idempotent, and at worst its owner gets a second
/// `job_deleted`, which a client treats the same).
pub async fn purge_jobs_finished_before(d: &Domain, cutoff: DateTime<Utc>) -> DomainResult<u64> {
    let mut total = 0;
    loop {
        let rows: Vec<(i64, i64, Option<String>, Option<String>)> = jobs::Entity::find()
            .select_only()
            .column(jobs::Column::Id)
            .column(jobs::Column::UserId)
            .column(jobs::Column::AudioBlobId)
            .column(jobs::Column::TranscriptBlobId)
            .filter(jobs::Column::Step.is_in(FINISHED_STEPS))
            .filter(jobs::Column::FinishTimestamp.lt(cutoff))
            .order_by_asc(jobs::Column::Id)
            .limit(BATCH)
            .into_tuple()
            .all(&d.db)
            .await?;
        if rows.is_empty() {
            break;
        }
        let ids: Vec<i64> = rows.iter().map(|(id, ..)| *id).collect();
        // The conditions again: a finished job never changes back, but the
        // row must still be finished and old when it is deleted.
        let deleted = jobs::Entity::delete_many()
            .filter(jobs::Column::Id.is_in(ids.iter().copied()))
            .filter(jobs::Column::Step.is_in(FINISHED_STEPS))
            .filter(jobs::Column::FinishTimestamp.lt(cutoff))
            .exec(&d.db)
            .await?;
        total += deleted.rows_affected;
        // Blobs after the rows: a failure leaves an unreferenced blob (logged),
        // never a job without its data.
        for (id, user_id, audio, transcript) in &rows {
            for blob in [audio, transcript].into_iter().flatten() {
                delete_blob(d, blob).await;
            }
            d.events.publish(JobEvent::deleted(*user_id, *id)).await;
        }
        if (rows.len() as u64) < BATCH {
            break;
        }
    }
    if total > 0 {
        tracing::info!(jobs = total, %cutoff, "deleted finished jobs past their retention");
    }
    Ok(total)
}
