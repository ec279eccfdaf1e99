//! Live events against real databases: two notifiers on one PostgreSQL
//! database stand for two replicas; SQLite gets the in-process hub.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod events {
    use std::sync::Arc;
    use std::time::Duration;

    use scribe_domain::db::{connect, DatabaseConnection, DatabaseSettings};
    use scribe_domain::events::{
        notifier_for, Delivery, JobEvent, JobSubscription, Notifier, WakeupTopic, Wakeups,
        LISTENER_APPLICATION_NAME,
    };
    use scribe_tests::{Backend, TestDb};
    use sea_orm::TransactionTrait;
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    /// Generous: a loaded CI machine may take a while to reconnect.
    const WAIT: Duration = Duration::from_secs(20);

    /// One "replica": its own pool, notifier and running listener.
    struct Replica {
        db: DatabaseConnection,
        notifier: Arc<dyn Notifier>,
        shutdown: CancellationToken,
        listener: JoinHandle<()>,
    }

    impl Replica {
        async fn start(url: &str) -> Self {
            // The listener's warnings show up with a failing test's output.
            let _ = tracing_subscriber::fmt()
                .with_env_filter("scribe_domain=debug")
                .with_test_writer()
                .try_init();
            let db = connect(&DatabaseSettings {
                url: url.to_owned(),
                max_connections: 4,
                retry_for: Duration::from_secs(5),
            })
            .await
            .unwrap();
            let (notifier, listener) = notifier_for(&db, url).await;
            let shutdown = CancellationToken::new();
            let listener = tokio::spawn(listener.run(shutdown.clone()));
            Replica {
                db,
                notifier,
                shutdown,
                listener,
            }
        }

        async fn stop(self) {
            self.shutdown.cancel();
            tokio::time::timeout(WAIT, self.listener)
                .await
                .expect("the listener stops when cancelled")
                .unwrap();
            self.db.close().await.unwrap();
        }
    }

    async fn next(subscription: &mut JobSubscription) -> Delivery {
        match tokio::time::timeout(WAIT, subscription.recv()).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => panic!("the subscription of user {} ended", subscription.user_id()),
            Err(_) => panic!(
                "nothing for user {} within {WAIT:?}",
                subscription.user_id()
            ),
        }
    }

    async fn woken(wakeups: &mut Wakeups) {
        tokio::time::timeout(WAIT, wakeups.wait())
            .await
            .expect("a wake-up");
    }

    async fn postgres_db() -> (TestDb, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (TestDb::create(Backend::Postgres, dir.path()).await, dir)
    }

    #[tokio::test]
    async fn reach_subscribers_of_another_replica() {
        let (test_db, _dir) = postgres_db().await;
        let a = Replica::start(test_db.url()).await;
        let b = Replica::start(test_db.url()).await;
        let mut alice_on_a = a.notifier.subscribe(1);
        let mut alice_on_b = b.notifier.subscribe(1);
        let mut bob_on_b = b.notifier.subscribe(2);

        a.notifier.publish(JobEvent::created(1, 10)).await;
        b.notifier.publish(JobEvent::updated(2, 20)).await;
        a.notifier.publish(JobEvent::deleted(1, 10)).await;

        for alice in [&mut alice_on_a, &mut alice_on_b] {
            assert_eq!(next(alice).await, Delivery::Event(JobEvent::created(1, 10)));
            assert_eq!(next(alice).await, Delivery::Event(JobEvent::deleted(1, 10)));
        }
        // Bob's first delivery is his own event: none of Alice's reached him.
        assert_eq!(
            next(&mut bob_on_b).await,
            Delivery::Event(JobEvent::updated(2, 20))
        );

        a.stop().await;
        b.stop().await;
    }

    #[tokio::test]
    async fn wakeups_reach_every_replica() {
        let (test_db, _dir) = postgres_db().await;
        let a = Replica::start(test_db.url()).await;
        let b = Replica::start(test_db.url()).await;
        let mut scheduler_on_a = a.notifier.subscribe_wakeups(WakeupTopic::Scheduler);
        let mut scheduler_on_b = b.notifier.subscribe_wakeups(WakeupTopic::Scheduler);
        let mut mail_on_b = b.notifier.subscribe_wakeups(WakeupTopic::Mail);

        a.notifier.publish_wakeup(WakeupTopic::Scheduler).await;
        woken(&mut scheduler_on_a).await;
        woken(&mut scheduler_on_b).await;

        // Inside a transaction: only at commit.
        let txn = a.db.begin().await.unwrap();
        a.notifier.publish_wakeup_in(&txn, WakeupTopic::Mail).await;
        b.notifier.publish_wakeup(WakeupTopic::Scheduler).await;
        woken(&mut scheduler_on_b).await;
        assert!(!mail_on_b.try_wait(), "woken before the commit");
        txn.commit().await.unwrap();
        woken(&mut mail_on_b).await;

        a.stop().await;
        b.stop().await;
    }

    #[tokio::test]
    async fn in_transactions_are_delivered_only_on_commit() {
        let (test_db, _dir) = postgres_db().await;
        let a = Replica::start(test_db.url()).await;
        let b = Replica::start(test_db.url()).await;
        let mut alice = b.notifier.subscribe(1);

        // Rolled back explicitly, and dropped without a commit.
        let txn = a.db.begin().await.unwrap();
        a.notifier.publish_in(&txn, JobEvent::created(1, 1)).await;
        txn.rollback().await.unwrap();
        let txn = a.db.begin().await.unwrap();
        a.notifier.publish_in(&txn, JobEvent::created(1, 2)).await;
        drop(txn);

        // Pending until the commit: an event published meanwhile comes first.
        let txn = a.db.begin().await.unwrap();
        a.notifier.publish_in(&txn, JobEvent::created(1, 3)).await;
        a.notifier.publish(JobEvent::updated(1, 4)).await;
        assert_eq!(
            next(&mut alice).await,
            Delivery::Event(JobEvent::updated(1, 4))
        );
        txn.commit().await.unwrap();
        assert_eq!(
            next(&mut alice).await,
            Delivery::Event(JobEvent::created(1, 3))
        );

        // commit_and_send: the events after a successful commit.
        let txn = a.db.begin().await.unwrap();
        a.notifier
            .commit_and_send(
                txn,
                vec![
                    JobEvent::updated(1, 5).into(),
                    JobEvent::deleted(1, 6).into(),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            next(&mut alice).await,
            Delivery::Event(JobEvent::updated(1, 5))
        );
        assert_eq!(
            next(&mut alice).await,
            Delivery::Event(JobEvent::deleted(1, 6))
        );

        // Nothing of the rolled-back transactions is still on its way: the
        // next delivery is a marker published last.
        a.notifier.publish(JobEvent::updated(1, 99)).await;
        assert_eq!(
            next(&mut alice).await,
            Delivery::Event(JobEvent::updated(1, 99))
        );

        a.stop().await;
        b.stop().await;
    }

    #[tokio::test]
    async fn listener_reconnects_after_its_connection_is_terminated() {
        let (test_db, _dir) = postgres_db().await;
        let a = Replica::start(test_db.url()).await;
        let b = Replica::start(test_db.url()).await;
        let mut alice = b.notifier.subscribe(1);
        let mut alice_on_a = a.notifier.subscribe(1);
        let mut scheduler = b.notifier.subscribe_wakeups(WakeupTopic::Scheduler);

        a.notifier.publish(JobEvent::created(1, 1)).await;
        assert_eq!(
            next(&mut alice).await,
            Delivery::Event(JobEvent::created(1, 1))
        );
        assert_eq!(
            next(&mut alice_on_a).await,
            Delivery::Event(JobEvent::created(1, 1))
        );

        for round in 1..=2 {
            let terminated = test_db
                .scalar_i64(&format!(
                    "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)) \
                     FROM pg_stat_activity \
                     WHERE datname = current_database() \
                     AND application_name = '{LISTENER_APPLICATION_NAME}'"
                ))
                .await;
            assert_eq!(terminated, 2, "both replicas' listeners (round {round})");

            // The resync comes once LISTEN is back in place, so what is
            // published after it arrives.
            // Both replicas' resyncs, so the next round finds both listening.
            assert_eq!(next(&mut alice).await, Delivery::Resync, "round {round}");
            assert_eq!(
                next(&mut alice_on_a).await,
                Delivery::Resync,
                "round {round}"
            );
            woken(&mut scheduler).await;

            a.notifier.publish(JobEvent::updated(1, round)).await;
            for subscription in [&mut alice, &mut alice_on_a] {
                assert_eq!(
                    next(subscription).await,
                    Delivery::Event(JobEvent::updated(1, round))
                );
            }
        }

        a.stop().await;
        b.stop().await;
    }

    #[tokio::test]
    async fn on_sqlite_go_through_the_in_process_hub() {
        let dir = tempfile::tempdir().unwrap();
        let test_db = TestDb::create(Backend::Sqlite, dir.path()).await;
        let replica = Replica::start(test_db.url()).await;
        let mut alice = replica.notifier.subscribe(1);
        let mut bob = replica.notifier.subscribe(2);

        let txn = replica.db.begin().await.unwrap();
        replica
            .notifier
            .commit_and_send(txn, vec![JobEvent::created(1, 1).into()])
            .await
            .unwrap();
        replica.notifier.publish(JobEvent::created(2, 2)).await;
        assert_eq!(
            next(&mut alice).await,
            Delivery::Event(JobEvent::created(1, 1))
        );
        assert_eq!(
            next(&mut bob).await,
            Delivery::Event(JobEvent::created(2, 2))
        );

        replica.shutdown.cancel();
        assert_eq!(
            tokio::time::timeout(WAIT, alice.recv()).await.unwrap(),
            None,
            "subscriptions end at shutdown"
        );
        replica.stop().await;
    }
}
