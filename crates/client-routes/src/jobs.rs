//! `jobs` tag: transcription jobs and their settings (SPEC §3.5). Every route needs a
//! verified email and the current terms of service accepted (`ActiveUser`), except
//! `default_settings`, which any signed-in user may read (as in Project-W).

use std::convert::Infallible;
use std::time::Duration;

use actix_multipart::{Field, Multipart};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use scribe_domain::events::Delivery;
use scribe_domain::jobs::deletion;
use scribe_domain::jobs::queries::{self, JobFilter, JobInfo, JobStep};
use scribe_domain::jobs::settings::{self, JobSettings};
use scribe_domain::jobs::submission::{self, NewJob};
use scribe_domain::jobs::transcripts::{self, TranscriptType};
use scribe_domain::{scheduling, Violation};
use scribe_http::auth::{ActiveUser, AnyUser};
use scribe_http::error::ApiError;
use scribe_http::openapi::{AuthErrors, ErrorResponse, ValidationErrors};
use scribe_http::timestamps;
use scribe_http::{ApiResult, AppState, Json, Query};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/jobs")
            .service(submit_settings)
            .service(default_settings)
            .service(submit_job)
            .service(count)
            .service(WithSchemas(get_jobs, schema_entry::<JobSortKey>))
            .service(info)
            .service(abort)
            .service(delete_jobs)
            .service(WithSchemas(
                download_transcript,
                schema_entry::<TranscriptTypeEnum>,
            ))
            .service(events),
    );
}

type SchemaList = Vec<(String, RefOr<Schema>)>;

/// A route whose query parameters use named enum schemas. utoipa references
/// them from the parameters but registers only body and response schemas,
/// so this adds them to the document's components (the contract names them).
struct WithSchemas<S>(S, fn(&mut SchemaList));

impl<S: actix_web::dev::HttpServiceFactory> actix_web::dev::HttpServiceFactory for WithSchemas<S> {
    fn register(self, config: &mut actix_web::dev::AppService) {
        self.0.register(config);
    }
}

impl<S: utoipa_actix_web::OpenApiFactory> utoipa_actix_web::OpenApiFactory for WithSchemas<S> {
    fn paths(&self) -> utoipa::openapi::path::Paths {
        self.0.paths()
    }

    fn schemas(&self, schemas: &mut SchemaList) {
        self.0.schemas(schemas);
        (self.1)(schemas);
    }
}

fn schema_entry<T: ToSchema>(schemas: &mut SchemaList) {
    schemas.push((T::name().into_owned(), T::schema()));
}

/// A wire enum over a domain enum: the same serde form, and an OpenAPI schema whose
/// values come from the domain's list, so the two can't drift apart.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $wire:ident($domain:ty)) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $wire(pub $domain);

        impl utoipa::PartialSchema for $wire {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(<$domain>::ALL.iter().map(|value| value.as_str())))
                    .into()
            }
        }

        impl ToSchema for $wire {}

        impl From<$domain> for $wire {
            fn from(value: $domain) -> Self {
                $wire(value)
            }
        }

        impl From<$wire> for $domain {
            fn from(value: $wire) -> Self {
                value.0
            }
        }
    };
}

wire_enum!(TaskEnum(settings::Task));
wire_enum!(JobModelEnum(settings::Model));
wire_enum!(JobLangEnum(settings::Language));
wire_enum!(InterpolateMethodEnum(settings::InterpolateMethod));

/// Job settings as submitted: every field may be left out and then takes Project-W's
/// default. The rules of SPEC §3.5 are checked on the result, defaults included.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(default)]
pub struct JobSettingsRequest {
    pub task: TaskEnum,
    pub model: JobModelEnum,
    /// `null`: detect the language.
    pub language: Option<JobLangEnum>,
    /// `null`: no alignment (required for `translate`).
    pub alignment: Option<AlignmentSettings>,
    /// `null`: no speaker diarization.
    pub diarization: Option<DiarizationSettings>,
    pub vad_settings: VadSettings,
    pub asr_settings: AsrSettings,
    /// Mail the user when a job with these settings finishes.
    pub email_notification: bool,
}

impl Default for JobSettingsRequest {
    fn default() -> Self {
        JobSettings::default().into()
    }
}

/// Complete job settings, as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobSettingsResponse {
    pub task: TaskEnum,
    pub model: JobModelEnum,
    #[schema(required = true)]
    pub language: Option<JobLangEnum>,
    #[schema(required = true)]
    pub alignment: Option<AlignmentSettings>,
    #[schema(required = true)]
    pub diarization: Option<DiarizationSettings>,
    pub vad_settings: VadSettings,
    pub asr_settings: AsrSettings,
    pub email_notification: bool,
}

// The nested objects have no defaults: each field, nullable ones included, is
// required whenever the object is sent (as in Project-W).

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlignmentSettings {
    pub processing: AlignmentProcessingSettings,
    pub return_char_alignments: bool,
    pub interpolate_method: InterpolateMethodEnum,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlignmentProcessingSettings {
    pub highlight_words: bool,
    /// Needs `max_line_width`.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true, minimum = 1)]
    pub max_line_count: Option<i64>,
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true, minimum = 1)]
    pub max_line_width: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiarizationSettings {
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true, minimum = 0)]
    pub min_speakers: Option<i64>,
    /// At least `min_speakers`.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true, minimum = 0)]
    pub max_speakers: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VadSettings {
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub vad_onset: f64,
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub vad_offset: f64,
    #[schema(minimum = 1, maximum = 30)]
    pub chunk_size: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AsrSettings {
    #[schema(minimum = 1)]
    pub beam_size: i64,
    #[schema(exclusive_minimum = 0.0)]
    pub patience: f64,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub length_penalty: f64,
    #[schema(minimum = 0.0)]
    pub temperature: f64,
    #[schema(minimum = 0.0)]
    pub temperature_increment_on_fallback: f64,
    #[schema(minimum = 0.0)]
    pub compression_ratio_threshold: f64,
    pub log_prob_threshold: f64,
    pub no_speech_threshold: f64,
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true, max_length = 2000)]
    pub initial_prompt: Option<String>,
    pub suppress_tokens: Vec<i64>,
    pub suppress_numerals: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitSettingsQuery {
    /// Make these settings the account's default (used by jobs submitted without a
    /// settings id).
    #[serde(default)]
    #[param(default = false)]
    pub is_new_default: bool,
}

/// Stores a set of job settings and returns its id, which `submit_job` takes as
/// `job_settings_id`. With `is_new_default` they also become the account's default.
#[utoipa::path(
    tag = "jobs",
    operation_id = "jobs-submit_settings",
    params(SubmitSettingsQuery),
    request_body = JobSettingsRequest,
    responses(
        (status = 200, body = i64, content_type = "application/json"),
        AuthErrors,
        ValidationErrors
    ),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[post("/submit_settings")]
async fn submit_settings(
    state: web::Data<AppState>,
    user: ActiveUser,
    query: Query<SubmitSettingsQuery>,
    body: Json<JobSettingsRequest>,
) -> ApiResult<web::Json<i64>> {
    let id = settings::submit_settings(
        &state.domain,
        user.user.id,
        body.into_inner().into(),
        query.is_new_default,
    )
    .await?;
    Ok(web::Json(id))
}

/// The account's default job settings: the last set submitted with
/// `is_new_default`, else the application defaults.
#[utoipa::path(
    tag = "jobs",
    operation_id = "jobs-default_settings",
    responses((status = 200, body = JobSettingsResponse), AuthErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[get("/default_settings")]
async fn default_settings(
    state: web::Data<AppState>,
    user: AnyUser,
) -> ApiResult<web::Json<JobSettingsResponse>> {
    let settings = settings::default_settings(&state.domain, user.user.id).await?;
    Ok(web::Json(settings.into()))
}

/// The multipart body of `submit_job`.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the body; the handler streams the part itself
pub struct BodyJobsSubmitJob {
    #[schema(value_type = String, content_media_type = "application/octet-stream")]
    audio_file: Vec<u8>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitJobQuery {
    /// Settings from `submit_settings`; without it the account's default
    /// settings (or the application defaults) are used.
    #[serde(default)]
    pub job_settings_id: Option<i64>,
}

/// The SSE keep-alive period: comments keep proxies from cutting idle streams.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn missing_audio_file() -> ApiError {
    ApiError::validation(vec![Violation::new(
        ["body".into(), "audio_file".into()],
        "Field required",
        "missing",
    )])
}

/// Submits a transcription job for the uploaded `audio_file` (an `audio/*` or
/// `video/*` file) with the given settings, or the account's default settings
/// without `job_settings_id`. Returns the new job's id. The file is streamed
/// to encrypted storage as it arrives.
#[utoipa::path(
    tag = "jobs",
    operation_id = "jobs-submit_job",
    params(SubmitJobQuery),
    request_body(content = BodyJobsSubmitJob, content_type = "multipart/form-data"),
    responses(
        (status = 200, body = i64, content_type = "application/json"),
        (status = 400, body = ErrorResponse, description = "The job_settings_id is not one of yours"),
        (status = 415, body = ErrorResponse, description = "The file is not an audio or video file"),
        AuthErrors,
        ValidationErrors
    ),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[post("/submit_job")]
async fn submit_job(
    state: web::Data<AppState>,
    user: ActiveUser,
    query: Query<SubmitJobQuery>,
    request: HttpRequest,
    payload: web::Payload,
) -> ApiResult<web::Json<i64>> {
    let d = &state.domain;
    let user_id = user.user.id;
    let mut multipart = Multipart::new(request.headers(), payload);
    // Parts before `audio_file` are skipped as they stream by; the first
    // `audio_file` is the upload and what follows it is never read.
    let field = loop {
        match multipart.next().await {
            Some(Ok(field)) if field.name() == Some("audio_file") => break field,
            Some(Ok(mut other)) => {
                while let Some(chunk) = other.next().await {
                    chunk.map_err(|_| missing_audio_file())?;
                }
            }
            Some(Err(_)) | None => return Err(missing_audio_file()),
        }
    };
    let content_type = field.content_type().map(|mime| mime.to_string());
    let accepted = content_type
        .as_deref()
        .is_some_and(submission::is_accepted_media_type);
    let Some(content_type) = content_type.filter(|_| accepted) else {
        let shown = field
            .content_type()
            .map_or_else(|| "None".to_owned(), |mime| mime.to_string());
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("The provided file is not an audio or video file but is of type {shown}"),
        ));
    };
    let file_name = field
        .content_disposition()
        .and_then(|disposition| disposition.get_filename())
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::validation(vec![Violation::new(
                ["body".into(), "audio_file".into()],
                "Value error, Expected UploadFile, received: <class 'str'>",
                "value_error",
            )])
        })?;
    let settings = submission::settings_for_submission(d, user_id, query.job_settings_id).await?;
    let audio = stream_into_blob(d, field).await?;
    let id = submission::create_job(
        d,
        user_id,
        NewJob {
            file_name,
            content_type,
            settings,
        },
        audio,
    )
    .await?;
    Ok(web::Json(id))
}

/// Streams the part into a new blob chunk by chunk. A cut-off upload or an
/// oversized one (413, from the store's limit) leaves nothing stored.
async fn stream_into_blob(
    d: &scribe_domain::Domain,
    mut field: Field,
) -> ApiResult<Box<dyn scribe_domain::storage::BlobWriter>> {
    let mut writer = d.blobs.create().await?;
    while let Some(chunk) = field.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => {
                tracing::info!(error = %err, "upload cut off");
                if let Err(cleanup) = writer.abort().await {
                    tracing::warn!(error = %cleanup, "could not remove a cut-off upload");
                }
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "The upload was interrupted",
                ));
            }
        };
        // After a failed write the store has already removed the blob.
        writer.write(&chunk).await?;
    }
    Ok(writer)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CountQuery {
    pub exclude_finished: bool,
    pub exclude_downloaded: bool,
}

/// How many jobs the account has. `exclude_finished` keeps only unfinished
/// jobs; otherwise `exclude_downloaded` leaves out jobs whose transcript was
/// downloaded.
#[utoipa::path(
    tag = "jobs",
    operation_id = "jobs-count",
    params(CountQuery),
    responses((status = 200, body = i64, content_type = "application/json"), AuthErrors, ValidationErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[get("/count")]
async fn count(
    state: web::Data<AppState>,
    user: ActiveUser,
    query: Query<CountQuery>,
) -> ApiResult<web::Json<u64>> {
    let filter = JobFilter {
        exclude_finished: query.exclude_finished,
        exclude_downloaded: query.exclude_downloaded,
    };
    Ok(web::Json(
        queries::count_jobs(&state.domain, user.user.id, filter).await?,
    ))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub enum JobSortKey {
    #[serde(rename = "creation_time")]
    CreationTime,
    #[serde(rename = "filename")]
    Filename,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    pub start_index: i64,
    pub end_index: i64,
    pub sort_key: JobSortKey,
    pub descending: bool,
    pub exclude_finished: bool,
    pub exclude_downloaded: bool,
}

/// Job ids sorted and filtered as asked, at positions `start_index` to
/// `end_index` (inclusive, from 0): 0 and 9 give the first ten. Jobs with equal
/// sort values share a position.
#[utoipa::path(
    tag = "jobs",
    operation_id = "jobs-get",
    params(GetQuery),
    responses((status = 200, body = Vec<i64>, content_type = "application/json"), AuthErrors, ValidationErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[get("/get")]
async fn get_jobs(
    state: web::Data<AppState>,
    user: ActiveUser,
    query: Query<GetQuery>,
) -> ApiResult<web::Json<Vec<i64>>> {
    let sort_key = match query.sort_key {
        JobSortKey::CreationTime => queries::JobSortKey::CreationTime,
        JobSortKey::Filename => queries::JobSortKey::FileName,
    };
    let filter = JobFilter {
        exclude_finished: query.exclude_finished,
        exclude_downloaded: query.exclude_downloaded,
    };
    let ids = queries::job_ids(
        &state.domain,
        user.user.id,
        query.start_index,
        query.end_index,
        sort_key,
        query.descending,
        filter,
    )
    .await?;
    Ok(web::Json(ids))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InfoQuery {
    /// Repeat the parameter for several jobs: `job_ids=1&job_ids=2`.
    pub job_ids: Vec<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    NotQueued,
    PendingRunner,
    RunnerAssigned,
    RunnerInProgress,
    Aborting,
    Success,
    Failed,
    Downloaded,
}

impl From<JobStep> for JobStatus {
    fn from(step: JobStep) -> Self {
        match step {
            JobStep::NotQueued => JobStatus::NotQueued,
            JobStep::PendingRunner => JobStatus::PendingRunner,
            JobStep::RunnerAssigned => JobStatus::RunnerAssigned,
            JobStep::RunnerInProgress => JobStatus::RunnerInProgress,
            JobStep::Aborting => JobStatus::Aborting,
            JobStep::Success => JobStatus::Success,
            JobStep::Failed => JobStatus::Failed,
            JobStep::Downloaded => JobStatus::Downloaded,
        }
    }
}

/// A job as `info` shows it (SPEC §3.5).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobInfoResponse {
    pub id: i64,
    /// The runner's last reported value while it holds the job, else 100 for
    /// finished transcripts and 0 otherwise.
    #[schema(minimum = 0.0, maximum = 100.0)]
    pub progress: f64,
    /// An abort was requested.
    pub abort: bool,
    #[serde(serialize_with = "timestamps::serialize")]
    pub creation_timestamp: DateTime<Utc>,
    pub file_name: String,
    #[serde(serialize_with = "timestamps::option::serialize")]
    #[schema(required = true)]
    pub finish_timestamp: Option<DateTime<Utc>>,
    #[schema(required = true, max_length = 40)]
    pub runner_name: Option<String>,
    #[schema(required = true)]
    pub runner_id: Option<i64>,
    #[schema(required = true)]
    pub runner_version: Option<String>,
    #[schema(required = true, max_length = 40)]
    pub runner_git_hash: Option<String>,
    #[schema(required = true)]
    pub runner_source_code_url: Option<String>,
    /// `null` until the job succeeded.
    #[schema(required = true)]
    pub downloaded: Option<bool>,
    #[schema(required = true)]
    pub error_msg: Option<String>,
    pub settings: JobSettingsResponse,
    pub step: JobStatus,
}

impl From<JobInfo> for JobInfoResponse {
    fn from(job: JobInfo) -> Self {
        JobInfoResponse {
            id: job.id,
            progress: job.progress,
            abort: job.abort,
            creation_timestamp: job.creation_timestamp,
            file_name: job.file_name,
            finish_timestamp: job.finish_timestamp,
            runner_name: job.runner_name,
            runner_id: job.runner_id,
            runner_version: job.runner_version,
            runner_git_hash: job.runner_git_hash,
            runner_source_code_url: job.runner_source_code_url,
            downloaded: job.downloaded,
            error_msg: job.error_msg,
            settings: job.settings.into(),
            step: job.step.into(),
        }
    }
}

/// Everything about the listed jobs of this account, in no particular order
/// (use `get` for an order). Ids of other accounts' jobs are left out.
#[utoipa::path(
    tag = "jobs",
    operation_id = "jobs-info",
    params(InfoQuery),
    responses((status = 200, body = Vec<JobInfoResponse>, content_type = "application/json"), AuthErrors, ValidationErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[get("/info")]
async fn info(
    state: web::Data<AppState>,
    user: ActiveUser,
    query: Query<InfoQuery>,
) -> ApiResult<web::Json<Vec<JobInfoResponse>>> {
    let jobs = queries::job_infos(&state.domain, user.user.id, &query.job_ids).await?;
    Ok(web::Json(jobs.into_iter().map(Into::into).collect()))
}

/// Aborts the listed jobs: a queued one fails at once, a running one stops.
/// 400 if any of them is already finished or aborting.
#[utoipa::path(
    tag = "jobs",
    operation_id = "jobs-abort",
    request_body = Vec<i64>,
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, body = ErrorResponse, description = "A job is already finished or aborting"),
        AuthErrors,
        ValidationErrors
    ),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[post("/abort")]
async fn abort(
    state: web::Data<AppState>,
    user: ActiveUser,
    body: Json<Vec<i64>>,
) -> ApiResult<web::Json<&'static str>> {
    scheduling::abort_jobs(&state.domain, user.user.id, &body.into_inner()).await?;
    Ok(web::Json("Success"))
}

/// Deletes finished jobs with their audio and transcripts. 400 if any of them
/// is still queued or running (abort it first).
#[utoipa::path(
    tag = "jobs",
    operation_id = "jobs-delete",
    request_body = Vec<i64>,
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, body = ErrorResponse, description = "A job is still running"),
        AuthErrors,
        ValidationErrors
    ),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[delete("/delete")]
async fn delete_jobs(
    state: web::Data<AppState>,
    user: ActiveUser,
    body: Json<Vec<i64>>,
) -> ApiResult<web::Json<&'static str>> {
    deletion::delete_jobs(&state.domain, user.user.id, &body.into_inner()).await?;
    Ok(web::Json("Success"))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptTypeEnum {
    AsTxt,
    AsSrt,
    AsTsv,
    AsVtt,
    AsJson,
}

impl From<TranscriptTypeEnum> for TranscriptType {
    fn from(wire: TranscriptTypeEnum) -> Self {
        match wire {
            TranscriptTypeEnum::AsTxt => TranscriptType::Txt,
            TranscriptTypeEnum::AsSrt => TranscriptType::Srt,
            TranscriptTypeEnum::AsTsv => TranscriptType::Tsv,
            TranscriptTypeEnum::AsVtt => TranscriptType::Vtt,
            TranscriptTypeEnum::AsJson => TranscriptType::Json,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    pub job_id: i64,
    pub transcript_type: TranscriptTypeEnum,
}

/// The transcript of a successful job in the chosen format, as a string
/// (`as_json` too: the serialised JSON document). Marks the job downloaded.
#[utoipa::path(
    tag = "jobs",
    operation_id = "jobs-download_transcript",
    params(DownloadQuery),
    responses(
        (status = 200, body = TranscriptBody, content_type = "application/json"),
        (status = 400, body = ErrorResponse, description = "No such job of yours, or it isn't finished"),
        AuthErrors,
        ValidationErrors
    ),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[get("/download_transcript")]
async fn download_transcript(
    state: web::Data<AppState>,
    user: ActiveUser,
    query: Query<DownloadQuery>,
) -> ApiResult<web::Json<String>> {
    let text = transcripts::download_transcript(
        &state.domain,
        user.user.id,
        query.job_id,
        query.transcript_type.into(),
    )
    .await?;
    Ok(web::Json(text))
}

/// Project-W's declared answer of `download_transcript`: a string or an object
/// (Scribe, like Project-W, always sends a string).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the response only
pub enum TranscriptBody {
    Text(String),
    Document(std::collections::HashMap<String, serde_json::Value>),
}

/// Server-sent events for this account's jobs: `job_created`, `job_updated`
/// and `job_deleted`, each with the job id as data, plus a keep-alive comment
/// every 15 s. The token is checked when the stream opens. The stream ends when
/// events may have been missed, so the client reconnects and reloads.
#[utoipa::path(
    tag = "jobs",
    operation_id = "jobs-events",
    responses((status = 200, body = serde_json::Value, content_type = "application/json"), AuthErrors),
    security(("Auth & runner token" = []), ("Auth token" = []))
)]
#[get("/events")]
async fn events(state: web::Data<AppState>, user: ActiveUser) -> HttpResponse {
    let subscription = state.domain.events.subscribe(user.user.id);
    let ticker = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let stream = futures_util::stream::unfold(
        (subscription, ticker),
        |(mut subscription, mut ticker)| async move {
            let message = tokio::select! {
                delivery = subscription.recv() => match delivery {
                    Some(Delivery::Event(event)) => Bytes::from(format!(
                        "event: {}\ndata: {}\n\n",
                        event.kind.name(),
                        event.job_id
                    )),
                    // Resync: events may be lost; ending the stream makes the
                    // browser's EventSource reconnect and the client refetch.
                    Some(Delivery::Resync) | None => return None,
                },
                _ = ticker.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            Some((Ok::<_, Infallible>(message), (subscription, ticker)))
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

// --- conversions between the wire and the domain ---

impl From<JobSettingsRequest> for JobSettings {
    fn from(request: JobSettingsRequest) -> Self {
        JobSettings {
            task: request.task.into(),
            model: request.model.into(),
            language: request.language.map(Into::into),
            alignment: request.alignment.map(Into::into),
            diarization: request.diarization.map(Into::into),
            vad_settings: request.vad_settings.into(),
            asr_settings: request.asr_settings.into(),
            email_notification: request.email_notification,
        }
    }
}

impl From<JobSettings> for JobSettingsRequest {
    fn from(settings: JobSettings) -> Self {
        JobSettingsRequest {
            task: settings.task.into(),
            model: settings.model.into(),
            language: settings.language.map(Into::into),
            alignment: settings.alignment.map(Into::into),
            diarization: settings.diarization.map(Into::into),
            vad_settings: settings.vad_settings.into(),
            asr_settings: settings.asr_settings.into(),
            email_notification: settings.email_notification,
        }
    }
}

impl From<JobSettings> for JobSettingsResponse {
    fn from(settings: JobSettings) -> Self {
        JobSettingsResponse {
            task: settings.task.into(),
            model: settings.model.into(),
            language: settings.language.map(Into::into),
            alignment: settings.alignment.map(Into::into),
            diarization: settings.diarization.map(Into::into),
            vad_settings: settings.vad_settings.into(),
            asr_settings: settings.asr_settings.into(),
            email_notification: settings.email_notification,
        }
    }
}

impl From<AlignmentSettings> for settings::AlignmentSettings {
    fn from(wire: AlignmentSettings) -> Self {
        settings::AlignmentSettings {
            processing: settings::AlignmentProcessingSettings {
                highlight_words: wire.processing.highlight_words,
                max_line_count: wire.processing.max_line_count,
                max_line_width: wire.processing.max_line_width,
            },
            return_char_alignments: wire.return_char_alignments,
            interpolate_method: wire.interpolate_method.into(),
        }
    }
}

impl From<settings::AlignmentSettings> for AlignmentSettings {
    fn from(domain: settings::AlignmentSettings) -> Self {
        AlignmentSettings {
            processing: AlignmentProcessingSettings {
                highlight_words: domain.processing.highlight_words,
                max_line_count: domain.processing.max_line_count,
                max_line_width: domain.processing.max_line_width,
            },
            return_char_alignments: domain.return_char_alignments,
            interpolate_method: domain.interpolate_method.into(),
        }
    }
}

impl From<DiarizationSettings> for settings::DiarizationSettings {
    fn from(wire: DiarizationSettings) -> Self {
        settings::DiarizationSettings {
            min_speakers: wire.min_speakers,
            max_speakers: wire.max_speakers,
        }
    }
}

impl From<settings::DiarizationSettings> for DiarizationSettings {
    fn from(domain: settings::DiarizationSettings) -> Self {
        DiarizationSettings {
            min_speakers: domain.min_speakers,
            max_speakers: domain.max_speakers,
        }
    }
}

impl From<VadSettings> for settings::VadSettings {
    fn from(wire: VadSettings) -> Self {
        settings::VadSettings {
            vad_onset: wire.vad_onset,
            vad_offset: wire.vad_offset,
            chunk_size: wire.chunk_size,
        }
    }
}

impl From<settings::VadSettings> for VadSettings {
    fn from(domain: settings::VadSettings) -> Self {
        VadSettings {
            vad_onset: domain.vad_onset,
            vad_offset: domain.vad_offset,
            chunk_size: domain.chunk_size,
        }
    }
}

impl From<AsrSettings> for settings::AsrSettings {
    fn from(wire: AsrSettings) -> Self {
        settings::AsrSettings {
            beam_size: wire.beam_size,
            patience: wire.patience,
            length_penalty: wire.length_penalty,
            temperature: wire.temperature,
            temperature_increment_on_fallback: wire.temperature_increment_on_fallback,
            compression_ratio_threshold: wire.compression_ratio_threshold,
            log_prob_threshold: wire.log_prob_threshold,
            no_speech_threshold: wire.no_speech_threshold,
            initial_prompt: wire.initial_prompt,
            suppress_tokens: wire.suppress_tokens,
            suppress_numerals: wire.suppress_numerals,
        }
    }
}

impl From<settings::AsrSettings> for AsrSettings {
    fn from(domain: settings::AsrSettings) -> Self {
        AsrSettings {
            beam_size: domain.beam_size,
            patience: domain.patience,
            length_penalty: domain.length_penalty,
            temperature: domain.temperature,
            temperature_increment_on_fallback: domain.temperature_increment_on_fallback,
            compression_ratio_threshold: domain.compression_ratio_threshold,
            log_prob_threshold: domain.log_prob_threshold,
            no_speech_threshold: domain.no_speech_threshold,
            initial_prompt: domain.initial_prompt,
            suppress_tokens: domain.suppress_tokens,
            suppress_numerals: domain.suppress_numerals,
        }
    }
}
