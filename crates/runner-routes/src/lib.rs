//! `/api/runners/*`: the runner protocol (SPEC §3.6). Handlers are thin: the
//! credentials arrive as [`auth::Runner`] / [`auth::OnlineRunner`], the work
//! is done by `scribe_domain::runners`.

use actix_web::web::Bytes;
use actix_web::{get, post, web, HttpResponse};
use futures_util::StreamExt;
use scribe_domain::jobs::settings::JobSettings;
use scribe_domain::runners::{self, JobResult, Registration};
use scribe_domain::{DomainError, Violation};
use scribe_http::openapi::{ErrorResponse, ValidationErrors};
use scribe_http::{ApiError, ApiResult, AppState, Json};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::ToSchema;
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

pub mod auth;

use auth::{OnlineRunner, Runner, SessionTokenQuery};

/// Registers this crate's routes (relative to `/api`) with their OpenAPI docs.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/runners")
            .service(register)
            .service(unregister)
            .service(retrieve_job_info)
            .service(retrieve_job_audio)
            .service(submit_job_result)
            .service(heartbeat),
    );
}

/// 401 for a missing or unknown runner token.
#[derive(utoipa::IntoResponses)]
pub enum RunnerAuthErrors {
    /// Missing or unknown runner token.
    #[response(status = 401, headers(("WWW-Authenticate" = String)))]
    Unauthenticated(ErrorResponse),
}

/// 401 as above; 403 when the runner isn't online or the session token is wrong.
#[derive(utoipa::IntoResponses)]
pub enum OnlineRunnerErrors {
    #[response(status = 401, headers(("WWW-Authenticate" = String)))]
    Unauthenticated(ErrorResponse),
    /// Not online, or a wrong session token.
    #[response(status = 403)]
    Forbidden(ErrorResponse),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RunnerRegisterRequest {
    #[schema(max_length = 40)]
    pub name: String,
    pub version: String,
    #[schema(max_length = 40)]
    pub git_hash: String,
    pub source_code_url: String,
    #[schema(exclusive_minimum = 0)]
    pub priority: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredResponse {
    pub id: i64,
    pub session_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct HeartbeatRequest {
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 100.0, default = 0.0)]
    pub progress: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatResponse {
    pub abort: bool,
    pub job_assigned: bool,
}

fn job_settings_schema() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name("JobSettingsResponse"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunnerJobInfoResponse {
    pub id: i64,
    #[schema(schema_with = job_settings_schema)]
    pub settings: JobSettings,
}

/// A finished transcript in every format Project-W's runner produces.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Transcript {
    pub as_txt: String,
    pub as_srt: String,
    pub as_tsv: String,
    pub as_vtt: String,
    #[schema(value_type = Object)]
    pub as_json: serde_json::Map<String, serde_json::Value>,
}

/// Either an error message or a transcript; the error wins if both are sent.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RunnerSubmitResultRequest {
    #[serde(default)]
    pub error_msg: Option<String>,
    #[serde(default)]
    pub transcript: Option<Transcript>,
}

fn violation(field: &str, msg: &str, kind: &str) -> ApiError {
    ApiError::from(DomainError::Validation(vec![Violation::new(
        ["body".into(), field.into()],
        msg,
        kind,
    )]))
}

impl RunnerRegisterRequest {
    fn validate(self) -> ApiResult<Registration> {
        if self.name.chars().count() > 40 {
            return Err(violation(
                "name",
                "String should have at most 40 characters",
                "string_too_long",
            ));
        }
        if self.git_hash.chars().count() > 40 {
            return Err(violation(
                "git_hash",
                "String should have at most 40 characters",
                "string_too_long",
            ));
        }
        if self.priority <= 0 {
            return Err(violation(
                "priority",
                "Input should be greater than 0",
                "greater_than",
            ));
        }
        Ok(Registration {
            name: self.name,
            version: self.version,
            git_hash: self.git_hash,
            source_code_url: self.source_code_url,
            priority: self.priority,
        })
    }
}

/// Registers the runner as online and returns its session token. From now on
/// it must send a heartbeat at least every 60 seconds.
#[utoipa::path(
    tag = "runners",
    operation_id = "runners-register",
    request_body = RunnerRegisterRequest,
    responses(
        (status = 200, body = RegisteredResponse, content_type = "application/json"),
        RunnerAuthErrors,
        (status = 403, description = "This runner is already online", body = ErrorResponse),
        ValidationErrors
    ),
    security(("Auth & runner token" = []))
)]
#[post("/register")]
async fn register(
    state: web::Data<AppState>,
    runner: Runner,
    body: Json<RunnerRegisterRequest>,
) -> ApiResult<web::Json<RegisteredResponse>> {
    let registration = body.into_inner().validate()?;
    let session_token = runners::register(&state.domain, runner.id, registration).await?;
    Ok(web::Json(RegisteredResponse {
        id: runner.id,
        session_token,
    }))
}

/// Takes the runner offline (whether or not it is online); a job it held goes
/// back to the queue.
#[utoipa::path(
    tag = "runners",
    operation_id = "runners-unregister",
    responses(
        (status = 200, body = String, content_type = "application/json"),
        RunnerAuthErrors
    ),
    security(("Auth & runner token" = []))
)]
#[post("/unregister")]
async fn unregister(
    state: web::Data<AppState>,
    runner: Runner,
) -> ApiResult<web::Json<&'static str>> {
    runners::unregister(&state.domain, runner.id).await?;
    Ok(web::Json("Success"))
}

/// The id and settings of the job assigned to this runner. Call it before
/// `retrieve_job_audio`; it doesn't mark the job in progress.
#[utoipa::path(
    tag = "runners",
    operation_id = "runners-retrieve_job_info",
    params(SessionTokenQuery),
    responses(
        (status = 200, body = RunnerJobInfoResponse, content_type = "application/json"),
        (status = 400, description = "No job assigned", body = ErrorResponse),
        OnlineRunnerErrors,
        (status = 405, description = "The job was aborted", body = ErrorResponse),
        ValidationErrors
    ),
    security(("Auth & runner token" = []))
)]
#[get("/retrieve_job_info")]
async fn retrieve_job_info(
    state: web::Data<AppState>,
    runner: OnlineRunner,
) -> ApiResult<web::Json<RunnerJobInfoResponse>> {
    let (id, settings) = runners::job_info(&state.domain, &runner.session).await?;
    Ok(web::Json(RunnerJobInfoResponse { id, settings }))
}

/// Streams the audio of the assigned job, with the content type it was
/// uploaded with, and marks the job in progress.
#[utoipa::path(
    tag = "runners",
    operation_id = "runners-retrieve_job_audio",
    params(SessionTokenQuery),
    responses(
        (status = 200, description = "The audio bytes", content(
            (Object = "application/json"),
            (Vec<u8> = "audio/*"),
            (Vec<u8> = "video/*")
        )),
        (status = 400, description = "No job assigned", body = ErrorResponse),
        OnlineRunnerErrors,
        (status = 405, description = "The job was aborted", body = ErrorResponse),
        ValidationErrors
    ),
    security(("Auth & runner token" = []))
)]
#[post("/retrieve_job_audio")]
async fn retrieve_job_audio(
    state: web::Data<AppState>,
    runner: OnlineRunner,
) -> ApiResult<HttpResponse> {
    let audio = runners::job_audio(&state.domain, &runner.session).await?;
    let body = audio.stream.map(|chunk| {
        chunk
            .map(Bytes::from)
            .map_err(|err| actix_web::Error::from(ApiError::from(err)))
    });
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::CONTENT_TYPE,
            audio.content_type.as_str(),
        ))
        .streaming(body))
}

/// Hands in the result of the job this runner is processing: an error
/// message or the transcript. Frees the runner for the next job.
#[utoipa::path(
    tag = "runners",
    operation_id = "runners-submit_job_result",
    params(SessionTokenQuery),
    request_body = RunnerSubmitResultRequest,
    responses(
        (status = 200, body = String, content_type = "application/json"),
        (status = 400, description = "Runner not processing a job", body = ErrorResponse),
        OnlineRunnerErrors,
        ValidationErrors
    ),
    security(("Auth & runner token" = []))
)]
#[post("/submit_job_result")]
async fn submit_job_result(
    state: web::Data<AppState>,
    runner: OnlineRunner,
    body: Json<RunnerSubmitResultRequest>,
) -> ApiResult<web::Json<&'static str>> {
    let body = body.into_inner();
    let result = match (body.error_msg, body.transcript) {
        (Some(message), _) => JobResult::Failed(message),
        (None, Some(t)) => JobResult::Succeeded(runners::Transcript {
            as_txt: t.as_txt,
            as_srt: t.as_srt,
            as_tsv: t.as_tsv,
            as_vtt: t.as_vtt,
            as_json: t.as_json,
        }),
        (None, None) => {
            return Err(ApiError::from(DomainError::Validation(vec![
                Violation::new(
                    ["body".into()],
                    "Value error, either error_msg or transcript must be set",
                    "value_error",
                ),
            ])))
        }
    };
    runners::submit_result(&state.domain, &runner.session, result).await?;
    Ok(web::Json("Success"))
}

/// Keeps the runner online and tells it whether it has a job and whether
/// that job was aborted; reports the runner's progress.
#[utoipa::path(
    tag = "runners",
    operation_id = "runners-heartbeat",
    params(SessionTokenQuery),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, body = HeartbeatResponse, content_type = "application/json"),
        OnlineRunnerErrors,
        ValidationErrors
    ),
    security(("Auth & runner token" = []))
)]
#[post("/heartbeat")]
async fn heartbeat(
    state: web::Data<AppState>,
    runner: OnlineRunner,
    body: Json<HeartbeatRequest>,
) -> ApiResult<web::Json<HeartbeatResponse>> {
    let progress = body.progress;
    if !(0.0..=100.0).contains(&progress) || progress.is_nan() {
        return Err(violation(
            "progress",
            "Input should be between 0 and 100",
            "value_error",
        ));
    }
    let beat = runners::heartbeat(&state.domain, &runner.session, progress).await?;
    Ok(web::Json(HeartbeatResponse {
        abort: beat.abort,
        job_assigned: beat.job_assigned,
    }))
}
