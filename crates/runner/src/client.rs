//! A typed client for the runner protocol (SPEC §3.6, Project-W v0.6.0's
//! `/api/runners/*`). Every call sends `Authorization: Bearer <runner token>`;
//! the online routes add `?session_token=`.

use std::path::Path;
use std::time::Duration;

use reqwest::{header, Client, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::config::Secret;

/// What a protocol call can fail with. The status codes the daemon reacts to get
/// their own variants.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The backend could not be reached, or the connection broke: retry later.
    #[error("network error: {0}")]
    Network(#[source] reqwest::Error),
    /// 401: the runner token is unknown (invalidated by an admin).
    #[error("the backend does not know this runner token (401): {0}")]
    Unauthorized(String),
    /// 403: not online / wrong session (backend restarted or we were reaped), or
    /// already online on `register`.
    #[error("forbidden (403): {0}")]
    Forbidden(String),
    /// Any other non-success status.
    #[error("unexpected status {status}: {detail}")]
    Status { status: StatusCode, detail: String },
    /// A success answer that isn't what the contract promises.
    #[error("invalid response: {0}")]
    Invalid(String),
    /// Writing the audio to disk failed.
    #[error("writing the audio file: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// Worth retrying unchanged: the backend may come back.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network(_) => true,
            Self::Status { status, .. } => status.is_server_error(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RegisterRequest {
    pub name: String,
    pub version: String,
    pub git_hash: String,
    pub source_code_url: String,
    pub priority: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RegisteredResponse {
    pub id: i64,
    pub session_token: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatRequest {
    pub progress: f64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub abort: bool,
    pub job_assigned: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobInfo {
    pub id: i64,
    /// The job's settings, passed through as-is (Project-W's `JobSettingsResponse`).
    pub settings: serde_json::Value,
}

/// A transcript in every format Project-W's runner produces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Transcript {
    pub as_txt: String,
    pub as_srt: String,
    pub as_tsv: String,
    pub as_vtt: String,
    pub as_json: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum JobResult {
    Transcript(Transcript),
    ErrorMsg(String),
}

/// The downloaded audio: where it is, how big, and its `audio/*` or `video/*` type.
#[derive(Debug, Clone)]
pub struct Audio {
    pub size: u64,
    pub content_type: String,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    detail: serde_json::Value,
}

/// The protocol client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RunnerClient {
    base: String,
    token: Secret,
    /// Short calls: a hung request must not stall the heartbeat for long.
    api: Client,
    /// The audio download: no total deadline (files can be large), but a stalled
    /// connection still fails.
    download: Client,
}

/// Bound for every call but the audio download.
const API_TIMEOUT: Duration = Duration::from_secs(30);

impl RunnerClient {
    /// `backend_url` without a trailing slash.
    pub fn new(backend_url: &str, token: Secret) -> Result<Self, ClientError> {
        let agent = concat!("scribe-runner/", env!("CARGO_PKG_VERSION"));
        let api = Client::builder()
            .user_agent(agent)
            .connect_timeout(Duration::from_secs(10))
            .timeout(API_TIMEOUT)
            .build()
            .map_err(ClientError::Network)?;
        let download = Client::builder()
            .user_agent(agent)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(ClientError::Network)?;
        Ok(Self {
            base: backend_url.trim_end_matches('/').to_owned(),
            token,
            api,
            download,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authed(&self, builder: RequestBuilder) -> RequestBuilder {
        builder.header(
            header::AUTHORIZATION,
            format!("Bearer {}", self.token.expose()),
        )
    }

    fn online(&self, builder: RequestBuilder, session: &str) -> RequestBuilder {
        self.authed(builder).query(&[("session_token", session)])
    }

    /// `GET /api/about`, no auth: checks that the URL points at a backend.
    pub async fn about(&self) -> Result<serde_json::Value, ClientError> {
        json(self.api.get(self.url("/api/about"))).await
    }

    pub async fn register(
        &self,
        request: &RegisterRequest,
    ) -> Result<RegisteredResponse, ClientError> {
        json(
            self.authed(self.api.post(self.url("/api/runners/register")))
                .json(request),
        )
        .await
    }

    /// Takes only the runner token: works whether or not we are online.
    pub async fn unregister(&self) -> Result<(), ClientError> {
        json::<serde_json::Value>(self.authed(self.api.post(self.url("/api/runners/unregister"))))
            .await
            .map(drop)
    }

    pub async fn heartbeat(
        &self,
        session: &str,
        progress: f64,
    ) -> Result<HeartbeatResponse, ClientError> {
        json(
            self.online(self.api.post(self.url("/api/runners/heartbeat")), session)
                .json(&HeartbeatRequest { progress }),
        )
        .await
    }

    pub async fn retrieve_job_info(&self, session: &str) -> Result<JobInfo, ClientError> {
        json(self.online(
            self.api.get(self.url("/api/runners/retrieve_job_info")),
            session,
        ))
        .await
    }

    /// Streams the job's audio into `path`, chunk by chunk, never holding the whole
    /// file in memory. Like Project-W's runner, only `audio/*` and `video/*` are taken.
    pub async fn retrieve_job_audio(
        &self,
        session: &str,
        path: &Path,
    ) -> Result<Audio, ClientError> {
        let response = checked(
            self.online(
                self.download
                    .post(self.url("/api/runners/retrieve_job_audio")),
                session,
            )
            .send()
            .await
            .map_err(ClientError::Network)?,
        )
        .await?;
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let main_type = content_type.split('/').next().unwrap_or_default().trim();
        if main_type != "audio" && main_type != "video" {
            return Err(ClientError::Invalid(format!(
                "the audio has content type {content_type:?}, neither audio/* nor video/*"
            )));
        }
        let mut file = tokio::fs::File::create(path).await?;
        let mut response = response;
        let mut size = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(ClientError::Network)? {
            file.write_all(&chunk).await?;
            size += chunk.len() as u64;
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok(Audio { size, content_type })
    }

    pub async fn submit_job_result(
        &self,
        session: &str,
        result: &JobResult,
    ) -> Result<(), ClientError> {
        json::<serde_json::Value>(
            self.online(
                self.api.post(self.url("/api/runners/submit_job_result")),
                session,
            )
            .json(result),
        )
        .await
        .map(drop)
    }
}

async fn json<T: DeserializeOwned>(request: RequestBuilder) -> Result<T, ClientError> {
    let response = checked(request.send().await.map_err(ClientError::Network)?).await?;
    // Project-W's runner insists on exactly this content type.
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type != "application/json" {
        return Err(ClientError::Invalid(format!(
            "expected application/json, got {content_type:?}"
        )));
    }
    let bytes = response.bytes().await.map_err(ClientError::Network)?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Invalid(e.to_string()))
}

/// Passes a success through; turns anything else into the matching error, with the
/// backend's `detail` when it sent one.
async fn checked(response: Response) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await.unwrap_or_default();
    let detail = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(ErrorBody {
            detail: serde_json::Value::String(s),
        }) => s,
        Ok(ErrorBody { detail }) => detail.to_string(),
        Err(_) => String::from_utf8_lossy(&body).chars().take(300).collect(),
    };
    Err(match status {
        StatusCode::UNAUTHORIZED => ClientError::Unauthorized(detail),
        StatusCode::FORBIDDEN => ClientError::Forbidden(detail),
        status => ClientError::Status { status, detail },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn results_serialise_as_the_contract_says() {
        let error = JobResult::ErrorMsg("job was aborted".into());
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"error_msg": "job was aborted"})
        );
        let transcript = JobResult::Transcript(Transcript {
            as_txt: "t".into(),
            as_srt: "s".into(),
            as_tsv: "v".into(),
            as_vtt: "w".into(),
            as_json: serde_json::Map::new(),
        });
        assert_eq!(
            serde_json::to_value(&transcript).unwrap(),
            json!({"transcript": {"as_txt": "t", "as_srt": "s", "as_tsv": "v", "as_vtt": "w", "as_json": {}}})
        );
    }
}
