//! Issue 5, the jobs routes over real HTTP (SPEC §3.5, §3.10, §3.11): submission with its
//! refusals (415, 400, 413, 403, 422), count/get with filters and both sort keys, info for
//! own and foreign ids, delete, download of an unfinished job, and the SSE stream — each on
//! SQLite and on PostgreSQL. No runners run here, so submitted jobs stay queued; finished
//! states are set in the database directly.

use std::time::Duration;

use scribe_tests::accounts::*;
use scribe_tests::reqwest::multipart::{Form, Part};
use scribe_tests::reqwest::{header, Method, Response};
use scribe_tests::serde_json::{json, Value};
use scribe_tests::*;

const UPLOAD_LIMIT: usize = 1000;

/// A server with mail to a sink and a small upload limit.
async fn app_with_limit(backend: Backend) -> (TestApp, scribe_tests::smtp::SmtpSink) {
    app_with_mail(
        backend,
        json!({"limits": {"max_upload_bytes": UPLOAD_LIMIT}}),
    )
    .await
}

async fn upload(
    app: &TestApp,
    token: &str,
    query: &str,
    name: &str,
    mime: &str,
    bytes: Vec<u8>,
) -> Response {
    let part = Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .unwrap();
    bearer(
        app,
        Method::POST,
        &format!("/api/jobs/submit_job{query}"),
        token,
    )
    .multipart(Form::new().part("audio_file", part))
    .send()
    .await
    .unwrap()
}

async fn submit_job(app: &TestApp, token: &str, name: &str) -> i64 {
    let response = upload(app, token, "", name, "audio/mpeg", vec![7u8; 300]).await;
    assert_json_content_type(&response);
    json_body(response, 200).await.as_i64().unwrap()
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> Value {
    json_body(
        bearer(app, Method::GET, path, token).send().await.unwrap(),
        200,
    )
    .await
}

async fn ids(app: &TestApp, token: &str, query: &str) -> Vec<i64> {
    let value = get_json(app, token, &format!("/api/jobs/get?{query}")).await;
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

async fn stored_blobs(app: &TestApp) -> (i64, i64) {
    (
        app.db().scalar_i64("SELECT COUNT(*) FROM blobs").await,
        app.db()
            .scalar_i64("SELECT COUNT(*) FROM blob_chunks")
            .await,
    )
}

db_test!(
    async fn submission_is_refused_without_storing_anything(backend: Backend) {
        let (app, sink) = app_with_limit(backend).await;
        let alice = user_session(&app, &sink, "alice@example.org", true).await;
        let bob = user_session(&app, &sink, "bob@example.org", true).await;
        let carol = user_session(&app, &sink, "carol@example.org", false).await;

        let response = upload(&app, &alice, "", "notes.txt", "text/plain", b"hi".to_vec()).await;
        let detail = assert_error(response, 415).await;
        assert!(detail.contains("text/plain"), "{detail}");

        let bobs_settings = json_body(
            bearer(&app, Method::POST, "/api/jobs/submit_settings", &bob)
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await
        .as_i64()
        .unwrap();
        let query = format!("?job_settings_id={bobs_settings}");
        let response = upload(&app, &alice, &query, "a.mp3", "audio/mpeg", vec![1; 10]).await;
        assert_eq!(
            assert_error(response, 400).await,
            format!("The provided job_settings_id of '{bobs_settings}' is invalid")
        );

        let too_big = vec![3u8; UPLOAD_LIMIT * 3];
        let response = upload(&app, &alice, "", "big.mp3", "audio/mpeg", too_big).await;
        assert_payload_too_large(response).await;

        let response = upload(&app, &carol, "", "a.mp3", "audio/mpeg", vec![1; 10]).await;
        assert_error(response, 403).await;

        let response = bearer(&app, Method::POST, "/api/jobs/submit_job", &alice)
            .multipart(Form::new().text("other", "x"))
            .send()
            .await
            .unwrap();
        assert_validation_error_at(response, &["body", "audio_file"]).await;

        assert_eq!(app.db().scalar_i64("SELECT COUNT(*) FROM jobs").await, 0);
        assert_eq!(stored_blobs(&app).await, (0, 0));

        // Own settings id and an exact-limit file are fine.
        let own = json_body(
            bearer(&app, Method::POST, "/api/jobs/submit_settings", &alice)
                .json(&json!({"model": "tiny"}))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await
        .as_i64()
        .unwrap();
        let query = format!("?job_settings_id={own}");
        let response = upload(
            &app,
            &alice,
            &query,
            "ok.wav",
            "video/mp4",
            vec![5; UPLOAD_LIMIT],
        )
        .await;
        let id = json_body(response, 200).await.as_i64().unwrap();
        let info = get_json(&app, &alice, &format!("/api/jobs/info?job_ids={id}")).await;
        assert_eq!(info[0]["settings"]["model"], json!("tiny"));
        assert_eq!(info[0]["file_name"], json!("ok.wav"));
        assert_eq!(stored_blobs(&app).await.0, 1);
    }
);

db_test!(
    async fn count_get_info_delete_and_download(backend: Backend) {
        let (app, sink) = app_with_limit(backend).await;
        let alice = user_session(&app, &sink, "alice@example.org", true).await;
        let bob = user_session(&app, &sink, "bob@example.org", true).await;

        let b = submit_job(&app, &alice, "b.mp3").await;
        let a = submit_job(&app, &alice, "a.mp3").await;
        let c = submit_job(&app, &alice, "c.mp3").await;
        let bobs = submit_job(&app, &bob, "a.mp3").await;

        let all = "exclude_finished=false&exclude_downloaded=false";
        let count = |query: &'static str| {
            let (app, alice) = (&app, &alice);
            async move { get_json(app, alice, &format!("/api/jobs/count?{query}")).await }
        };
        assert_eq!(
            count("exclude_finished=false&exclude_downloaded=false").await,
            json!(3)
        );

        let by = |key: &str, desc: bool, start: i64, end: i64| {
            format!("start_index={start}&end_index={end}&sort_key={key}&descending={desc}&{all}")
        };
        assert_eq!(
            ids(&app, &alice, &by("creation_time", false, 0, 9)).await,
            vec![b, a, c]
        );
        assert_eq!(
            ids(&app, &alice, &by("creation_time", true, 0, 9)).await,
            vec![c, a, b]
        );
        assert_eq!(
            ids(&app, &alice, &by("filename", false, 0, 9)).await,
            vec![a, b, c]
        );
        assert_eq!(
            ids(&app, &alice, &by("filename", true, 0, 9)).await,
            vec![c, b, a]
        );
        assert_eq!(
            ids(&app, &alice, &by("filename", false, 1, 1)).await,
            vec![b]
        );
        assert_eq!(
            ids(&app, &alice, &by("creation_time", false, 1, 2)).await,
            vec![a, c]
        );
        assert!(ids(&app, &alice, &by("creation_time", false, 5, 9))
            .await
            .is_empty());
        let response = bearer(&app, Method::GET, "/api/jobs/get?start_index=0", &alice)
            .send()
            .await
            .unwrap();
        assert_validation_error(response).await;

        // Finish two of them by hand: b downloaded, a failed.
        app.db()
            .execute(&format!(
                "UPDATE jobs SET step = 'downloaded' WHERE id = {b}"
            ))
            .await;
        app.db()
            .execute(&format!(
                "UPDATE jobs SET step = 'failed', error_msg = 'boom' WHERE id = {a}"
            ))
            .await;
        assert_eq!(
            count("exclude_finished=true&exclude_downloaded=false").await,
            json!(1)
        );
        assert_eq!(
            count("exclude_finished=false&exclude_downloaded=true").await,
            json!(2)
        );
        let unfinished = "start_index=0&end_index=9&sort_key=filename&descending=false\
             &exclude_finished=true&exclude_downloaded=false";
        assert_eq!(ids(&app, &alice, unfinished).await, vec![c]);

        let info = get_json(
            &app,
            &alice,
            &format!(
                "/api/jobs/info?job_ids={a}&job_ids={b}&job_ids={c}&job_ids={bobs}&job_ids=999999"
            ),
        )
        .await;
        let jobs = info.as_array().unwrap();
        assert_eq!(jobs.len(), 3, "{info}");
        let find = |id: i64| jobs.iter().find(|j| j["id"] == json!(id)).unwrap().clone();
        let queued = find(c);
        assert_eq!(queued["step"], json!("pending_runner"));
        assert_eq!(queued["progress"], json!(0.0));
        assert_eq!(queued["abort"], json!(false));
        assert_eq!(queued["downloaded"], Value::Null);
        assert_eq!(queued["runner_id"], Value::Null);
        assert_eq!(queued["finish_timestamp"], Value::Null);
        assert!(queued["creation_timestamp"]
            .as_str()
            .unwrap()
            .ends_with("+00:00"));
        assert_eq!(queued["settings"]["model"], json!("large"));
        assert_eq!(find(b)["step"], json!("downloaded"));
        assert_eq!(find(b)["downloaded"], json!(true));
        assert_eq!(find(b)["progress"], json!(100.0));
        assert_eq!(find(a)["step"], json!("failed"));
        assert_eq!(find(a)["error_msg"], json!("boom"));
        assert_eq!(find(a)["downloaded"], Value::Null);

        // Bob sees nothing of Alice's.
        let foreign = get_json(&app, &bob, &format!("/api/jobs/info?job_ids={a}")).await;
        assert_eq!(foreign, json!([]));

        // Download: unfinished, failed, foreign and unknown jobs are all the same 400.
        for id in [c, a, bobs, 999_999] {
            let response = bearer(
                &app,
                Method::GET,
                &format!("/api/jobs/download_transcript?job_id={id}&transcript_type=as_txt"),
                &alice,
            )
            .send()
            .await
            .unwrap();
            assert_eq!(
                assert_error(response, 400).await,
                format!("No job with id {id} found or job isn't finished yet")
            );
        }

        // Delete: a queued job refuses the whole request.
        let response = bearer(&app, Method::DELETE, "/api/jobs/delete", &alice)
            .json(&json!([a, c]))
            .send()
            .await
            .unwrap();
        assert_error(response, 400).await;
        assert_eq!(count(all_str()).await, json!(3));

        // Finished ones go, with their audio; Bob's id is ignored.
        let response = bearer(&app, Method::DELETE, "/api/jobs/delete", &alice)
            .json(&json!([a, b, bobs, 999_999]))
            .send()
            .await
            .unwrap();
        assert_eq!(json_body(response, 200).await, json!("Success"));
        assert_eq!(count(all_str()).await, json!(1));
        assert_eq!(
            get_json(&app, &bob, &format!("/api/jobs/count?{all}")).await,
            json!(1)
        );
        assert_eq!(stored_blobs(&app).await.0, 2);
    }
);

fn all_str() -> &'static str {
    "exclude_finished=false&exclude_downloaded=false"
}

db_test!(
    async fn events_reach_only_the_owner(backend: Backend) {
        let (app, sink) = app_with_limit(backend).await;
        let alice = user_session(&app, &sink, "alice@example.org", true).await;
        let bob = user_session(&app, &sink, "bob@example.org", true).await;

        let mut stream = bearer(&app, Method::GET, "/api/jobs/events", &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status().as_u16(), 200);
        assert_eq!(content_type_of(&stream), "text/event-stream; charset=utf-8");

        // The subscription exists once the headers are here.
        let bobs = submit_job(&app, &bob, "b.mp3").await;
        let alices = submit_job(&app, &alice, "a.mp3").await;
        let expected = format!("event: job_created\ndata: {alices}\n\n");
        let mut received = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !received.contains(&expected) {
            let chunk = tokio::time::timeout_at(deadline, stream.chunk())
                .await
                .unwrap_or_else(|_| panic!("no job_created event; got {received:?}"))
                .unwrap()
                .expect("the stream stays open");
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(
            !received.contains(&format!("data: {bobs}\n")),
            "{received:?}"
        );
        assert!(received.starts_with("event: job_created\n"), "{received:?}");

        let response = plain_client()
            .get(app.url("/api/jobs/events"))
            .send()
            .await
            .unwrap();
        assert_error(response, 401).await;
    }
);

fn content_type_of(response: &Response) -> String {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
