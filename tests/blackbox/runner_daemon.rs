//! Issue 5, the `scribe-runner` daemon: the real binary against the real server, on
//! SQLite and PostgreSQL. A user submits jobs, the daemon (dummy mode, then command
//! mode with a small shell script) transcribes them, the user downloads the
//! transcript, and SIGTERM makes the daemon unregister.

use std::time::{Duration, Instant};

use scribe_tests::accounts::{bearer, session_token};
use scribe_tests::reqwest::{multipart, Method, RequestBuilder, Response};
use scribe_tests::runners::RunnerProcess;
use scribe_tests::serde_json::{json, Value};
use scribe_tests::*;

const ADMIN: &str = "root@example.org";
const ADMIN_PASSWORD: &str = "Provisioned-Pass-1";
const USER: &str = "user@example.org";
const USER_PASSWORD: &str = "Provisioned-Pass-2";
/// How long a job may take from submission to a final step.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

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

async fn create_runner_token(app: &TestApp) -> String {
    let admin = session_token(app, ADMIN, ADMIN_PASSWORD, "admin").await;
    let body = json_body(
        send(bearer(
            app,
            Method::POST,
            "/api/admins/create_runner",
            &admin,
        ))
        .await,
        200,
    )
    .await;
    body["token"].as_str().unwrap().to_owned()
}

async fn submit_job(app: &TestApp, user: &str, audio: Vec<u8>) -> i64 {
    let part = multipart::Part::bytes(audio)
        .file_name("talk.mp3")
        .mime_str("audio/mpeg")
        .unwrap();
    json_body(
        send(
            bearer(app, Method::POST, "/api/jobs/submit_job", user)
                .multipart(multipart::Form::new().part("audio_file", part)),
        )
        .await,
        200,
    )
    .await
    .as_i64()
    .unwrap()
}

/// Polls `/api/jobs/info` until the job is `success` or `failed`.
async fn wait_until_finished(
    app: &TestApp,
    user: &str,
    job_id: i64,
    runner: &RunnerProcess,
) -> Value {
    let started = Instant::now();
    loop {
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
        let job = body[0].clone();
        if job["step"] == "success" || job["step"] == "failed" {
            return job;
        }
        assert!(
            started.elapsed() < JOB_TIMEOUT,
            "job {job_id} unfinished after {JOB_TIMEOUT:?}: {job}\n--- runner ---\n{}\n--- server ---\n{}",
            runner.stderr.dump(),
            app.logs().dump()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn transcript(app: &TestApp, user: &str, job_id: i64, kind: &str) -> Value {
    json_body(
        send(bearer(
            app,
            Method::GET,
            &format!("/api/jobs/download_transcript?job_id={job_id}&transcript_type={kind}"),
            user,
        ))
        .await,
        200,
    )
    .await
}

/// `as_json` arrives as a string holding the JSON document (as in Project-W).
async fn json_transcript(app: &TestApp, user: &str, job_id: i64) -> Value {
    match transcript(app, user, job_id, "as_json").await {
        Value::String(text) => scribe_tests::serde_json::from_str(&text).unwrap(),
        other => other,
    }
}

/// After the daemon unregistered, its token can register a fresh session (an online
/// runner would get 403), and that session's heartbeat works; `job_assigned` says
/// whether a job is waiting in the queue for it.
async fn assert_unregistered(app: &TestApp, token: &str, job_assigned: bool) {
    let response = send(
        bearer(app, Method::POST, "/api/runners/register", token).json(&json!({
            "name": "probe", "version": "0", "git_hash": "x",
            "source_code_url": "https://example.org", "priority": 1
        })),
    )
    .await;
    let body = json_body(response, 200).await;
    let session = body["session_token"].as_str().unwrap();
    let beat = json_body(
        send(
            bearer(
                app,
                Method::POST,
                &format!("/api/runners/heartbeat?session_token={session}"),
                token,
            )
            .json(&json!({"progress": 0})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(beat, json!({"abort": false, "job_assigned": job_assigned}));
    json_body(
        send(bearer(app, Method::POST, "/api/runners/unregister", token)).await,
        200,
    )
    .await;
}

/// The dummy's transcript line (crates/runner/src/processor.rs `dummy_line`).
fn dummy_line(audio: &[u8], content_type: &str) -> String {
    let checksum = audio.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "Dummy transcript of {} bytes of {content_type} (fnv1a64 {checksum:016x}).",
        audio.len()
    )
}

db_test!(
    async fn dummy_runner_transcribes_jobs_and_unregisters_on_sigterm(backend: Backend) {
        let app = app(backend).await;
        let token = create_runner_token(&app).await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;
        let dir = tempfile::tempdir().unwrap();
        let mut runner = RunnerProcess::start(
            dir.path(),
            &token,
            &format!(
                "backend_url: {}/\nname: dummy-1\npriority: 3\nmode: dummy\n\
                 heartbeat_interval_secs: 0.2\ndummy:\n  duration_secs: 0.5\n",
                app.base_url
            ),
        );

        // Two jobs in a row: the daemon goes back for the next one.
        for round in 0..2u32 {
            let audio: Vec<u8> = (0..150_000u32 + round).map(|i| (i % 253) as u8).collect();
            let job_id = submit_job(&app, &user, audio.clone()).await;
            let job = wait_until_finished(&app, &user, job_id, &runner).await;
            assert_eq!(job["step"], "success", "{job}\n{}", runner.stderr.dump());
            assert_eq!(job["runner_name"], "dummy-1");

            let line = dummy_line(&audio, "audio/mpeg");
            assert_eq!(
                transcript(&app, &user, job_id, "as_txt").await,
                json!(format!("{line}\n"))
            );
            let vtt = transcript(&app, &user, job_id, "as_vtt").await;
            assert!(vtt.as_str().unwrap().starts_with("WEBVTT"), "{vtt}");
            let as_json = json_transcript(&app, &user, job_id).await;
            assert_eq!(as_json["text"], json!(line), "{as_json}");
        }

        let status = runner.terminate().await;
        assert!(status.success(), "{status}\n{}", runner.stderr.dump());
        assert_unregistered(&app, &token, false).await;
    }
);

/// Writes the five formats, or fails with a message on stderr for a 1-byte file.
const SCRIPT: &str = r#"#!/bin/sh
audio="$1"
out="$2"
size=$(wc -c < "$audio" | tr -d ' ')
if [ "$size" = 1 ]; then
    echo "cannot transcribe a single byte" >&2
    exit 3
fi
echo "progress: 50"
text="command transcript of job $SCRIBE_JOB_ID ($size bytes)"
printf '%s' "$text" > "$out/audio.txt"
printf '1\n00:00:00,000 --> 00:00:01,000\n%s\n' "$text" > "$out/audio.srt"
printf 'start\tend\ttext\n0\t1000\t%s\n' "$text" > "$out/audio.tsv"
printf 'WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n%s\n' "$text" > "$out/audio.vtt"
printf '{"text": "%s", "segments": []}' "$text" > "$out/audio.json"
"#;

db_test!(
    async fn command_runner_runs_a_program_and_reports_its_failures(backend: Backend) {
        let app = app(backend).await;
        let token = create_runner_token(&app).await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("transcribe.sh");
        std::fs::write(&script, SCRIPT).unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let mut runner = RunnerProcess::start(
            dir.path(),
            &token,
            &format!(
                "backend_url: {}\nname: command-1\nmode: command\nheartbeat_interval_secs: 0.2\n\
                 command:\n  argv: [/bin/sh, {}]\n  working_dir: {}\n",
                app.base_url,
                script.display(),
                work.display()
            ),
        );

        let job_id = submit_job(&app, &user, vec![7u8; 5000]).await;
        let job = wait_until_finished(&app, &user, job_id, &runner).await;
        assert_eq!(job["step"], "success", "{job}\n{}", runner.stderr.dump());
        let text = format!("command transcript of job {job_id} (5000 bytes)");
        assert_eq!(transcript(&app, &user, job_id, "as_txt").await, json!(text));
        assert_eq!(
            transcript(&app, &user, job_id, "as_srt").await,
            json!(format!("1\n00:00:00,000 --> 00:00:01,000\n{text}\n"))
        );
        assert_eq!(
            json_transcript(&app, &user, job_id).await["text"],
            json!(text)
        );

        // A failing program: the job fails with the tail of its stderr.
        let job_id = submit_job(&app, &user, vec![1u8]).await;
        let job = wait_until_finished(&app, &user, job_id, &runner).await;
        assert_eq!(job["step"], "failed", "{job}");
        let error = job["error_msg"].as_str().unwrap();
        assert!(error.contains("cannot transcribe a single byte"), "{error}");

        // Job directories are removed once the result is in (just after the backend
        // has taken it).
        let started = Instant::now();
        while std::fs::read_dir(&work).unwrap().count() > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "job directories left in {}",
                work.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let status = runner.terminate().await;
        assert!(status.success(), "{status}\n{}", runner.stderr.dump());
        assert_unregistered(&app, &token, false).await;
    }
);

db_test!(
    async fn an_aborted_job_stops_the_dummy_and_fails(backend: Backend) {
        let app = app(backend).await;
        let token = create_runner_token(&app).await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;
        let dir = tempfile::tempdir().unwrap();
        let mut runner = RunnerProcess::start(
            dir.path(),
            &token,
            &format!(
                "backend_url: {}\nheartbeat_interval_secs: 0.2\ndummy:\n  duration_secs: 120\n",
                app.base_url
            ),
        );
        let job_id = submit_job(&app, &user, vec![3u8; 1000]).await;

        // Wait until the runner works on it and reports progress.
        let started = Instant::now();
        loop {
            let body = json_body(
                send(bearer(
                    &app,
                    Method::GET,
                    &format!("/api/jobs/info?job_ids={job_id}"),
                    &user,
                ))
                .await,
                200,
            )
            .await;
            if body[0]["step"] == "runner_in_progress" && body[0]["progress"].as_f64() > Some(0.0) {
                break;
            }
            assert!(
                started.elapsed() < JOB_TIMEOUT,
                "never in progress: {body}\n{}",
                runner.stderr.dump()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let response =
            send(bearer(&app, Method::POST, "/api/jobs/abort", &user).json(&json!([job_id]))).await;
        assert_eq!(response.status(), 200);
        let job = wait_until_finished(&app, &user, job_id, &runner).await;
        assert_eq!(job["step"], "failed", "{job}");
        assert_eq!(job["error_msg"], "job was aborted", "{job}");

        // The runner is free again: the next job is done at once... by a runner that
        // takes two minutes per job, so only check that it is taken.
        let next = submit_job(&app, &user, vec![4u8; 10]).await;
        let started = Instant::now();
        loop {
            let body = json_body(
                send(bearer(
                    &app,
                    Method::GET,
                    &format!("/api/jobs/info?job_ids={next}"),
                    &user,
                ))
                .await,
                200,
            )
            .await;
            if body[0]["step"] == "runner_in_progress" {
                break;
            }
            assert!(
                started.elapsed() < JOB_TIMEOUT,
                "the next job was not taken: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // SIGTERM mid-job: the runner stops at once, unregisters, and the job goes back
        // to the queue (the probe session gets it).
        let status = runner.terminate().await;
        assert!(status.success(), "{status}\n{}", runner.stderr.dump());
        assert_unregistered(&app, &token, true).await;
    }
);
