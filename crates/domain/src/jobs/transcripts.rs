//! Downloading transcripts (SPEC §3.5 `download_transcript`).
//!
//! # Stored format
//! A finished job's transcript is ONE encrypted blob (`jobs.transcript_blob_id`)
//! holding the UTF-8 JSON of [`TranscriptDocument`]:
//! `{"as_txt": str, "as_srt": str, "as_tsv": str, "as_vtt": str, "as_json": object}`,
//! exactly what the runner sent in `submit_job_result`'s `transcript`.
//! [`store_transcript`] writes it that way (the runner side uses it), and
//! [`download_transcript`] reads it back.

use futures_util::StreamExt;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};

use crate::entities::jobs;
use crate::error::{DomainError, DomainResult};
use crate::events::JobEvent;
use crate::scheduling::step;
use crate::storage::{BlobId, BlobInfo};
use crate::Domain;

/// The five formats of one transcript, as stored (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptDocument {
    pub as_txt: String,
    pub as_srt: String,
    pub as_tsv: String,
    pub as_vtt: String,
    pub as_json: serde_json::Value,
}

/// Which format `download_transcript` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscriptType {
    Txt,
    Srt,
    Tsv,
    Vtt,
    Json,
}

impl TranscriptType {
    pub const ALL: [TranscriptType; 5] = [
        TranscriptType::Txt,
        TranscriptType::Srt,
        TranscriptType::Tsv,
        TranscriptType::Vtt,
        TranscriptType::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TranscriptType::Txt => "as_txt",
            TranscriptType::Srt => "as_srt",
            TranscriptType::Tsv => "as_tsv",
            TranscriptType::Vtt => "as_vtt",
            TranscriptType::Json => "as_json",
        }
    }
}

/// The documentation anchor for the stored transcript format shared with the
/// runner side: one blob, the JSON of [`TranscriptDocument`].
pub fn transcript_blob_format() -> &'static str {
    r#"{"as_txt": str, "as_srt": str, "as_tsv": str, "as_vtt": str, "as_json": object}"#
}

/// Encrypts `document` into a new blob in the format of the module docs and
/// returns it; the caller records its id in `jobs.transcript_blob_id` (and
/// deletes the blob if that fails).
pub async fn store_transcript(d: &Domain, document: &TranscriptDocument) -> DomainResult<BlobInfo> {
    let bytes = serde_json::to_vec(document)
        .map_err(|err| DomainError::internal("serialise transcript", err))?;
    let mut writer = d.blobs.create().await?;
    if let Err(err) = writer.write(&bytes).await {
        let _ = writer.abort().await;
        return Err(err);
    }
    writer.finish().await
}

/// The transcript of the user's successful job `job_id` in `kind`, as a string
/// (`as_json`: the serialised document). Marks the job downloaded and sends
/// `job_updated`, every time. Unknown, foreign, unfinished or failed jobs all
/// get Project-W's 400.
pub async fn download_transcript(
    d: &Domain,
    user_id: i64,
    job_id: i64,
    kind: TranscriptType,
) -> DomainResult<String> {
    let not_found = || {
        DomainError::Invalid(format!(
            "No job with id {job_id} found or job isn't finished yet"
        ))
    };
    let blob: Option<Option<String>> = jobs::Entity::find_by_id(job_id)
        .select_only()
        .column(jobs::Column::TranscriptBlobId)
        .filter(jobs::Column::UserId.eq(user_id))
        .filter(jobs::Column::Step.is_in([step::SUCCESS, step::DOWNLOADED]))
        .into_tuple()
        .one(&d.db)
        .await?;
    let Some(Some(blob)) = blob else {
        return Err(not_found());
    };
    let document = read_document(d, &blob).await?;
    let text = match kind {
        TranscriptType::Txt => document.as_txt,
        TranscriptType::Srt => document.as_srt,
        TranscriptType::Tsv => document.as_tsv,
        TranscriptType::Vtt => document.as_vtt,
        TranscriptType::Json => serde_json::to_string(&document.as_json)
            .map_err(|err| DomainError::internal("serialise transcript", err))?,
    };
    jobs::Entity::update_many()
        .col_expr(jobs::Column::Step, Expr::value(step::DOWNLOADED))
        .filter(jobs::Column::Id.eq(job_id))
        .filter(jobs::Column::Step.eq(step::SUCCESS))
        .exec(&d.db)
        .await?;
    d.events.publish(JobEvent::updated(user_id, job_id)).await;
    Ok(text)
}

async fn read_document(d: &Domain, blob: &str) -> DomainResult<TranscriptDocument> {
    let id = BlobId::parse(blob)?;
    let mut stream = d.blobs.read(&id).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| DomainError::internal(&format!("transcript blob {blob} is unreadable"), err))
}
