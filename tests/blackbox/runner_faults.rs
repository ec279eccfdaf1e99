//! Issue 5, jobs and runners under faults, with real `scribe-runner` daemons (dummy mode)
//! where the runner's side matters and hand-driven runner calls where the test needs to
//! see each response: the whole job life in all five formats; a runner killed with
//! SIGKILL mid-job; the server stopped (SIGTERM, then SIGKILL) mid-queue; two replicas on
//! one PostgreSQL database with 10 runners and 200 jobs; tampered ciphertext in both
//! storage backends; foreign ids, bad runner credentials and stale results.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use scribe_tests::accounts::{bearer, plain_client, session_token};
use scribe_tests::reqwest::{Method, RequestBuilder, Response};
use scribe_tests::runners::*;
use scribe_tests::serde_json::{json, Value};
use scribe_tests::*;

/// The dummy's one segment (0 to 1 s, `line`) as each text format must show it: how it
/// starts and a piece it must contain. The exact layout (timestamp style, blank lines
/// between cues) is the runner's business.
fn dummy_format_parts(line: &str) -> [(&'static str, &'static str, String); 4] {
    [
        ("as_txt", "Dummy transcript", format!("{line}\n")),
        ("as_srt", "1\n", format!(" --> 00:00:01,000\n{line}\n")),
        (
            "as_tsv",
            "start\tend\ttext\n",
            format!("\n0\t1000\t{line}\n"),
        ),
        ("as_vtt", "WEBVTT\n", format!(":01.000\n{line}\n")),
    ]
}

async fn app(backend: Backend, extra: Value) -> TestApp {
    let mut config = provisioning();
    merge_json(&mut config, extra);
    spawn_app_with(backend, config).await
}

async fn transcript_text(app: &TestApp, user: &str, job_id: i64) -> String {
    let body = json_body(download(app, user, job_id, "as_txt").await, 200).await;
    body.as_str()
        .unwrap_or_else(|| panic!("as_txt is a JSON string: {body}"))
        .to_owned()
}

db_test!(
    /// submit → runner_assigned → runner_in_progress → success → downloaded, with a real
    /// daemon; every format downloads as a JSON string; events reach the owner only.
    async fn a_job_goes_through_every_step_and_every_format(backend: Backend) {
        let app = app(backend, json!({})).await;
        let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;
        let other = session_token(&app, OTHER, OTHER_PASSWORD, "").await;
        let (runner_id, token) = create_runner(&app, &admin).await;
        let runner = RunnerDaemon::start(
            &app.base_url,
            &token,
            &DaemonConfig::dummy("lifecycle-1", 1.5),
        );
        runner.registered().await;
        let mut own_events = EventStream::open(&app, &user).await;
        let mut other_events = EventStream::open(&app, &other).await;

        // The job is assigned at submission; a stopped daemon can't move it on yet.
        runner.signal(libc::SIGSTOP);
        let audio = audio(1, 150_000);
        let job_id = submit_job(&app, &user, audio.clone()).await;
        let job = job_info(&app, &user, job_id).await;
        runner.signal(libc::SIGCONT);
        assert_eq!(job["step"], "runner_assigned", "{job}");
        assert_eq!(job["runner_id"], runner_id, "{job}");
        assert_eq!(job["runner_name"], "lifecycle-1", "{job}");
        assert_eq!(job["progress"], 0.0, "{job}");
        assert_eq!(job["downloaded"], Value::Null, "{job}");
        assert_eq!(job["finish_timestamp"], Value::Null, "{job}");

        // In progress with the dummy's progress, then success.
        let mut in_progress_seen = false;
        let mut progress_seen = 0.0f64;
        let started = Instant::now();
        let job = loop {
            let job = job_info(&app, &user, job_id).await;
            match job["step"].as_str() {
                Some("runner_in_progress") => {
                    in_progress_seen = true;
                    progress_seen = progress_seen.max(job["progress"].as_f64().unwrap());
                }
                Some("runner_assigned") => {}
                Some("success") => break job,
                _ => panic!("unexpected step: {job}\n{}", runner.logs.dump()),
            }
            assert!(
                started.elapsed() < RUNNER_WAIT,
                "job {job_id} unfinished: {job}\n{}",
                runner.logs.dump()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(in_progress_seen, "never saw runner_in_progress");
        assert!(
            progress_seen > 0.0 && progress_seen <= 100.0,
            "heartbeat progress while in progress: {progress_seen}"
        );
        assert_eq!(job["progress"], 100.0, "{job}");
        assert_eq!(job["downloaded"], false, "{job}");
        assert_eq!(job["runner_id"], runner_id, "{job}");
        assert_eq!(job["runner_name"], "lifecycle-1", "{job}");
        assert_eq!(job["error_msg"], Value::Null, "{job}");
        assert!(
            job["finish_timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with("+00:00")),
            "{job}"
        );

        // All five formats, each a JSON string with exactly `application/json`.
        let line = dummy_line(&audio, "audio/mpeg");
        for (kind, start, inside) in dummy_format_parts(&line) {
            let response = download(&app, &user, job_id, kind).await;
            assert_json_content_type(&response);
            let text = json_body(response, 200).await;
            let text = text
                .as_str()
                .unwrap_or_else(|| panic!("{kind} is a JSON string: {text}"));
            assert!(
                text.starts_with(start) && text.contains(&inside),
                "{kind}: {text:?}"
            );
        }
        let response = download(&app, &user, job_id, "as_json").await;
        assert_json_content_type(&response);
        let text = json_body(response, 200).await;
        let document: Value = serde_json::from_str(text.as_str().expect("as_json is a string"))
            .expect("as_json holds a JSON document");
        assert_eq!(document["text"], line, "{document}");
        assert_eq!(document["language"], "en", "{document}");
        let segment = &document["segments"][0];
        assert_eq!(
            (&segment["start"], &segment["end"], &segment["text"]),
            (&json!(0.0), &json!(1.0), &json!(line)),
            "{document}"
        );

        // Downloaded now: the step, the flag and the filters say so.
        let job = job_info(&app, &user, job_id).await;
        assert_eq!(job["step"], "downloaded", "{job}");
        assert_eq!(job["downloaded"], true, "{job}");
        assert_eq!(job["progress"], 100.0, "{job}");
        let count = |query: &'static str| {
            let (app, user) = (&app, &user);
            async move {
                json_body(
                    bearer(app, Method::GET, &format!("/api/jobs/count?{query}"), user)
                        .send()
                        .await
                        .unwrap(),
                    200,
                )
                .await
            }
        };
        assert_eq!(
            count("exclude_finished=false&exclude_downloaded=true").await,
            0
        );
        assert_eq!(
            count("exclude_finished=false&exclude_downloaded=false").await,
            1
        );
        runner
            .expect_log_from(0, "result submitted", |l| {
                l.message() == Some("result submitted")
            })
            .await;
        assert_eq!(runner.job_ids_logged("result submitted"), vec![job_id]);

        // Deleted with its blobs.
        let response = bearer(&app, Method::DELETE, "/api/jobs/delete", &user)
            .json(&json!([job_id]))
            .send()
            .await
            .unwrap();
        assert_eq!(json_body(response, 200).await, json!("Success"));
        assert_eq!(app.db().scalar_i64("SELECT COUNT(*) FROM blobs").await, 0);

        // The owner heard about each stage.
        for name in ["job_created", "job_updated", "job_deleted"] {
            own_events
                .wait_for(&EventStream::message(name, job_id), LOG_TIMEOUT)
                .await;
        }
        // The other user hears about their own job, and by then would have heard the
        // owner's events too, had they leaked (one notifier, in order).
        let others = submit_job(&app, &other, vec![2u8; 100]).await;
        other_events
            .wait_for(&EventStream::message("job_created", others), LOG_TIMEOUT)
            .await;
        assert!(
            !other_events.mentions(job_id),
            "another user's events leaked: {:?}",
            other_events.received
        );
    }
);

db_test!(
    /// `kill -9` of a runner mid-job: after `runners.heartbeat_timeout_seconds` the job
    /// goes back to the queue and a second daemon finishes it, once.
    async fn a_killed_runner_s_job_is_finished_by_another_runner(backend: Backend) {
        let app = app(
            backend,
            json!({"runners": {"heartbeat_timeout_seconds": 2}}),
        )
        .await;
        let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;
        let (doomed_id, doomed_token) = create_runner(&app, &admin).await;
        let (rescuer_id, rescuer_token) = create_runner(&app, &admin).await;
        let mut doomed = RunnerDaemon::start(
            &app.base_url,
            &doomed_token,
            &DaemonConfig::dummy("doomed", 120.0).priority(5),
        );
        doomed.registered().await;
        let audio = audio(3, 100_000);
        let job_id = submit_job(&app, &user, audio.clone()).await;
        let job = wait_for_job(
            &app,
            &user,
            job_id,
            RUNNER_WAIT,
            |job| job["step"] == "runner_in_progress",
            || doomed.logs.dump(),
        )
        .await;
        assert_eq!(job["runner_id"], doomed_id, "{job}");

        // A free runner of lower priority; the job stays where it is while its runner lives.
        let rescuer = RunnerDaemon::start(
            &app.base_url,
            &rescuer_token,
            &DaemonConfig::dummy("rescuer", 0.3),
        );
        rescuer.registered().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(job_info(&app, &user, job_id).await["runner_id"], doomed_id);

        doomed.kill().await;
        let killed_at = Instant::now();
        let job = wait_for_job(
            &app,
            &user,
            job_id,
            RUNNER_WAIT,
            |job| job["step"] == "success" || job["step"] == "failed",
            || rescuer.logs.dump(),
        )
        .await;
        let took = killed_at.elapsed();
        assert_eq!(job["step"], "success", "{job}");
        assert_eq!(job["runner_id"], rescuer_id, "{job}");
        assert_eq!(job["runner_name"], "rescuer", "{job}");
        // The last beat came shortly before the kill (one 0.2 s interval, more on a
        // loaded machine).
        assert!(
            took >= Duration::from_secs(1),
            "requeued before the heartbeat timeout: {took:?}"
        );
        app.expect_log("the reaper taking the killed runner offline", |line| {
            line.message() == Some("runner went silent; taking it offline")
                && line.field("runner").and_then(Value::as_i64) == Some(doomed_id)
        })
        .await;

        // Done exactly once, by the second runner, from the intact audio. (The runner
        // logs its result once the answer is in: just after the job turned success.)
        rescuer
            .expect_log_from(0, "result submitted", |l| {
                l.message() == Some("result submitted")
            })
            .await;
        assert_eq!(doomed.job_ids_logged("job retrieved"), vec![job_id]);
        assert!(doomed.job_ids_logged("result submitted").is_empty());
        assert_eq!(rescuer.job_ids_logged("job retrieved"), vec![job_id]);
        assert_eq!(rescuer.job_ids_logged("result submitted"), vec![job_id]);
        assert_eq!(
            transcript_text(&app, &user, job_id).await,
            format!("{}\n", dummy_line(&audio, "audio/mpeg"))
        );
        let finished = job["finish_timestamp"].clone();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let job = job_info(&app, &user, job_id).await;
        assert_eq!(job["finish_timestamp"], finished, "finished twice: {job}");
        assert_eq!(job["runner_id"], rescuer_id, "{job}");
    }
);

db_test!(
    /// The server stops mid-queue, gracefully (SIGTERM) and then hard (SIGKILL), and comes
    /// back on the same database, data dir and port: every job ends in success with its
    /// own transcript, and the daemon carries on by itself.
    async fn a_server_restart_mid_queue_loses_nothing(backend: Backend) {
        let port = free_port();
        let mut config = provisioning();
        merge_json(&mut config, json!({"web_server": {"port": port}}));
        let app = TestSetup::new(backend)
            .await
            .with_config(config)
            .spawn()
            .await;
        let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;
        let (_, token) = create_runner(&app, &admin).await;
        // Queued before the runner starts, so that slow uploads on a busy machine can't
        // use up the first job's time in progress; two seconds a job leave the polling
        // below time to see it.
        let audios: Vec<Vec<u8>> = (0..5).map(|i| audio(10 + i, 70_000 + i)).collect();
        let mut ids = Vec::new();
        for audio in &audios {
            ids.push(submit_job(&app, &user, audio.clone()).await);
        }
        let runner =
            RunnerDaemon::start(&app.base_url, &token, &DaemonConfig::dummy("steady", 2.0));
        runner.registered().await;

        // SIGTERM while the first job is in progress and four wait; start again at once.
        wait_for_job(
            &app,
            &user,
            ids[0],
            RUNNER_WAIT,
            |job| job["step"] == "runner_in_progress",
            || runner.logs.dump(),
        )
        .await;
        let app = app.restart().await;
        assert_eq!(app.address.port(), port);
        let infos = jobs_info(&app, &user, &ids).await;
        assert_eq!(infos.len(), ids.len(), "jobs lost: {infos:?}");

        // SIGKILL while a later job is in progress. The runner is unreachable too
        // (stopped) for longer than the heartbeat timeout the server comes back with,
        // so the server takes it offline and requeues its job; then the daemon must
        // register again on its own.
        let started = Instant::now();
        loop {
            let infos = jobs_info(&app, &user, &ids[1..]).await;
            if infos.iter().any(|j| j["step"] == "runner_in_progress") {
                break;
            }
            assert!(
                started.elapsed() < RUNNER_WAIT,
                "no later job went in progress: {infos:?}\n{}",
                runner.logs.dump()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        runner.signal(libc::SIGSTOP);
        // The job may have changed hands just before the stop: ask again once the
        // frozen runner's last request is through.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let infos = jobs_info(&app, &user, &ids).await;
        let running = infos
            .iter()
            .find(|j| j["step"] == "runner_in_progress" || j["step"] == "runner_assigned")
            .unwrap_or_else(|| panic!("the stopped runner holds no job: {infos:?}"))["id"]
            .as_i64()
            .unwrap();
        let TestApp {
            mut server,
            mut setup,
            ..
        } = app;
        server.signal(libc::SIGKILL);
        server.wait_exit(SHUTDOWN_TIMEOUT).await;
        drop(server);
        setup.merge_config(json!({"runners": {"heartbeat_timeout_seconds": 2}}));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let app = setup.spawn().await;
        app.expect_log("the reaper taking the stopped runner offline", |line| {
            line.message() == Some("runner went silent; taking it offline")
        })
        .await;
        let job = job_info(&app, &user, running).await;
        assert_eq!(job["step"], "pending_runner", "requeued: {job}");
        let mark = runner.logs.mark();
        runner.signal(libc::SIGCONT);
        runner.registered_since(mark).await;

        // Everything finishes, each job with its own transcript.
        for (id, audio) in ids.iter().zip(&audios) {
            let job = wait_for_job(
                &app,
                &user,
                *id,
                Duration::from_secs(60),
                |job| job["step"] == "success" || job["step"] == "failed",
                || runner.logs.dump(),
            )
            .await;
            assert_eq!(job["step"], "success", "{job}\n{}", runner.logs.dump());
            assert_eq!(
                transcript_text(&app, &user, *id).await,
                format!("{}\n", dummy_line(audio, "audio/mpeg"))
            );
        }
        assert_eq!(
            app.db()
                .scalar_i64("SELECT COUNT(*) FROM jobs WHERE step = 'downloaded'")
                .await,
            ids.len() as i64
        );
    }
);

/// Two `scribe` processes on one PostgreSQL database, five daemons on each, 200 jobs
/// submitted through both: every job succeeds, each is taken by exactly one runner once.
/// PostgreSQL only: several processes on one SQLite file are not a supported set-up.
#[tokio::test]
async fn two_replicas_ten_runners_two_hundred_jobs_each_done_once() {
    const RUNNERS_PER_REPLICA: usize = 5;
    const JOBS: u32 = 200;
    const LANES: u32 = 4;

    let mut first = TestSetup::new(Backend::Postgres).await;
    first.merge_config(provisioning());
    // The second replica shares the database and the secret key, not the data dir.
    let mut second = TestSetup::new(Backend::Sqlite).await;
    second.config = first.config.clone();
    second.merge_config(json!({ "data_dir": second.data_dir() }));
    let a = first.spawn().await;
    let b = second.spawn().await;
    let replicas = [&a, &b];

    let admin = session_token(&a, ADMIN, ADMIN_PASSWORD, "admin").await;
    let user = session_token(&a, USER, USER_PASSWORD, "").await;
    let mut daemons = Vec::new();
    for (side, replica) in ["a", "b"].into_iter().zip(replicas) {
        for i in 0..RUNNERS_PER_REPLICA {
            let (_, token) = create_runner(replica, &admin).await;
            daemons.push(RunnerDaemon::start(
                &replica.base_url,
                &token,
                &DaemonConfig {
                    // Idle runners beat less often; a busy one asks for its next job
                    // as soon as it hands in a result.
                    heartbeat_secs: 0.5,
                    ..DaemonConfig::dummy(&format!("{side}-{i}"), 0.0)
                },
            ));
        }
    }
    for daemon in &daemons {
        daemon.registered().await;
    }

    // Four lanes submit in parallel, alternating between the replicas.
    let started = Instant::now();
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..LANES {
        let base = replicas[(lane % 2) as usize].base_url.clone();
        let user = user.clone();
        lanes.spawn(async move {
            let client = plain_client();
            let mut submitted = Vec::new();
            for seed in (lane..JOBS).step_by(LANES as usize) {
                let part = scribe_tests::reqwest::multipart::Part::bytes(audio(seed, 300 + seed))
                    .file_name("talk.mp3")
                    .mime_str("audio/mpeg")
                    .unwrap();
                let response = client
                    .post(format!("{base}/api/jobs/submit_job"))
                    .bearer_auth(&user)
                    .multipart(
                        scribe_tests::reqwest::multipart::Form::new().part("audio_file", part),
                    )
                    .send()
                    .await
                    .unwrap();
                let id = json_body(response, 200).await.as_i64().unwrap();
                submitted.push((id, seed));
            }
            submitted
        });
    }
    let seeds: BTreeMap<i64, u32> = lanes.join_all().await.into_iter().flatten().collect();
    assert_eq!(seeds.len(), JOBS as usize);
    let submitted_in = started.elapsed();

    let unfinished = "/api/jobs/count?exclude_finished=true&exclude_downloaded=false";
    loop {
        let left = json_body(
            bearer(&a, Method::GET, unfinished, &user)
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{left} jobs unfinished after {:?}\n--- a ---\n{}",
            started.elapsed(),
            a.logs().dump()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished_in = started.elapsed();
    eprintln!("{JOBS} jobs: submitted in {submitted_in:?}, all finished in {finished_in:?}");

    let ids: Vec<i64> = seeds.keys().copied().collect();
    let names: BTreeSet<String> = daemons.iter().map(|d| d.name.clone()).collect();
    let mut per_runner: BTreeMap<String, usize> = BTreeMap::new();
    for batch in ids.chunks(50) {
        for job in jobs_info(&a, &user, batch).await {
            assert_eq!(job["step"], "success", "{job}");
            let name = job["runner_name"].as_str().unwrap().to_owned();
            assert!(names.contains(&name), "{job}");
            *per_runner.entry(name).or_default() += 1;
        }
    }
    eprintln!("jobs per runner: {per_runner:?}");

    // Each job was taken by exactly one runner, exactly once, and its result taken once.
    // (A runner logs the result once the answer is in, just after the job turned success.)
    let logged_results = || {
        daemons
            .iter()
            .map(|d| d.job_ids_logged("result submitted").len())
            .sum::<usize>()
    };
    let waiting = Instant::now();
    while logged_results() < JOBS as usize && waiting.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for message in ["job retrieved", "result submitted"] {
        let mut logged: Vec<i64> = daemons
            .iter()
            .flat_map(|d| d.job_ids_logged(message))
            .collect();
        logged.sort_unstable();
        assert_eq!(logged, ids, "`{message}` once per job across all runners");
    }
    for daemon in &daemons {
        assert!(
            !daemon.logs.dump().contains("did not take the result"),
            "{}: a result was refused:\n{}",
            daemon.name,
            daemon.logs.dump()
        );
    }
    assert_eq!(
        a.db()
            .scalar_i64("SELECT COUNT(*) FROM runner_sessions WHERE job_id IS NOT NULL")
            .await,
        0
    );

    // Every transcript is its own job's, through either replica.
    for (n, (id, seed)) in seeds.iter().enumerate() {
        let replica = replicas[n % 2];
        assert_eq!(
            transcript_text(replica, &user, *id).await,
            format!("{}\n", dummy_line(&audio(*seed, 300 + seed), "audio/mpeg")),
            "job {id}"
        );
    }
}

// --- hand-driven runner calls ---

fn registration(name: &str, priority: i64) -> Value {
    json!({"name": name, "version": "0.6.0", "git_hash": "abc",
           "source_code_url": "https://example.org/runner", "priority": priority})
}

async fn register(app: &TestApp, token: &str, name: &str, priority: i64) -> String {
    let response = bearer(app, Method::POST, "/api/runners/register", token)
        .json(&registration(name, priority))
        .send()
        .await
        .unwrap();
    json_body(response, 200).await["session_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A runner route that takes `?session_token=`.
fn online(
    app: &TestApp,
    method: Method,
    route: &str,
    token: &str,
    session: &str,
) -> RequestBuilder {
    bearer(
        app,
        method,
        &format!("/api/runners/{route}?session_token={session}"),
        token,
    )
}

async fn heartbeat(app: &TestApp, token: &str, session: &str) -> Value {
    let response = online(app, Method::POST, "heartbeat", token, session)
        .json(&json!({"progress": 0}))
        .send()
        .await
        .unwrap();
    json_body(response, 200).await
}

async fn submit_result(app: &TestApp, token: &str, session: &str, result: Value) -> Response {
    online(app, Method::POST, "submit_job_result", token, session)
        .json(&result)
        .send()
        .await
        .unwrap()
}

fn transcript_of(text: &str) -> Value {
    json!({"transcript": {"as_txt": text, "as_srt": "1\n", "as_tsv": "t",
                          "as_vtt": "WEBVTT", "as_json": {"text": text}}})
}

/// What `retrieve_job_audio` delivered: its status, the bytes that arrived, and how the
/// body ended if it didn't end cleanly.
struct AudioOutcome {
    status: u16,
    bytes: Vec<u8>,
    broken: Option<String>,
}

async fn fetch_audio(app: &TestApp, token: &str, session: &str) -> AudioOutcome {
    let mut response = match online(app, Method::POST, "retrieve_job_audio", token, session)
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => {
            return AudioOutcome {
                status: 0,
                bytes: Vec::new(),
                broken: Some(format!("no response: {e}")),
            }
        }
    };
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => {
                return AudioOutcome {
                    status,
                    bytes,
                    broken: None,
                }
            }
            Err(e) => {
                return AudioOutcome {
                    status,
                    bytes,
                    broken: Some(e.to_string()),
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Storage {
    Database,
    Directory,
}

/// Rewrites the sealed chunks of `blob` wherever `storage` keeps them.
async fn tamper(
    app: &TestApp,
    storage: Storage,
    blob: &str,
    change: impl FnOnce(&mut Vec<Vec<u8>>),
) {
    match storage {
        Storage::Database => tamper_blob_rows(app.db(), blob, change).await,
        Storage::Directory => tamper_blob_file(&blob_file(&blob_dir(app), blob), change),
    }
}

fn blob_dir(app: &TestApp) -> PathBuf {
    app.setup.data_dir().join("blobs")
}

async fn blob_of(app: &TestApp, column: &str, job_id: i64) -> String {
    scalar_text(
        app.db(),
        &format!("SELECT {column} FROM jobs WHERE id = {job_id}"),
    )
    .await
    .unwrap_or_else(|| panic!("job {job_id} has no {column}"))
}

/// Altered, truncated, reordered or transplanted ciphertext is refused: the audio stream
/// breaks off (never a byte that wasn't uploaded), a transcript download is a 500, and the
/// server logs which blob is corrupt.
async fn tampered_ciphertext_is_never_served(backend: Backend, storage: Storage) {
    let storage_config = match storage {
        Storage::Database => json!({"backend": "database"}),
        Storage::Directory => json!({"backend": "directory"}),
    };
    let app = app(backend, json!({"storage": storage_config})).await;
    let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
    let user = session_token(&app, USER, USER_PASSWORD, "").await;
    let (_, token) = create_runner(&app, &admin).await;
    let session = register(&app, &token, "probe", 1).await;

    // Four 64 KiB chunks of audio each; one change per job.
    // A broken first chunk is a 500 before the response starts; later damage can only
    // cut the stream off.
    type Change = fn(&mut Vec<Vec<u8>>);
    let changes: [(&str, bool, Change); 4] = [
        ("a flipped bit in chunk 1", false, |chunks| {
            chunks[1][100] ^= 0x01
        }),
        ("the last chunk cut off", false, |chunks| {
            chunks.pop();
        }),
        ("chunks 0 and 1 swapped", true, |chunks| chunks.swap(0, 1)),
        ("a flipped bit in chunk 0", true, |chunks| {
            chunks[0][7] ^= 0x10
        }),
    ];
    for (what, first_chunk_bad, change) in changes {
        let audio = audio(20, 200_000);
        let job_id = submit_job(&app, &user, audio.clone()).await;
        let blob = blob_of(&app, "audio_blob_id", job_id).await;
        tamper(&app, storage, &blob, change).await;
        assert_eq!(
            heartbeat(&app, &token, &session).await["job_assigned"],
            true
        );

        let outcome = fetch_audio(&app, &token, &session).await;
        match (outcome.status, &outcome.broken) {
            (200, None) => panic!(
                "{what}: tampered audio served as a complete 200 ({} bytes)",
                outcome.bytes.len()
            ),
            // Cut off: the connection ends before the last chunk.
            (200, Some(_)) => assert!(!first_chunk_bad, "{what}: 200 for an unreadable start"),
            (500, None) => assert_eq!(
                serde_json::from_slice::<Value>(&outcome.bytes).ok(),
                Some(json!({"detail": "Internal server error"})),
                "{what}"
            ),
            (status, broken) => panic!("{what}: status {status}, {broken:?}"),
        }
        if outcome.status == 200 {
            assert!(
                outcome.bytes.len() < audio.len() && audio.starts_with(&outcome.bytes),
                "{what}: {} bytes arrived that are not a prefix of the upload",
                outcome.bytes.len()
            );
        }
        let line = app
            .expect_log(&format!("an error about blob {blob}"), |line| {
                line.level() == Some("ERROR")
                    && line
                        .field_text("cause")
                        .is_some_and(|cause| cause.contains(&blob) && cause.contains("corrupt"))
            })
            .await;
        eprintln!(
            "{storage:?}, {what}: {} bytes then {:?}; server: {}",
            outcome.bytes.len(),
            outcome.broken,
            line.raw
        );
        // The runner gives up on the job; it fails with the runner's message.
        json_body(
            submit_result(
                &app,
                &token,
                &session,
                json!({"error_msg": "could not read the audio"}),
            )
            .await,
            200,
        )
        .await;
        let job = job_info(&app, &user, job_id).await;
        assert_eq!(job["step"], "failed", "{job}");
    }

    // Untouched audio arrives whole; two transcripts are stored.
    let mut finished = Vec::new();
    for text in ["first transcript", "second transcript"] {
        let audio = audio(21, 1000);
        let job_id = submit_job(&app, &user, audio.clone()).await;
        let outcome = fetch_audio(&app, &token, &session).await;
        assert_eq!(
            (outcome.status, outcome.broken.as_deref()),
            (200, None),
            "untampered audio"
        );
        assert_eq!(outcome.bytes, audio);
        json_body(
            submit_result(&app, &token, &session, transcript_of(text)).await,
            200,
        )
        .await;
        finished.push(job_id);
    }
    let (first, second) = (finished[0], finished[1]);
    assert_eq!(
        transcript_text(&app, &user, second).await,
        "second transcript"
    );

    // A flipped bit: 500, and the job stays undownloaded.
    let blob = blob_of(&app, "transcript_blob_id", first).await;
    tamper(&app, storage, &blob, |chunks| {
        let last = chunks[0].len() - 1;
        chunks[0][last] ^= 0x80;
    })
    .await;
    assert_eq!(
        assert_error(download(&app, &user, first, "as_txt").await, 500).await,
        "Internal server error"
    );
    assert_eq!(job_info(&app, &user, first).await["step"], "success");
    app.expect_log(&format!("an error about blob {blob}"), |line| {
        line.level() == Some("ERROR")
            && line
                .field_text("cause")
                .is_some_and(|cause| cause.contains(&blob) && cause.contains("corrupt"))
    })
    .await;

    // Another job's valid ciphertext moved into this blob: bound to its own blob, refused.
    let other_blob = blob_of(&app, "transcript_blob_id", second).await;
    let mut transplanted = Vec::new();
    tamper(&app, storage, &other_blob, |chunks| {
        transplanted = chunks.clone()
    })
    .await;
    tamper(&app, storage, &blob, |chunks| *chunks = transplanted).await;
    let response = download(&app, &user, first, "as_txt").await;
    assert_eq!(assert_error(response, 500).await, "Internal server error");
    assert_eq!(job_info(&app, &user, first).await["step"], "success");
    assert_eq!(
        transcript_text(&app, &user, second).await,
        "second transcript"
    );

    match storage {
        // The directory backend really held the data.
        Storage::Directory => assert_eq!(
            app.db()
                .scalar_i64("SELECT COUNT(*) FROM blob_chunks")
                .await,
            0
        ),
        Storage::Database => assert!(
            !blob_dir(&app).exists() || {
                std::fs::read_dir(blob_dir(&app)).unwrap().next().is_none()
            }
        ),
    }
}

db_test!(
    async fn tampered_chunks_in_the_database_are_never_served(backend: Backend) {
        tampered_ciphertext_is_never_served(backend, Storage::Database).await;
    }
);

db_test!(
    async fn tampered_blob_files_are_never_served(backend: Backend) {
        tampered_ciphertext_is_never_served(backend, Storage::Directory).await;
    }
);

db_test!(
    /// Issue 5 "Bad input and faults" cases not covered elsewhere: bad runner credentials
    /// on every online route, another user's running job in abort/delete/info/download,
    /// deleting a running job, and a result from a runner that lost its job.
    async fn foreign_ids_bad_credentials_and_stale_results_change_nothing(backend: Backend) {
        let app = app(
            backend,
            json!({"runners": {"heartbeat_timeout_seconds": 2}}),
        )
        .await;
        let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;
        let other = session_token(&app, OTHER, OTHER_PASSWORD, "").await;
        let (first_id, first_token) = create_runner(&app, &admin).await;
        let (second_id, second_token) = create_runner(&app, &admin).await;
        let first_session = register(&app, &first_token, "first", 5).await;

        // Every online route: a wrong session token is 403, an unknown runner token 401,
        // and neither touches the session.
        let routes: [(Method, &str, Option<Value>); 4] = [
            (Method::POST, "heartbeat", Some(json!({"progress": 0}))),
            (Method::GET, "retrieve_job_info", None),
            (Method::POST, "retrieve_job_audio", None),
            (
                Method::POST,
                "submit_job_result",
                Some(json!({"error_msg": "x"})),
            ),
        ];
        for (method, route, body) in &routes {
            let with_body = |request: RequestBuilder| match body {
                Some(body) => request.json(body),
                None => request,
            };
            let wrong = with_body(online(&app, method.clone(), route, &first_token, "wrong"));
            let detail = assert_error(wrong.send().await.unwrap(), 403).await;
            assert!(
                detail.starts_with("The session token is invalid."),
                "{route}: {detail}"
            );
            let unknown = with_body(online(
                &app,
                method.clone(),
                route,
                "unknown",
                &first_session,
            ));
            let detail = assert_error(unknown.send().await.unwrap(), 401).await;
            assert_eq!(detail, "No runner with that token exists!", "{route}");
        }
        let response = bearer(&app, Method::POST, "/api/runners/unregister", "unknown")
            .send()
            .await
            .unwrap();
        assert_eq!(
            assert_error(response, 401).await,
            "No runner with that token exists!"
        );
        assert_eq!(
            heartbeat(&app, &first_token, &first_session).await,
            json!({"abort": false, "job_assigned": false})
        );

        // The user's job, running on the first runner, kept alive by a beating task.
        let audio = audio(30, 5000);
        let job_id = submit_job(&app, &user, audio.clone()).await;
        let outcome = fetch_audio(&app, &first_token, &first_session).await;
        assert_eq!((outcome.status, outcome.bytes.len()), (200, audio.len()));
        let beating = {
            let url = app.url(&format!(
                "/api/runners/heartbeat?session_token={first_session}"
            ));
            let token = first_token.clone();
            tokio::spawn(async move {
                let client = plain_client();
                loop {
                    let _ = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"progress": 10}))
                        .send()
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        let running = wait_for_job(
            &app,
            &user,
            job_id,
            RUNNER_WAIT,
            |job| job["step"] == "runner_in_progress" && job["progress"] == 10.0,
            String::new,
        )
        .await;

        // Another user: info shows nothing, abort and delete are ignored, download is
        // the same 400 as for an unknown job.
        assert_eq!(
            jobs_info(&app, &other, &[job_id]).await,
            Vec::<Value>::new()
        );
        for (method, route) in [
            (Method::POST, "/api/jobs/abort"),
            (Method::DELETE, "/api/jobs/delete"),
        ] {
            let response = bearer(&app, method, route, &other)
                .json(&json!([job_id]))
                .send()
                .await
                .unwrap();
            assert_eq!(json_body(response, 200).await, json!("Success"), "{route}");
        }
        assert_eq!(
            assert_error(download(&app, &other, job_id, "as_txt").await, 400).await,
            format!("No job with id {job_id} found or job isn't finished yet")
        );
        // The owner can't delete it while it runs.
        let response = bearer(&app, Method::DELETE, "/api/jobs/delete", &user)
            .json(&json!([job_id]))
            .send()
            .await
            .unwrap();
        let detail = assert_error(response, 400).await;
        assert!(detail.contains("still running"), "{detail}");
        let job = job_info(&app, &user, job_id).await;
        assert_eq!(job, running, "the job changed");
        assert_eq!(
            heartbeat(&app, &first_token, &first_session).await,
            json!({"abort": false, "job_assigned": true})
        );

        // The first runner goes silent; the second one gets the job after the timeout.
        let second_session = register(&app, &second_token, "second", 1).await;
        beating.abort();
        let _ = beating.await;
        let started = Instant::now();
        while heartbeat(&app, &second_token, &second_session).await["job_assigned"] != true {
            assert!(
                started.elapsed() < RUNNER_WAIT,
                "the job was never requeued"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let job = job_info(&app, &user, job_id).await;
        assert_eq!(job["step"], "runner_assigned", "{job}");
        assert_eq!(job["runner_id"], second_id, "{job}");

        // Its old session is gone (403); registered again it holds no job (400); either
        // way its late transcript changes nothing.
        let response =
            submit_result(&app, &first_token, &first_session, transcript_of("stale")).await;
        assert_eq!(
            assert_error(response, 403).await,
            "This runner is currently not registered as online!"
        );
        let first_again = register(&app, &first_token, "first", 5).await;
        let response =
            submit_result(&app, &first_token, &first_again, transcript_of("stale")).await;
        assert_eq!(
            assert_error(response, 400).await,
            "This runner is currently not processing a job!"
        );
        let job = job_info(&app, &user, job_id).await;
        assert_eq!(job["step"], "runner_assigned", "{job}");
        assert_eq!(job["runner_id"], second_id, "{job}");
        assert_eq!(
            app.db()
                .scalar_i64(&format!(
                    "SELECT COUNT(*) FROM jobs WHERE id = {job_id} AND transcript_blob_id IS NULL"
                ))
                .await,
            1
        );
        assert_ne!(first_id, second_id);

        // The second runner finishes it with its own transcript.
        let outcome = fetch_audio(&app, &second_token, &second_session).await;
        assert_eq!(outcome.bytes, audio);
        json_body(
            submit_result(&app, &second_token, &second_session, transcript_of("fresh")).await,
            200,
        )
        .await;
        assert_eq!(transcript_text(&app, &user, job_id).await, "fresh");
        // Finished: aborting it is refused and changes nothing.
        let response = bearer(&app, Method::POST, "/api/jobs/abort", &user)
            .json(&json!([job_id]))
            .send()
            .await
            .unwrap();
        assert_error(response, 400).await;
        let job = job_info(&app, &user, job_id).await;
        assert_eq!(job["step"], "downloaded", "{job}");
        assert_eq!(job["abort"], false, "{job}");
    }
);

db_test!(
    /// A runner whose job's stored audio can't be served (here: damaged) fails the job
    /// after a few attempts instead of fetching it again at every heartbeat, and goes on
    /// to the next job.
    async fn a_runner_fails_a_job_whose_audio_cannot_be_served(backend: Backend) {
        let app = app(backend, json!({})).await;
        let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
        let user = session_token(&app, USER, USER_PASSWORD, "").await;
        let damaged = submit_job(&app, &user, audio(31, 200_000)).await;
        let blob = blob_of(&app, "audio_blob_id", damaged).await;
        tamper(&app, Storage::Database, &blob, |chunks| {
            chunks[1][100] ^= 0x01
        })
        .await;

        let (_, token) = create_runner(&app, &admin).await;
        let runner = RunnerDaemon::start(
            &app.base_url,
            &token,
            &DaemonConfig::dummy("damaged-audio", 0.0),
        );
        let job = wait_for_job(
            &app,
            &user,
            damaged,
            RUNNER_WAIT,
            |job| job["step"] == "failed" || job["step"] == "success",
            || runner.logs.dump(),
        )
        .await;
        assert_eq!(job["step"], "failed", "{job}");
        let message = job["error_msg"].as_str().unwrap_or_default();
        assert!(
            message.contains("could not retrieve the audio after 4 attempts"),
            "{message}"
        );

        let clean = submit_job(&app, &user, audio(32, 1_000)).await;
        let job = wait_for_job(
            &app,
            &user,
            clean,
            RUNNER_WAIT,
            |job| job["step"] == "success" || job["step"] == "failed",
            || runner.logs.dump(),
        )
        .await;
        assert_eq!(job["step"], "success", "{job}");
    }
);
