//! Finished-job retention (SPEC §3.8, §3.10 "Cleanup") on SQLite and
//! PostgreSQL: jobs finished before the retention go with their blobs and a
//! `job_deleted` each; newer, unfinished and never-finished jobs stay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration, Utc};
use common::*;
use scribe_domain::entities::jobs;
use scribe_domain::events::{Delivery, JobEvent};
use scribe_domain::jobs::retention;
use scribe_domain::scheduling::step;
use scribe_domain::Domain;
use scribe_tests::db_test;
use sea_orm::{EntityTrait, QueryOrder};

async fn job_ids(d: &Domain) -> Vec<i64> {
    jobs::Entity::find()
        .order_by_asc(jobs::Column::Id)
        .all(&d.db)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect()
}

db_test!(
    async fn finished_jobs_past_the_retention_are_deleted_with_their_blobs(backend: Backend) {
        let d = domain_with(backend, "cleanup:\n  finished_job_retention_in_days: 30\n").await;
        let alice = verified_user(&d, "alice@example.org").await;
        let bob = verified_user(&d, "bob@example.org").await;
        let old = Some(Utc::now() - Duration::days(31));
        let recent = Some(Utc::now() - Duration::days(29));
        let mut alice_events = d.events.subscribe(alice);
        let mut bob_events = d.events.subscribe(bob);

        let (old_success, old_success_blobs) = insert_job(&d, alice, step::SUCCESS, old).await;
        let (old_failed, _) = insert_job(&d, alice, step::FAILED, old).await;
        let (old_downloaded, old_downloaded_blobs) =
            insert_job(&d, bob, step::DOWNLOADED, old).await;
        let (recent_success, recent_blobs) = insert_job(&d, alice, step::SUCCESS, recent).await;
        let (queued, queued_blobs) = insert_job(&d, alice, step::PENDING_RUNNER, None).await;
        let (running, running_blobs) = insert_job(&d, bob, step::RUNNER_IN_PROGRESS, None).await;
        let (aborting, _) = insert_job(&d, bob, step::ABORTING, None).await;

        let deleted = retention::purge_finished_jobs(&d).await.unwrap();
        assert_eq!(deleted, 3);
        assert_eq!(
            job_ids(&d).await,
            vec![recent_success, queued, running, aborting]
        );
        for gone in old_success_blobs.iter().chain(&old_downloaded_blobs) {
            assert!(
                !d.blobs.exists(gone).await.unwrap(),
                "{gone:?} still stored"
            );
        }
        for kept in recent_blobs
            .iter()
            .chain(&queued_blobs)
            .chain(&running_blobs)
        {
            assert!(d.blobs.exists(kept).await.unwrap(), "{kept:?} deleted");
        }

        // Each owner hears of exactly their own deleted jobs.
        for (subscription, expected) in [
            (
                &mut alice_events,
                vec![
                    JobEvent::deleted(alice, old_success),
                    JobEvent::deleted(alice, old_failed),
                ],
            ),
            (
                &mut bob_events,
                vec![JobEvent::deleted(bob, old_downloaded)],
            ),
        ] {
            for event in expected {
                let got =
                    tokio::time::timeout(std::time::Duration::from_secs(5), subscription.recv())
                        .await
                        .expect("a job_deleted event");
                assert_eq!(got, Some(Delivery::Event(event)));
            }
            let more =
                tokio::time::timeout(std::time::Duration::from_millis(100), subscription.recv())
                    .await;
            assert!(more.is_err(), "unexpected event {more:?}");
        }

        // A second run finds nothing.
        assert_eq!(retention::purge_finished_jobs(&d).await.unwrap(), 0);
    }
);

db_test!(
    async fn without_a_retention_nothing_is_deleted(backend: Backend) {
        let d = domain(backend).await;
        let alice = verified_user(&d, "alice@example.org").await;
        let ancient = Some(Utc::now() - Duration::days(3650));
        let (id, blobs) = insert_job(&d, alice, step::SUCCESS, ancient).await;
        assert_eq!(retention::purge_finished_jobs(&d).await.unwrap(), 0);
        assert_eq!(job_ids(&d).await, vec![id]);
        assert!(d.blobs.exists(&blobs[0]).await.unwrap());
    }
);

db_test!(
    async fn a_backlog_larger_than_one_batch_is_deleted_entirely(backend: Backend) {
        let d = domain(backend).await;
        let alice = verified_user(&d, "alice@example.org").await;
        let old = Some(Utc::now() - Duration::days(10));
        for _ in 0..520 {
            insert_job(&d, alice, step::FAILED, old).await;
        }
        let (kept, _) = insert_job(&d, alice, step::FAILED, Some(Utc::now())).await;
        let cutoff = Utc::now() - Duration::days(1);
        let deleted = retention::purge_jobs_finished_before(&d, cutoff)
            .await
            .unwrap();
        assert_eq!(deleted, 520);
        assert_eq!(job_ids(&d).await, vec![kept]);
    }
);
