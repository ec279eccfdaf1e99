//! Submitting a job (SPEC §3.5 `submit_job`): the audio is already streamed
//! into a blob by the caller; this records the job and queues it.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, Set};

use super::settings::{self, JobSettings};
use crate::entities::jobs;
use crate::error::{DomainError, DomainResult};
use crate::events::JobEvent;
use crate::scheduling::{self, step};
use crate::storage::{BlobInfo, BlobWriter};
use crate::Domain;

/// The settings a new job runs with: `settings_id` if it is the user's (400
/// otherwise, worded like Project-W), else the user's default, else the
/// application defaults.
pub async fn settings_for_submission(
    d: &Domain,
    user_id: i64,
    settings_id: Option<i64>,
) -> DomainResult<JobSettings> {
    match settings_id {
        Some(id) => settings::settings_of_user(d, user_id, id).await,
        None => settings::default_settings(d, user_id).await,
    }
}

/// What the upload told us about the file.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub file_name: String,
    /// The part's own `audio/*` or `video/*` type, served back to the runner.
    pub content_type: String,
    pub settings: JobSettings,
}

/// Whether a part's content type may be submitted: its main type is `audio` or
/// `video` (Project-W compares only that).
pub fn is_accepted_media_type(content_type: &str) -> bool {
    let main = content_type.split('/').next().unwrap_or_default().trim();
    main.eq_ignore_ascii_case("audio") || main.eq_ignore_ascii_case("video")
}

/// Finishes the audio blob, records the job as queued (`pending_runner`),
/// announces `job_created` and lets the scheduler assign it. A failure on the
/// way removes the blob, so an aborted submission leaves nothing behind.
pub async fn create_job(
    d: &Domain,
    user_id: i64,
    job: NewJob,
    audio: Box<dyn BlobWriter>,
) -> DomainResult<i64> {
    let blob = audio.finish().await?;
    let id = match insert_job(d, user_id, &job, &blob).await {
        Ok(id) => id,
        Err(err) => {
            if let Err(cleanup) = d.blobs.delete(&blob.id).await {
                tracing::warn!(blob = %blob.id, error = %cleanup, "could not remove the audio of a failed submission");
            }
            return Err(err);
        }
    };
    d.events.publish(JobEvent::created(user_id, id)).await;
    tracing::info!(user_id, job_id = id, size = blob.size, "job submitted");
    // The job is safely queued: a scheduling failure must not fail the
    // submission (the next scheduling event picks the job up).
    if let Err(err) = scheduling::schedule(d).await {
        tracing::error!(job_id = id, error = %err, "scheduling after a submission failed");
    }
    Ok(id)
}

async fn insert_job(d: &Domain, user_id: i64, job: &NewJob, blob: &BlobInfo) -> DomainResult<i64> {
    let settings = serde_json::to_string(&job.settings)
        .map_err(|err| DomainError::internal("serialise job settings", err))?;
    let size = i64::try_from(blob.size)
        .map_err(|err| DomainError::internal("audio size out of range", err))?;
    let row = jobs::ActiveModel {
        user_id: Set(user_id),
        file_name: Set(job.file_name.clone()),
        content_type: Set(job.content_type.clone()),
        audio_blob_id: Set(Some(blob.id.as_str().to_owned())),
        audio_size: Set(size),
        settings: Set(settings),
        step: Set(step::PENDING_RUNNER.to_owned()),
        progress: Set(0.0),
        abort_requested: Set(false),
        error_msg: Set(None),
        transcript_blob_id: Set(None),
        runner_id: Set(None),
        runner_name: Set(None),
        runner_version: Set(None),
        runner_git_hash: Set(None),
        runner_source_code_url: Set(None),
        creation_timestamp: Set(Utc::now()),
        finish_timestamp: Set(None),
        ..Default::default()
    }
    .insert(&d.db)
    .await?;
    Ok(row.id)
}

#[cfg(test)]
mod tests {
    use super::is_accepted_media_type;

    #[test]
    fn only_audio_and_video_main_types_are_accepted() {
        for ok in [
            "audio/mpeg",
            "video/mp4",
            "Audio/wav",
            "audio/x-foo; codecs=1",
        ] {
            assert!(is_accepted_media_type(ok), "{ok}");
        }
        for bad in ["text/plain", "application/octet-stream", "", "audiox/foo"] {
            assert!(!is_accepted_media_type(bad), "{bad}");
        }
    }
}
