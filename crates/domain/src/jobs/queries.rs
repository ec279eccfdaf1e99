//! Reading a user's jobs (SPEC §3.5 `count`, `get`, `info`). Every query is
//! bounded by the database: `count` is one `COUNT(*)`, `get` reads only its
//! window through the `(user_id, id)` and `(user_id, file_name, id)` indexes
//! with `ORDER BY` + `LIMIT`/`OFFSET`, and `info` reads only the listed rows.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};

use super::settings::JobSettings;
use crate::entities::jobs;
use crate::error::{DomainError, DomainResult};
use crate::scheduling::step;
use crate::Domain;

/// A job's place in its lifecycle (SPEC §3.5 `step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStep {
    NotQueued,
    PendingRunner,
    RunnerAssigned,
    RunnerInProgress,
    Aborting,
    Success,
    Failed,
    Downloaded,
}

impl JobStep {
    pub const ALL: [JobStep; 8] = [
        JobStep::NotQueued,
        JobStep::PendingRunner,
        JobStep::RunnerAssigned,
        JobStep::RunnerInProgress,
        JobStep::Aborting,
        JobStep::Success,
        JobStep::Failed,
        JobStep::Downloaded,
    ];

    /// The wire and database form.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStep::NotQueued => step::NOT_QUEUED,
            JobStep::PendingRunner => step::PENDING_RUNNER,
            JobStep::RunnerAssigned => step::RUNNER_ASSIGNED,
            JobStep::RunnerInProgress => step::RUNNER_IN_PROGRESS,
            JobStep::Aborting => step::ABORTING,
            JobStep::Success => step::SUCCESS,
            JobStep::Failed => step::FAILED,
            JobStep::Downloaded => step::DOWNLOADED,
        }
    }

    pub fn parse(text: &str) -> Option<JobStep> {
        JobStep::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Finished for good: success, failed or downloaded.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStep::Success | JobStep::Failed | JobStep::Downloaded
        )
    }
}

/// The steps of finished jobs, as stored.
pub(crate) const FINISHED_STEPS: [&str; 3] = [step::SUCCESS, step::FAILED, step::DOWNLOADED];

/// The `exclude_finished` / `exclude_downloaded` pair of `count` and `get`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobFilter {
    /// Only unfinished jobs (this wins over `exclude_downloaded`).
    pub exclude_finished: bool,
    /// Drop downloaded jobs only; failed ones stay (SPEC §3.10).
    pub exclude_downloaded: bool,
}

/// The order of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSortKey {
    CreationTime,
    FileName,
}

impl JobSortKey {
    pub const ALL: [JobSortKey; 2] = [JobSortKey::CreationTime, JobSortKey::FileName];

    pub fn as_str(self) -> &'static str {
        match self {
            JobSortKey::CreationTime => "creation_time",
            JobSortKey::FileName => "filename",
        }
    }
}

fn jobs_of(user_id: i64, filter: JobFilter) -> Select<jobs::Entity> {
    let query = jobs::Entity::find().filter(jobs::Column::UserId.eq(user_id));
    if filter.exclude_finished {
        query.filter(jobs::Column::Step.is_not_in(FINISHED_STEPS))
    } else if filter.exclude_downloaded {
        query.filter(jobs::Column::Step.ne(step::DOWNLOADED))
    } else {
        query
    }
}

/// How many of the user's jobs pass the filter.
pub async fn count_jobs(d: &Domain, user_id: i64, filter: JobFilter) -> DomainResult<u64> {
    Ok(jobs_of(user_id, filter).count(&d.db).await?)
}

#[derive(Debug, FromQueryResult)]
struct IdAndName {
    id: i64,
    file_name: String,
}

/// The ids at positions `start_index..=end_index` (from 0) of the user's
/// filtered jobs in the given order.
///
/// Ranks as in Project-W: jobs with equal sort values share a rank, and a
/// group of equal values is returned whole if its last member falls in the
/// window, else not at all. Within a group jobs come by id, in the sort's
/// direction (Project-W leaves that order open; this one the index
/// `(user_id, file_name, id)` serves both ways, where a mixed direction would
/// sort all of the user's jobs on every request). Creation time is
/// ordered by id: ids are handed out in insertion order and `creation_timestamp`
/// is set at insertion, so the two agree, and `(user_id, id)` is indexed (no
/// two jobs share an id, so there are no groups).
pub async fn job_ids(
    d: &Domain,
    user_id: i64,
    start_index: i64,
    end_index: i64,
    sort_key: JobSortKey,
    descending: bool,
    filter: JobFilter,
) -> DomainResult<Vec<i64>> {
    // A negative start counts from the beginning, like Project-W's `count(*) > start`.
    let start = u64::try_from(start_index.max(0)).unwrap_or_default();
    let Ok(end) = u64::try_from(end_index) else {
        return Ok(Vec::new());
    };
    if end < start {
        return Ok(Vec::new());
    }
    let window = end - start + 1;
    let query = jobs_of(user_id, filter);
    let order = if descending {
        sea_orm::Order::Desc
    } else {
        sea_orm::Order::Asc
    };
    match sort_key {
        JobSortKey::CreationTime => Ok(query
            .select_only()
            .column(jobs::Column::Id)
            .order_by(jobs::Column::Id, order)
            .offset(start)
            .limit(window)
            .into_tuple::<i64>()
            .all(&d.db)
            .await?),
        JobSortKey::FileName => {
            // One row past the window tells whether its last group goes on.
            let mut rows = query
                .clone()
                .select_only()
                .column(jobs::Column::Id)
                .column(jobs::Column::FileName)
                .order_by(jobs::Column::FileName, order.clone())
                .order_by(jobs::Column::Id, order.clone())
                .offset(start)
                .limit(window.saturating_add(1))
                .into_model::<IdAndName>()
                .all(&d.db)
                .await?;
            if u64::try_from(rows.len()).unwrap_or(u64::MAX) > window {
                if let Some(extra) = rows.pop() {
                    rows.retain(|row| row.file_name != extra.file_name);
                }
            }
            let Some(first) = rows.first() else {
                return Ok(Vec::new());
            };
            // The first group may have begun before the window: its earlier
            // members share its rank.
            let earlier = if descending {
                jobs::Column::Id.gt(first.id)
            } else {
                jobs::Column::Id.lt(first.id)
            };
            let mut ids = if start > 0 {
                query
                    .select_only()
                    .column(jobs::Column::Id)
                    .filter(jobs::Column::FileName.eq(first.file_name.clone()))
                    .filter(earlier)
                    .order_by(jobs::Column::Id, order)
                    .into_tuple::<i64>()
                    .all(&d.db)
                    .await?
            } else {
                Vec::new()
            };
            ids.extend(rows.into_iter().map(|row| row.id));
            Ok(ids)
        }
    }
}

/// Everything `info` tells about a job (SPEC §3.5 JobInfo).
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub id: i64,
    pub creation_timestamp: DateTime<Utc>,
    pub file_name: String,
    pub finish_timestamp: Option<DateTime<Utc>>,
    pub runner_id: Option<i64>,
    pub runner_name: Option<String>,
    pub runner_version: Option<String>,
    pub runner_git_hash: Option<String>,
    pub runner_source_code_url: Option<String>,
    /// `None` until the job succeeded.
    pub downloaded: Option<bool>,
    pub error_msg: Option<String>,
    pub settings: JobSettings,
    /// 0–100.
    pub progress: f64,
    pub abort: bool,
    pub step: JobStep,
}

impl JobInfo {
    fn from_row(row: jobs::Model) -> DomainResult<Self> {
        let step = JobStep::parse(&row.step).ok_or_else(|| {
            DomainError::Internal(format!("job {} has unknown step `{}`", row.id, row.step))
        })?;
        let settings = serde_json::from_str(&row.settings).map_err(|err| {
            DomainError::internal(&format!("settings of job {} are unreadable", row.id), err)
        })?;
        // SPEC §3.5: a runner's last heartbeat value while it holds the job,
        // else 100 for success, downloaded and (runner gone) aborting, else 0.
        let held = match step {
            JobStep::RunnerAssigned | JobStep::RunnerInProgress => true,
            JobStep::Aborting => row.runner_id.is_some(),
            _ => false,
        };
        let progress = if held {
            row.progress.clamp(0.0, 100.0)
        } else if matches!(
            step,
            JobStep::Success | JobStep::Downloaded | JobStep::Aborting
        ) {
            100.0
        } else {
            0.0
        };
        let downloaded = match step {
            JobStep::Success => Some(false),
            JobStep::Downloaded => Some(true),
            _ => None,
        };
        Ok(JobInfo {
            id: row.id,
            creation_timestamp: row.creation_timestamp,
            file_name: row.file_name,
            finish_timestamp: row.finish_timestamp,
            runner_id: row.runner_id,
            runner_name: row.runner_name,
            runner_version: row.runner_version,
            runner_git_hash: row.runner_git_hash,
            runner_source_code_url: row.runner_source_code_url,
            downloaded,
            error_msg: row.error_msg,
            settings,
            progress,
            abort: row.abort_requested,
            step,
        })
    }
}

/// The caller's jobs among `job_ids`, by id; other users' and unknown ids are
/// left out (SPEC §3.11: never another user's job).
pub async fn job_infos(d: &Domain, user_id: i64, job_ids: &[i64]) -> DomainResult<Vec<JobInfo>> {
    if job_ids.is_empty() {
        return Ok(Vec::new());
    }
    // By primary key only, the owner checked here: with `user_id` in the
    // query, PostgreSQL may walk all of a prolific user's jobs through the
    // user index (it does until statistics exist) instead of 20 key lookups.
    let rows = jobs::Entity::find()
        .filter(jobs::Column::Id.is_in(job_ids.iter().copied()))
        .order_by_asc(jobs::Column::Id)
        .all(&d.db)
        .await?;
    rows.into_iter()
        .filter(|row| row.user_id == user_id)
        .map(JobInfo::from_row)
        .collect()
}
