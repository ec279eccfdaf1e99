//! Scheduling against a real PostgreSQL database: two "replicas" (two
//! domains with their own connection pools) scheduling at the same time never
//! give one job to two runners or two jobs to one runner.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::*;
use scribe_domain::entities::{jobs, runner_sessions};
use scribe_domain::runners::{self, Registration};
use scribe_domain::scheduling::{self, step};
use scribe_domain::Domain;
use scribe_tests::Backend;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

async fn queue_job(d: &Domain, user_id: i64) -> i64 {
    jobs::ActiveModel {
        user_id: Set(user_id),
        file_name: Set("a.mp3".into()),
        content_type: Set("audio/mpeg".into()),
        audio_blob_id: Set(None),
        audio_size: Set(0),
        settings: Set("{}".into()),
        step: Set(step::PENDING_RUNNER.into()),
        progress: Set(0.0),
        abort_requested: Set(false),
        creation_timestamp: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&d.db)
    .await
    .unwrap()
    .id
}

#[tokio::test]
async fn concurrent_scheduling_on_postgres_never_double_assigns() {
    let a = domain(Backend::Postgres).await;
    let b = Domain::new(a.db.clone(), a.config.clone(), a.secret_key.clone());
    let user = verified_user(&a, "owner@example.org").await;

    for round in 0..5 {
        // 8 runners, 12 jobs: each round fills the runners, then frees them.
        let mut runner_ids = Vec::new();
        for i in 0..8 {
            let created = runners::create_runner(&a).await.unwrap();
            runner_sessions::ActiveModel {
                runner_id: Set(created.id),
                session_token_hash: Set("x".repeat(64)),
                name: Set(format!("r{round}-{i}")),
                version: Set("1".into()),
                git_hash: Set("h".into()),
                source_code_url: Set("u".into()),
                priority: Set(1 + i % 3),
                registered_at: Set(Utc::now()),
                last_heartbeat: Set(Utc::now()),
                job_id: Set(None),
                job_in_progress: Set(false),
            }
            .insert(&a.db)
            .await
            .unwrap();
            runner_ids.push(created.id);
        }
        for _ in 0..12 {
            queue_job(&a, user).await;
        }
        let (x, y, z) = tokio::join!(
            scheduling::schedule(&a),
            scheduling::schedule(&b),
            scheduling::schedule(&a)
        );
        x.unwrap();
        y.unwrap();
        z.unwrap();

        let assigned = jobs::Entity::find()
            .filter(jobs::Column::Step.eq(step::RUNNER_ASSIGNED))
            .all(&a.db)
            .await
            .unwrap();
        let busy = runner_sessions::Entity::find()
            .filter(runner_sessions::Column::JobId.is_not_null())
            .all(&a.db)
            .await
            .unwrap();
        assert_eq!(assigned.len(), 8, "round {round}");
        assert_eq!(busy.len(), 8, "round {round}");
        for job in &assigned {
            let holder: Vec<_> = busy.iter().filter(|s| s.job_id == Some(job.id)).collect();
            assert_eq!(holder.len(), 1, "job {} held by {holder:?}", job.id);
            assert_eq!(job.runner_id, Some(holder[0].runner_id));
        }
        // The oldest jobs went first.
        let queued = jobs::Entity::find()
            .filter(jobs::Column::Step.eq(step::PENDING_RUNNER))
            .all(&a.db)
            .await
            .unwrap();
        let newest_assigned = assigned.iter().map(|j| j.id).max().unwrap();
        assert!(queued.iter().all(|j| j.id > newest_assigned));

        // Unregistering every runner puts their jobs back in the queue.
        for id in runner_ids {
            runners::unregister(&b, id).await.unwrap();
        }
        assert_eq!(
            runner_sessions::Entity::find().count(&a.db).await.unwrap(),
            0
        );
        jobs::Entity::delete_many().exec(&a.db).await.unwrap();
    }
}

#[tokio::test]
async fn higher_priority_runner_gets_the_oldest_job() {
    let d = domain(Backend::Sqlite).await;
    let user = verified_user(&d, "owner@example.org").await;
    let first = queue_job(&d, user).await;
    let low = runners::create_runner(&d).await.unwrap();
    let high = runners::create_runner(&d).await.unwrap();
    let reg = |priority| Registration {
        name: "r".into(),
        version: "1".into(),
        git_hash: "h".into(),
        source_code_url: "u".into(),
        priority,
    };
    // No job yet for either until both are online: register with the queue empty.
    jobs::Entity::update_many()
        .col_expr(
            jobs::Column::Step,
            sea_orm::sea_query::Expr::value(step::NOT_QUEUED),
        )
        .exec(&d.db)
        .await
        .unwrap();
    runners::register(&d, low.id, reg(1)).await.unwrap();
    runners::register(&d, high.id, reg(9)).await.unwrap();
    jobs::Entity::update_many()
        .col_expr(
            jobs::Column::Step,
            sea_orm::sea_query::Expr::value(step::PENDING_RUNNER),
        )
        .exec(&d.db)
        .await
        .unwrap();
    queue_job(&d, user).await;
    scheduling::schedule(&d).await.unwrap();
    let session = runner_sessions::Entity::find_by_id(high.id)
        .one(&d.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.job_id, Some(first));

    // A silent runner is reaped and its job requeued, then given to the other.
    runners::reap_silent_runners(&d, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        runner_sessions::Entity::find().count(&d.db).await.unwrap(),
        0
    );
    let job = jobs::Entity::find_by_id(first)
        .one(&d.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.step, step::PENDING_RUNNER);
    assert_eq!(job.runner_id, None);
}
