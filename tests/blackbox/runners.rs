//! Issue 5, runner protocol over real HTTP (SPEC §3.6, §3.7): runner tokens,
//! registration, heartbeats, credentials, and a full job cycle from upload to
//! transcript, on SQLite and PostgreSQL.

use scribe_tests::accounts::{bearer, plain_client, session_token};
use scribe_tests::reqwest::{multipart, Method, RequestBuilder, Response};
use scribe_tests::serde_json::{json, Value};
use scribe_tests::*;

const ADMIN: &str = "root@example.org";
const ADMIN_PASSWORD: &str = "Provisioned-Pass-1";
const USER: &str = "user@example.org";
const USER_PASSWORD: &str = "Provisioned-Pass-2";

async fn send(builder: RequestBuilder) -> Response {
    builder.send().await.unwrap()
}

async fn app(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        json!({"security": {"local_account": {"user_provisioning": {
            "0": {"email": ADMIN, "password": ADMIN_PASSWORD, "is_admin": true},
            "1": {"email": USER, "password": USER_PASSWORD, "is_admin": false}
        }}}}),
    )
    .await
}

async fn create_runner(app: &TestApp, admin: &str) -> (i64, String) {
    let body = json_body(
        send(bearer(
            app,
            Method::POST,
            "/api/admins/create_runner",
            admin,
        ))
        .await,
        200,
    )
    .await;
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 43, "256-bit token: {token}");
    (body["id"].as_i64().unwrap(), token)
}

fn registration(name: &str, priority: i64) -> Value {
    json!({"name": name, "version": "0.6.0", "git_hash": "abc",
           "source_code_url": "https://example.org/runner", "priority": priority})
}

async fn register(app: &TestApp, token: &str, priority: i64) -> String {
    let response = send(
        bearer(app, Method::POST, "/api/runners/register", token)
            .json(&registration("runner", priority)),
    )
    .await;
    assert_json_content_type(&response);
    let body = json_body(response, 200).await;
    body["session_token"].as_str().unwrap().to_owned()
}

async fn heartbeat(app: &TestApp, token: &str, session: &str, progress: f64) -> Value {
    let response = send(
        bearer(
            app,
            Method::POST,
            &format!("/api/runners/heartbeat?session_token={session}"),
            token,
        )
        .json(&json!({"progress": progress})),
    )
    .await;
    assert_json_content_type(&response);
    json_body(response, 200).await
}

async fn job_info(app: &TestApp, user: &str, job_id: i64) -> Value {
    let body = json_body(
        send(bearer(
            app,
            Method::GET,
            &format!("/api/jobs/info?job_ids={job_id}"),
            user,
        ))
        .await,
        200,
    )
    .await;
    body[0].clone()
}

db_test!(
    async fn runner_tokens_registration_and_credentials(backend: Backend) {
        let app = app(backend).await;
        let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;

        // Only admins create runners.
        assert_error(
            send(bearer(
                &app,
                Method::POST,
                "/api/admins/create_runner",
                &user,
            ))
            .await,
            403,
        )
        .await;
        let (id, token) = create_runner(&app, &admin).await;

        // Credentials.
        let detail = assert_error(
            send(
                plain_client()
                    .post(app.url("/api/runners/register"))
                    .json(&registration("r", 1)),
            )
            .await,
            401,
        )
        .await;
        assert_eq!(detail, "Not authenticated");
        let detail = assert_error(
            send(
                bearer(&app, Method::POST, "/api/runners/register", "nope")
                    .json(&registration("r", 1)),
            )
            .await,
            401,
        )
        .await;
        assert_eq!(detail, "No runner with that token exists!");
        let detail = assert_error(
            send(
                bearer(
                    &app,
                    Method::POST,
                    "/api/runners/heartbeat?session_token=x",
                    &token,
                )
                .json(&json!({"progress": 0})),
            )
            .await,
            403,
        )
        .await;
        assert_eq!(detail, "This runner is currently not registered as online!");

        // Bad registrations: 422.
        assert_validation_error(
            send(
                bearer(&app, Method::POST, "/api/runners/register", &token)
                    .json(&registration("r", 0)),
            )
            .await,
        )
        .await;

        let session = register(&app, &token, 1).await;
        let detail = assert_error(
            send(
                bearer(&app, Method::POST, "/api/runners/register", &token)
                    .json(&registration("r", 1)),
            )
            .await,
            403,
        )
        .await;
        assert_eq!(detail, "This runner is already registered as online!");

        assert_eq!(
            heartbeat(&app, &token, &session, 0.0).await,
            json!({"abort": false, "job_assigned": false})
        );
        let detail = assert_error(
            send(
                bearer(
                    &app,
                    Method::POST,
                    "/api/runners/heartbeat?session_token=wrong",
                    &token,
                )
                .json(&json!({"progress": 0})),
            )
            .await,
            403,
        )
        .await;
        assert!(
            detail.starts_with("The session token is invalid."),
            "{detail}"
        );
        let detail = assert_error(
            send(bearer(
                &app,
                Method::GET,
                &format!("/api/runners/retrieve_job_info?session_token={session}"),
                &token,
            ))
            .await,
            400,
        )
        .await;
        assert_eq!(detail, "This runner has currently no job assigned");

        // Unregister takes only the runner token, and always succeeds.
        for _ in 0..2 {
            let response = send(bearer(
                &app,
                Method::POST,
                "/api/runners/unregister",
                &token,
            ))
            .await;
            assert_json_content_type(&response);
            assert_eq!(json_body(response, 200).await, json!("Success"));
        }
        let session = register(&app, &token, 1).await;

        // Invalidation takes the runner offline and deletes it.
        let message = json_body(
            send(bearer(
                &app,
                Method::DELETE,
                &format!("/api/admins/invalidate_runner?runner_id={id}"),
                &admin,
            ))
            .await,
            200,
        )
        .await;
        assert_eq!(
            message,
            json!(format!(
                "If a runner with id {id} existed it was successfully invalidated and deleted"
            ))
        );
        let detail = assert_error(
            send(
                bearer(
                    &app,
                    Method::POST,
                    &format!("/api/runners/heartbeat?session_token={session}"),
                    &token,
                )
                .json(&json!({"progress": 0})),
            )
            .await,
            401,
        )
        .await;
        assert_eq!(detail, "No runner with that token exists!");
    }
);

db_test!(
    async fn a_job_goes_from_upload_to_transcript(backend: Backend) {
        let app = app(backend).await;
        let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;
        let (_, token) = create_runner(&app, &admin).await;
        let session = register(&app, &token, 5).await;

        let audio: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let part = multipart::Part::bytes(audio.clone())
            .file_name("talk.mp3")
            .mime_str("audio/mpeg")
            .unwrap();
        let job_id = json_body(
            send(
                bearer(&app, Method::POST, "/api/jobs/submit_job", &user)
                    .multipart(multipart::Form::new().part("audio_file", part)),
            )
            .await,
            200,
        )
        .await
        .as_i64()
        .unwrap();

        // Assigned at submission.
        assert_eq!(
            heartbeat(&app, &token, &session, 0.0).await,
            json!({"abort": false, "job_assigned": true})
        );
        assert_eq!(
            job_info(&app, &user, job_id).await["step"],
            "runner_assigned"
        );

        // submit before fetching the audio: 400.
        assert_error(
            send(
                bearer(
                    &app,
                    Method::POST,
                    &format!("/api/runners/submit_job_result?session_token={session}"),
                    &token,
                )
                .json(&json!({"error_msg": "too early"})),
            )
            .await,
            400,
        )
        .await;

        let info = json_body(
            send(bearer(
                &app,
                Method::GET,
                &format!("/api/runners/retrieve_job_info?session_token={session}"),
                &token,
            ))
            .await,
            200,
        )
        .await;
        assert_eq!(info["id"], job_id);
        assert_eq!(info["settings"]["model"], "large");

        let response = send(bearer(
            &app,
            Method::POST,
            &format!("/api/runners/retrieve_job_audio?session_token={session}"),
            &token,
        ))
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(content_type(&response), "audio/mpeg");
        assert_eq!(response.bytes().await.unwrap().to_vec(), audio);
        assert_eq!(
            job_info(&app, &user, job_id).await["step"],
            "runner_in_progress"
        );

        assert_eq!(
            heartbeat(&app, &token, &session, 42.5).await,
            json!({"abort": false, "job_assigned": true})
        );
        assert_eq!(job_info(&app, &user, job_id).await["progress"], 42.5);

        let transcript = json!({"as_txt": "hello", "as_srt": "1\n", "as_tsv": "t", "as_vtt": "WEBVTT",
                                "as_json": {"segments": []}});
        let response = send(
            bearer(
                &app,
                Method::POST,
                &format!("/api/runners/submit_job_result?session_token={session}"),
                &token,
            )
            .json(&json!({"transcript": transcript})),
        )
        .await;
        assert_json_content_type(&response);
        assert_eq!(json_body(response, 200).await, json!("Success"));

        let job = job_info(&app, &user, job_id).await;
        assert_eq!(job["step"], "success", "{job}");
        assert_eq!(job["runner_name"], "runner");
        assert!(job["finish_timestamp"].is_string());
        assert_eq!(
            heartbeat(&app, &token, &session, 0.0).await,
            json!({"abort": false, "job_assigned": false})
        );
        let text = json_body(
            send(bearer(
                &app,
                Method::GET,
                &format!("/api/jobs/download_transcript?job_id={job_id}&transcript_type=as_txt"),
                &user,
            ))
            .await,
            200,
        )
        .await;
        assert_eq!(text, json!("hello"));
    }
);
