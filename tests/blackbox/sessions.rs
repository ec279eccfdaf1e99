//! Authenticated sessions are cached per process; these tests show that a change made
//! through one replica ends the cached session on another at once (PostgreSQL NOTIFY),
//! long before the cache's time to live would.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use scribe_tests::accounts::{send_as, session_token};
use scribe_tests::{db_test, Backend, TestApp, TestSetup};
use serde_json::json;

const USER: &str = "alice@example.org";
const PASSWORD: &str = "Alice-Password-1";

/// The first page of the caller's jobs.
const JOBS_PAGE: &str = "/api/jobs/get?start_index=0&end_index=9&sort_key=creation_time\
    &descending=true&exclude_finished=false&exclude_downloaded=false";

/// Well below the cache's ten-second time to live: passing within it shows the
/// invalidation arrived, not that the entry aged out.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(3);

async fn two_replicas() -> (TestApp, TestApp) {
    let mut first = TestSetup::new(Backend::Postgres).await;
    first.merge_config(json!({
        "security": {"local_account": {"user_provisioning": {
            "0": {"email": USER, "password": PASSWORD, "is_admin": true}
        }}}
    }));
    // The second replica shares the database and the secret key, not the data dir.
    let mut second = TestSetup::new(Backend::Sqlite).await;
    second.config = first.config.clone();
    second.merge_config(json!({ "data_dir": second.data_dir() }));
    (first.spawn().await, second.spawn().await)
}

async fn status_of(app: &TestApp, path: &str, token: &str) -> StatusCode {
    send_as(app, Method::GET, path, token).await.status()
}

/// Polls until `path` answers 401 for `token` on `app`, failing after the limit.
async fn expect_rejected_soon(app: &TestApp, path: &str, token: &str) {
    let started = Instant::now();
    loop {
        let status = status_of(app, path, token).await;
        if status == StatusCode::UNAUTHORIZED {
            return;
        }
        assert!(
            started.elapsed() < PROPAGATION_LIMIT,
            "{path} still answers {status} on the other replica after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_logout_on_one_replica_ends_the_cached_session_on_the_other() {
    let (a, b) = two_replicas().await;
    let token = session_token(&a, USER, PASSWORD, "").await;
    // Both replicas have now authenticated (and cached) the session.
    assert_eq!(
        status_of(&a, "/api/users/info", &token).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&b, "/api/users/info", &token).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&b, "/api/users/info", &token).await,
        StatusCode::OK
    );

    let response = send_as(&a, Method::DELETE, "/api/users/logout", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    expect_rejected_soon(&b, "/api/users/info", &token).await;
}

#[tokio::test]
async fn an_invalidated_api_token_stops_working_on_every_replica() {
    let (a, b) = two_replicas().await;
    let session = session_token(&a, USER, PASSWORD, "").await;
    let response = send_as(
        &a,
        Method::POST,
        "/api/users/get_new_api_token?name=ci",
        &session,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let api_token: String = response.json().await.unwrap();
    assert_eq!(status_of(&b, JOBS_PAGE, &api_token).await, StatusCode::OK);

    let tokens: serde_json::Value =
        send_as(&a, Method::GET, "/api/users/get_all_token_info", &session)
            .await
            .json()
            .await
            .unwrap();
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|token| token["name"] == "ci")
        .expect("the API token is listed")["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/users/invalidate_token?token_id={id}");
    assert_eq!(
        send_as(&a, Method::DELETE, &path, &session).await.status(),
        StatusCode::OK
    );
    expect_rejected_soon(&b, JOBS_PAGE, &api_token).await;
    // The session that did it is untouched.
    assert_eq!(
        status_of(&b, "/api/users/info", &session).await,
        StatusCode::OK
    );
}

db_test!(
    /// The replica that ended a session refuses it on the very next request, without
    /// waiting for its own notification to come back from the database.
    async fn a_logged_out_session_is_refused_at_once(backend: Backend) {
        let mut setup = TestSetup::new(backend).await;
        setup.merge_config(json!({
            "security": {"local_account": {"user_provisioning": {
                "0": {"email": USER, "password": PASSWORD, "is_admin": false}
            }}}
        }));
        let app = setup.spawn().await;
        for _ in 0..3 {
            let token = session_token(&app, USER, PASSWORD, "").await;
            assert_eq!(
                status_of(&app, "/api/users/info", &token).await,
                StatusCode::OK
            );
            let response = send_as(&app, Method::DELETE, "/api/users/logout", &token).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                status_of(&app, "/api/users/info", &token).await,
                StatusCode::UNAUTHORIZED
            );
        }
    }
);
