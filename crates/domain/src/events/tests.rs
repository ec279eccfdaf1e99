//! The hub and the in-process notifier; PostgreSQL is covered by
//! `tests/events.rs` against a real server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::*;

async fn next(subscription: &mut JobSubscription) -> Option<Delivery> {
    tokio::time::timeout(Duration::from_secs(5), subscription.recv())
        .await
        .expect("a delivery within 5 s")
}

#[test]
fn wire_names_match_the_spec() {
    assert_eq!(JobEventKind::Created.name(), "job_created");
    assert_eq!(JobEventKind::Updated.name(), "job_updated");
    assert_eq!(JobEventKind::Deleted.name(), "job_deleted");
    for kind in [
        JobEventKind::Created,
        JobEventKind::Updated,
        JobEventKind::Deleted,
    ] {
        assert_eq!(
            serde_json::to_value(kind).unwrap(),
            serde_json::Value::from(kind.name())
        );
    }
}

#[test]
fn payloads_round_trip_and_stay_small() {
    let job: Message = JobEvent::updated(7, 42).into();
    let payload = serde_json::to_string(&job).unwrap();
    assert_eq!(
        payload,
        r#"{"job":{"user_id":7,"job_id":42,"kind":"job_updated"}}"#
    );
    assert_eq!(serde_json::from_str::<Message>(&payload).unwrap(), job);
    let wakeup: Message = WakeupTopic::Scheduler.into();
    assert_eq!(
        serde_json::to_string(&wakeup).unwrap(),
        r#"{"wakeup":"scheduler"}"#
    );
    // NOTIFY payloads must stay under 8000 bytes.
    let largest = Message::Job(JobEvent::deleted(i64::MIN, i64::MIN));
    assert!(serde_json::to_string(&largest).unwrap().len() < 200);
}

#[tokio::test]
async fn events_reach_only_their_users_subscribers() {
    let notifier: Arc<dyn Notifier> = Arc::new(InProcessNotifier::new());
    let mut alice = notifier.subscribe(1);
    let mut alice_again = notifier.subscribe(1);
    let mut bob = notifier.subscribe(2);

    notifier.publish(JobEvent::created(1, 10)).await;
    notifier.publish(JobEvent::updated(2, 20)).await;

    let expected = Some(Delivery::Event(JobEvent::created(1, 10)));
    assert_eq!(next(&mut alice).await, expected);
    assert_eq!(next(&mut alice_again).await, expected);
    // Bob's first delivery is his own event: Alice's never reached him.
    assert_eq!(
        next(&mut bob).await,
        Some(Delivery::Event(JobEvent::updated(2, 20)))
    );
}

#[tokio::test]
async fn only_events_after_subscribing_arrive() {
    let notifier = InProcessNotifier::new();
    notifier.publish(JobEvent::created(1, 1)).await;
    let mut subscription = notifier.subscribe(1);
    notifier.publish(JobEvent::deleted(1, 2)).await;
    assert_eq!(
        next(&mut subscription).await,
        Some(Delivery::Event(JobEvent::deleted(1, 2)))
    );
}

#[tokio::test]
async fn a_lagging_subscriber_gets_a_resync_then_carries_on() {
    let notifier = InProcessNotifier::new();
    let mut slow = notifier.subscribe(1);
    let total = SUBSCRIBER_BUFFER as i64 + 10;
    for job_id in 0..total {
        notifier.publish(JobEvent::updated(1, job_id)).await;
    }
    assert_eq!(next(&mut slow).await, Some(Delivery::Resync));
    // Then the newest SUBSCRIBER_BUFFER events, in order.
    for job_id in (total - SUBSCRIBER_BUFFER as i64)..total {
        assert_eq!(
            next(&mut slow).await,
            Some(Delivery::Event(JobEvent::updated(1, job_id)))
        );
    }
}

#[tokio::test]
async fn resync_reaches_every_subscriber_and_wakes_every_topic() {
    let hub = Arc::new(Hub::new());
    let mut alice = hub.subscribe(1);
    let mut bob = hub.subscribe(2);
    let mut scheduler = hub.subscribe_wakeups(WakeupTopic::Scheduler);
    let mut mail = hub.subscribe_wakeups(WakeupTopic::Mail);
    hub.resync_all();
    assert_eq!(next(&mut alice).await, Some(Delivery::Resync));
    assert_eq!(next(&mut bob).await, Some(Delivery::Resync));
    assert!(scheduler.try_wait());
    assert!(mail.try_wait());
}

#[tokio::test]
async fn dropping_the_last_subscription_forgets_the_user() {
    let hub = Arc::new(Hub::new());
    let notifier = InProcessNotifier::with_hub(hub.clone());
    let first = notifier.subscribe(1);
    let second = notifier.subscribe(1);
    let other = notifier.subscribe(2);
    assert_eq!(hub.subscribed_users(), 2);
    drop(first);
    assert_eq!(hub.subscribed_users(), 2);
    drop(second);
    assert_eq!(hub.subscribed_users(), 1);
    drop(other);
    assert_eq!(hub.subscribed_users(), 0);
    // Publishing to nobody is fine.
    notifier.publish(JobEvent::updated(1, 1)).await;
}

#[tokio::test]
async fn wakeups_are_per_topic_and_coalesced() {
    let notifier = InProcessNotifier::new();
    let mut scheduler = notifier.subscribe_wakeups(WakeupTopic::Scheduler);
    let mut mail = notifier.subscribe_wakeups(WakeupTopic::Mail);
    assert!(!scheduler.try_wait(), "nothing published yet");

    notifier.publish_wakeup(WakeupTopic::Scheduler).await;
    notifier.publish_wakeup(WakeupTopic::Scheduler).await;
    tokio::time::timeout(Duration::from_secs(5), scheduler.wait())
        .await
        .expect("woken");
    assert!(!scheduler.try_wait(), "two wake-ups, one wait");
    assert!(!mail.try_wait(), "other topics stay asleep");

    // A wake-up published while nobody waits is kept for the next wait.
    notifier.publish_wakeup(WakeupTopic::Mail).await;
    tokio::time::timeout(Duration::from_secs(5), mail.wait())
        .await
        .expect("woken");
}

#[tokio::test]
async fn stopping_the_listener_ends_the_subscriptions() {
    let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
    let (notifier, listener) = notifier_for(&db, "sqlite::memory:").await;
    let mut subscription = notifier.subscribe(1);
    // In-process delivery works whether or not the listener runs.
    notifier.publish(JobEvent::created(1, 1)).await;
    assert_eq!(
        next(&mut subscription).await,
        Some(Delivery::Event(JobEvent::created(1, 1)))
    );

    let shutdown = CancellationToken::new();
    let task = tokio::spawn(listener.run(shutdown.clone()));
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(next(&mut subscription).await, None);
    assert_eq!(next(&mut notifier.subscribe(1)).await, None);
}

#[tokio::test]
async fn subscriptions_end_when_the_notifier_is_dropped() {
    let notifier = InProcessNotifier::new();
    let mut subscription = notifier.subscribe(1);
    drop(notifier);
    assert_eq!(next(&mut subscription).await, None);
}
