//! Deleting a user with queued and running jobs (SPEC §3.11), on SQLite and
//! PostgreSQL: the jobs and their blobs go, runners holding them are freed
//! and get the next queued job, other users' jobs are untouched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::*;
use scribe_domain::accounts;
use scribe_domain::entities::{jobs, runner_sessions};
use scribe_domain::runners;
use scribe_domain::scheduling::step;
use scribe_domain::Domain;
use scribe_tests::db_test;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

/// An online runner (a session row) holding `job` (in progress if `fetched`).
async fn online_runner(d: &Domain, priority: i64, job: Option<(i64, bool)>) -> i64 {
    let created = runners::create_runner(d).await.unwrap();
    runner_sessions::ActiveModel {
        runner_id: Set(created.id),
        session_token_hash: Set("x".repeat(64)),
        name: Set(format!("r{}", created.id)),
        version: Set("1".into()),
        git_hash: Set("h".into()),
        source_code_url: Set("u".into()),
        priority: Set(priority),
        registered_at: Set(Utc::now()),
        last_heartbeat: Set(Utc::now()),
        job_id: Set(job.map(|(id, _)| id)),
        job_in_progress: Set(job.is_some_and(|(_, fetched)| fetched)),
    }
    .insert(&d.db)
    .await
    .unwrap();
    if let Some((id, _)) = job {
        jobs::Entity::update_many()
            .col_expr(jobs::Column::RunnerId, Expr::value(created.id))
            .filter(jobs::Column::Id.eq(id))
            .exec(&d.db)
            .await
            .unwrap();
    }
    created.id
}

async fn session_of(d: &Domain, runner_id: i64) -> runner_sessions::Model {
    runner_sessions::Entity::find_by_id(runner_id)
        .one(&d.db)
        .await
        .unwrap()
        .unwrap()
}

db_test!(
    async fn a_deleted_users_jobs_leave_the_queue_and_free_their_runners(backend: Backend) {
        let d = domain(backend).await;
        let leaving = verified_user(&d, "leaving@example.org").await;
        let staying = verified_user(&d, "staying@example.org").await;
        let (running, running_blobs) =
            insert_job(&d, leaving, step::RUNNER_IN_PROGRESS, None).await;
        let (assigned, assigned_blobs) = insert_job(&d, leaving, step::RUNNER_ASSIGNED, None).await;
        let (queued, queued_blobs) = insert_job(&d, leaving, step::PENDING_RUNNER, None).await;
        let (done, done_blobs) = insert_job(&d, leaving, step::SUCCESS, Some(Utc::now())).await;
        let (waiting, waiting_blobs) = insert_job(&d, staying, step::PENDING_RUNNER, None).await;
        let busy = online_runner(&d, 9, Some((running, true))).await;
        let holding = online_runner(&d, 5, Some((assigned, false))).await;
        let mut events = d.events.subscribe(leaving);

        let user = user(&d, leaving).await;
        accounts::delete_user(&d, &user).await.unwrap();

        for id in [running, assigned, queued, done] {
            assert!(jobs::Entity::find_by_id(id)
                .one(&d.db)
                .await
                .unwrap()
                .is_none());
        }
        for blob in running_blobs
            .iter()
            .chain(&assigned_blobs)
            .chain(&queued_blobs)
            .chain(&done_blobs)
        {
            assert!(
                !d.blobs.exists(blob).await.unwrap(),
                "{blob:?} still stored"
            );
        }
        assert!(d.blobs.exists(&waiting_blobs[0]).await.unwrap());
        // Both runners are free; the higher-priority one got the waiting job.
        let busy = session_of(&d, busy).await;
        assert_eq!((busy.job_id, busy.job_in_progress), (Some(waiting), false));
        let holding = session_of(&d, holding).await;
        assert_eq!((holding.job_id, holding.job_in_progress), (None, false));
        let waiting = jobs::Entity::find_by_id(waiting)
            .one(&d.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(waiting.step, step::RUNNER_ASSIGNED);
        // A job_deleted for each of the user's jobs.
        let mut deleted = Vec::new();
        for _ in 0..4 {
            let delivery = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv())
                .await
                .unwrap();
            match delivery {
                Some(scribe_domain::events::Delivery::Event(event)) => deleted.push(event.job_id),
                other => panic!("unexpected {other:?}"),
            }
        }
        deleted.sort_unstable();
        assert_eq!(deleted, vec![running, assigned, queued, done]);
    }
);
