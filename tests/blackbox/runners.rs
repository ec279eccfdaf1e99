//! Issue 5, runner protocol over real HTTP (SPEC §3.6, §3.7): runner tokens,
//! registration, heartbeats, credentials, and a full job cycle from upload to
//! transcript, on SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use scribe_tests::accounts::{
    app_with_mail, bearer, mail_to, plain_client, session_token, user_session,
};
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

fn provisioning() -> Value {
    json!({"security": {"local_account": {"user_provisioning": {
        "0": {"email": ADMIN, "password": ADMIN_PASSWORD, "is_admin": true},
        "1": {"email": USER, "password": USER_PASSWORD, "is_admin": false}
    }}}})
}

async fn app(backend: Backend) -> TestApp {
    app_with(backend, json!({})).await
}

/// The provisioned admin and user, plus `extra` merged over the config.
async fn app_with(backend: Backend, extra: Value) -> TestApp {
    let mut config = provisioning();
    merge_json(&mut config, extra);
    spawn_app_with(backend, config).await
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

/// Uploads a small audio file as `user`, with `settings_id` if given.
async fn submit_job(app: &TestApp, user: &str, settings_id: Option<i64>) -> i64 {
    let part = multipart::Part::bytes(vec![7u8; 1000])
        .file_name("talk.mp3")
        .mime_str("audio/mpeg")
        .unwrap();
    let query = settings_id
        .map(|id| format!("?job_settings_id={id}"))
        .unwrap_or_default();
    json_body(
        send(
            bearer(
                app,
                Method::POST,
                &format!("/api/jobs/submit_job{query}"),
                user,
            )
            .multipart(multipart::Form::new().part("audio_file", part)),
        )
        .await,
        200,
    )
    .await
    .as_i64()
    .unwrap()
}

async fn abort(app: &TestApp, user: &str, job_ids: &[i64]) -> Response {
    send(bearer(app, Method::POST, "/api/jobs/abort", user).json(&job_ids)).await
}

/// `POST /retrieve_job_audio`; the job is then in progress.
async fn fetch_audio(app: &TestApp, token: &str, session: &str) {
    let response = send(bearer(
        app,
        Method::POST,
        &format!("/api/runners/retrieve_job_audio?session_token={session}"),
        token,
    ))
    .await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
}

async fn submit_result(app: &TestApp, token: &str, session: &str, result: Value) -> Response {
    send(
        bearer(
            app,
            Method::POST,
            &format!("/api/runners/submit_job_result?session_token={session}"),
            token,
        )
        .json(&result),
    )
    .await
}

fn transcript() -> Value {
    json!({"transcript": {"as_txt": "hello", "as_srt": "1\n", "as_tsv": "t",
                          "as_vtt": "WEBVTT", "as_json": {"segments": []}}})
}

db_test!(
    async fn a_silent_runner_loses_its_job_to_a_free_runner(backend: Backend) {
        // SPEC §3.6, §3.11: silent for the timeout → offline, and its job goes
        // to a free runner at once, with no other event to trigger scheduling.
        let app = app_with(
            backend,
            json!({"runners": {"heartbeat_timeout_seconds": 2}}),
        )
        .await;
        let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;
        let (silent_id, silent_token) = create_runner(&app, &admin).await;
        let (alive_id, alive_token) = create_runner(&app, &admin).await;
        // Higher priority: the job goes to the runner that will go silent.
        let silent_session = register(&app, &silent_token, 9).await;
        let job_id = submit_job(&app, &user, None).await;
        let alive_session = register(&app, &alive_token, 1).await;
        let job = job_info(&app, &user, job_id).await;
        assert_eq!(job["step"], "runner_assigned");
        assert_eq!(job["runner_id"], silent_id);
        fetch_audio(&app, &silent_token, &silent_session).await;
        heartbeat(&app, &silent_token, &silent_session, 10.0).await;
        let last_beat = Instant::now();

        // Only the second runner keeps beating; it gets the job.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let beat = heartbeat(&app, &alive_token, &alive_session, 0.0).await;
            if beat["job_assigned"] == json!(true) {
                break;
            }
            assert!(Instant::now() < deadline, "the job was never reassigned");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            last_beat.elapsed() >= Duration::from_secs(2),
            "reassigned before the timeout: {:?}",
            last_beat.elapsed()
        );
        let job = job_info(&app, &user, job_id).await;
        assert_eq!(job["step"], "runner_assigned", "{job}");
        assert_eq!(job["runner_id"], alive_id);
        assert_eq!(job["progress"], 0.0);

        // The silent runner is offline now.
        let detail = assert_error(
            send(
                bearer(
                    &app,
                    Method::POST,
                    &format!("/api/runners/heartbeat?session_token={silent_session}"),
                    &silent_token,
                )
                .json(&json!({"progress": 50})),
            )
            .await,
            403,
        )
        .await;
        assert_eq!(detail, "This runner is currently not registered as online!");

        // And the second runner finishes the job.
        fetch_audio(&app, &alive_token, &alive_session).await;
        json_body(
            submit_result(&app, &alive_token, &alive_session, transcript()).await,
            200,
        )
        .await;
        assert_eq!(job_info(&app, &user, job_id).await["step"], "success");
    }
);

db_test!(
    async fn aborting_a_job_in_each_state(backend: Backend) {
        let app = app(backend).await;
        let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;

        // Queued (no runner online): failed at once.
        let queued = submit_job(&app, &user, None).await;
        assert_eq!(
            job_info(&app, &user, queued).await["step"],
            "pending_runner"
        );
        assert_eq!(
            json_body(abort(&app, &user, &[queued]).await, 200).await,
            json!("Success")
        );
        let job = job_info(&app, &user, queued).await;
        assert_eq!(job["step"], "failed", "{job}");
        assert_eq!(job["error_msg"], "Job was aborted");
        assert_eq!(job["abort"], true);
        assert_eq!(job["progress"], 0.0);
        assert!(job["finish_timestamp"].is_string());
        // Finished: a second abort is refused.
        assert_error(abort(&app, &user, &[queued]).await, 400).await;

        // Assigned, audio not fetched: failed at once, the runner is free.
        let (_, token) = create_runner(&app, &admin).await;
        let session = register(&app, &token, 1).await;
        let assigned = submit_job(&app, &user, None).await;
        assert_eq!(
            heartbeat(&app, &token, &session, 0.0).await,
            json!({"abort": false, "job_assigned": true})
        );
        assert_eq!(
            json_body(abort(&app, &user, &[assigned]).await, 200).await,
            json!("Success")
        );
        let job = job_info(&app, &user, assigned).await;
        assert_eq!(job["step"], "failed", "{job}");
        assert_eq!(job["error_msg"], "Job was aborted");
        assert_eq!(
            heartbeat(&app, &token, &session, 0.0).await,
            json!({"abort": false, "job_assigned": false})
        );

        // In progress: aborting, the heartbeat says abort, the runner's error
        // is stored as sent.
        let running = submit_job(&app, &user, None).await;
        assert_eq!(
            job_info(&app, &user, running).await["step"],
            "runner_assigned"
        );
        fetch_audio(&app, &token, &session).await;
        heartbeat(&app, &token, &session, 30.0).await;
        assert_eq!(
            json_body(abort(&app, &user, &[running]).await, 200).await,
            json!("Success")
        );
        let job = job_info(&app, &user, running).await;
        assert_eq!(job["step"], "aborting", "{job}");
        assert_eq!(job["abort"], true);
        assert_eq!(
            heartbeat(&app, &token, &session, 40.0).await,
            json!({"abort": true, "job_assigned": false})
        );
        // Aborting already: 400, nothing changes.
        assert_error(abort(&app, &user, &[running]).await, 400).await;
        assert_eq!(job_info(&app, &user, running).await["step"], "aborting");
        json_body(
            submit_result(
                &app,
                &token,
                &session,
                json!({"error_msg": "job was aborted"}),
            )
            .await,
            200,
        )
        .await;
        let job = job_info(&app, &user, running).await;
        assert_eq!(job["step"], "failed", "{job}");
        assert_eq!(job["error_msg"], "job was aborted");
        assert_eq!(
            heartbeat(&app, &token, &session, 0.0).await,
            json!({"abort": false, "job_assigned": false})
        );

        // In progress, and the runner hands in a transcript anyway: the abort
        // is final (SPEC §3.11).
        let late = submit_job(&app, &user, None).await;
        fetch_audio(&app, &token, &session).await;
        json_body(abort(&app, &user, &[late]).await, 200).await;
        json_body(
            submit_result(&app, &token, &session, transcript()).await,
            200,
        )
        .await;
        let job = job_info(&app, &user, late).await;
        assert_eq!(job["step"], "failed", "{job}");
        assert_eq!(job["error_msg"], "Job was aborted");
        assert_error(
            send(bearer(
                &app,
                Method::GET,
                &format!("/api/jobs/download_transcript?job_id={late}&transcript_type=as_txt"),
                &user,
            ))
            .await,
            400,
        )
        .await;
    }
);

db_test!(
    async fn a_finished_job_mails_its_owner_when_asked_to(backend: Backend) {
        let (app, sink) = app_with_mail(backend, provisioning()).await;
        let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;
        let (_, token) = create_runner(&app, &admin).await;
        let session = register(&app, &token, 1).await;

        // Without email_notification: no mail.
        let quiet = submit_job(&app, &user, None).await;
        fetch_audio(&app, &token, &session).await;
        json_body(
            submit_result(&app, &token, &session, transcript()).await,
            200,
        )
        .await;
        assert_eq!(job_info(&app, &user, quiet).await["step"], "success");

        let settings_id = json_body(
            send(
                bearer(&app, Method::POST, "/api/jobs/submit_settings", &user)
                    .json(&json!({"email_notification": true})),
            )
            .await,
            200,
        )
        .await
        .as_i64()
        .unwrap();
        let job_id = submit_job(&app, &user, Some(settings_id)).await;
        fetch_audio(&app, &token, &session).await;
        json_body(
            submit_result(&app, &token, &session, transcript()).await,
            200,
        )
        .await;
        assert_eq!(job_info(&app, &user, job_id).await["step"], "success");

        let mail = mail_to(&sink, USER, "is ready").await;
        assert!(mail.subject.contains("talk.mp3"), "{}", mail.subject);
        assert!(
            mail.body.contains("http://localhost:5173/#/"),
            "a link to the client: {}",
            mail.body
        );
        // A failure mails too.
        let failing = submit_job(&app, &user, Some(settings_id)).await;
        fetch_audio(&app, &token, &session).await;
        json_body(
            submit_result(
                &app,
                &token,
                &session,
                json!({"error_msg": "out of memory"}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(job_info(&app, &user, failing).await["step"], "failed");
        let mail = mail_to(&sink, USER, "failed").await;
        assert!(mail.body.contains("out of memory"), "{}", mail.body);
        // Exactly one mail per notifying job: the quiet job sent none.
        let to_user = sink
            .messages()
            .into_iter()
            .filter(|m| m.recipients.iter().any(|r| r == USER))
            .count();
        assert_eq!(to_user, 2);
    }
);

db_test!(
    async fn deleting_a_user_takes_their_jobs_out_cleanly(backend: Backend) {
        // SPEC §3.11: queued jobs leave the queue, running ones are taken from
        // their runners, and scheduling carries on for everyone else.
        let (app, sink) = app_with_mail(backend, provisioning()).await;
        let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
        let other = session_token(&app, USER, USER_PASSWORD, "").await;
        let leaving = user_session(&app, &sink, "leaving@example.org", true).await;
        let (_, busy_token) = create_runner(&app, &admin).await;
        let (_, assigned_token) = create_runner(&app, &admin).await;
        let busy = register(&app, &busy_token, 9).await;
        let running = submit_job(&app, &leaving, None).await;
        fetch_audio(&app, &busy_token, &busy).await;
        let assigned_session = register(&app, &assigned_token, 5).await;
        let assigned = submit_job(&app, &leaving, None).await;
        let queued = submit_job(&app, &leaving, None).await;
        assert_eq!(
            job_info(&app, &leaving, running).await["step"],
            "runner_in_progress"
        );
        assert_eq!(
            job_info(&app, &leaving, assigned).await["step"],
            "runner_assigned"
        );
        assert_eq!(
            job_info(&app, &leaving, queued).await["step"],
            "pending_runner"
        );
        // Another user's job waits behind them.
        let waiting = submit_job(&app, &other, None).await;
        assert_eq!(
            job_info(&app, &other, waiting).await["step"],
            "pending_runner"
        );

        let response = send(bearer(&app, Method::DELETE, "/api/users/delete", &leaving)).await;
        assert_eq!(json_body(response, 200).await, json!("Success"));

        // Both runners were freed and the waiting job went to one of them.
        let job = job_info(&app, &other, waiting).await;
        assert_eq!(job["step"], "runner_assigned", "{job}");
        let busy_beat = heartbeat(&app, &busy_token, &busy, 50.0).await;
        let assigned_beat = heartbeat(&app, &assigned_token, &assigned_session, 0.0).await;
        assert_eq!(busy_beat["abort"], false);
        assert_eq!(assigned_beat["abort"], false);
        // The higher-priority runner got the waiting job.
        assert_eq!(busy_beat["job_assigned"], true, "{busy_beat}");
        assert_eq!(assigned_beat["job_assigned"], false, "{assigned_beat}");
        // The busy runner's late transcript of the deleted job changes nothing.
        assert_error(
            submit_result(&app, &busy_token, &busy, transcript()).await,
            400,
        )
        .await;
        assert_eq!(
            job_info(&app, &other, waiting).await["step"],
            "runner_assigned"
        );
        // The new job runs normally.
        fetch_audio(&app, &busy_token, &busy).await;
        json_body(
            submit_result(&app, &busy_token, &busy, transcript()).await,
            200,
        )
        .await;
        assert_eq!(job_info(&app, &other, waiting).await["step"], "success");
        // And new submissions keep working.
        let next = submit_job(&app, &other, None).await;
        assert_eq!(
            job_info(&app, &other, next).await["step"],
            "runner_assigned"
        );
    }
);
