//! Issue 8, real transcription: `scribe-runner` in whisper mode (faster-whisper, Whisper
//! tiny.en from the runner's Python environment) against the real server, on SQLite and
//! PostgreSQL. espeak-ng speaks known sentences; sox encodes them as OGG and MP3. A user
//! submits them through the API and downloads the transcripts, which must hold the words
//! the tiny model reliably gets right and be well-formed in every format. Failures
//! (undecodable audio, a missing model, translation on an English-only model,
//! diarization, an abort, a killed worker) fail only their job, with a clear message.

use std::path::Path;
use std::time::{Duration, Instant};

use scribe_tests::accounts::{bearer, session_token};
use scribe_tests::reqwest::Method;
use scribe_tests::runners::{
    create_runner, download, job_info, provisioning, wait_for_job, RunnerProcess, ADMIN,
    ADMIN_PASSWORD, USER, USER_PASSWORD,
};
use scribe_tests::serde_json::{json, Value};
use scribe_tests::whisper::*;
use scribe_tests::*;

/// espeak-ng's voice is robotic; these sentences come out of tiny.en nearly verbatim
/// (checked in WAV, OGG and MP3), and the tests assert only on the words that always do.
const MEETING: &str = "Good morning everyone, welcome to the meeting. \
                       Please call me tomorrow morning. \
                       The quick brown fox jumps over the lazy dog.";
const MEETING_WORDS: [&str; 4] = [
    "good morning everyone",
    "welcome to the meeting",
    "please call me tomorrow morning",
    "lazy dog",
];
const CALL_ME: &str = "Please call me tomorrow morning.";
/// About 35 s of speech: long enough to abort or kill mid-transcription.
const LONG_TALK: &str = "Welcome to the weekly planning meeting. Today we will talk about \
    the budget, the schedule for the next release, and the hiring plan for the support team. \
    First, the budget. We spent less than expected on travel this quarter, so we can move \
    some money to training. Second, the schedule. The release is planned for the end of next \
    month, and the testing phase starts in two weeks. Third, the hiring plan. We want to add \
    two people to the support team before the summer. Please send me your questions by \
    Friday. Thank you all for coming.";

/// First job of a fresh runner: worker start-up and model load included, on a loaded
/// 2-core machine.
const JOB_TIMEOUT: Duration = Duration::from_secs(90);

struct World {
    app: TestApp,
    user: String,
    runner: RunnerProcess,
    dir: scribe_tests::tempfile::TempDir,
}

/// A server, a user, and a whisper runner (tiny.en, plus `extra_models` mapped to the same
/// English-only model) beating every 0.2 s.
async fn world(backend: Backend, extra_models: &[&str]) -> World {
    let app = spawn_app_with(backend, provisioning()).await;
    let admin = session_token(&app, ADMIN, ADMIN_PASSWORD, "admin").await;
    let (_, token) = create_runner(&app, &admin).await;
    let user = session_token(&app, USER, USER_PASSWORD, "").await;
    let dir = scribe_tests::tempfile::tempdir().unwrap();
    let runner = RunnerProcess::start(
        dir.path(),
        &token,
        &format!(
            "backend_url: {}\nname: whisper-1\nheartbeat_interval_secs: 0.2\n{}",
            app.base_url,
            whisper_yaml(extra_models)
        ),
    );
    World {
        app,
        user,
        runner,
        dir,
    }
}

impl World {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn settings(&self, settings: Value) -> i64 {
        submit_settings(&self.app, &self.user, settings).await
    }

    async fn submit(&self, path: &Path, content_type: &str, settings: i64) -> i64 {
        submit_file(&self.app, &self.user, path, content_type, settings).await
    }

    /// Waits for `success` or `failed`; returns the JobInfo and the highest progress
    /// seen while the runner worked on the job.
    async fn finish(&self, job_id: i64) -> (Value, f64) {
        let started = Instant::now();
        let mut progress: f64 = 0.0;
        loop {
            let job = job_info(&self.app, &self.user, job_id).await;
            match job["step"].as_str() {
                Some("success" | "failed") => return (job, progress),
                Some("runner_in_progress") => {
                    progress = progress.max(job["progress"].as_f64().unwrap_or(0.0));
                }
                _ => {}
            }
            assert!(
                started.elapsed() < JOB_TIMEOUT,
                "job {job_id} unfinished after {JOB_TIMEOUT:?}: {job}\n--- runner ---\n{}",
                self.runner.stderr.dump()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn succeeded(&self, job_id: i64) -> f64 {
        let (job, progress) = self.finish(job_id).await;
        assert_eq!(
            job["step"],
            "success",
            "{job}\n--- runner ---\n{}",
            self.runner.stderr.dump()
        );
        progress
    }

    async fn failed(&self, job_id: i64) -> String {
        let (job, _) = self.finish(job_id).await;
        assert_eq!(
            job["step"],
            "failed",
            "{job}\n--- runner ---\n{}",
            self.runner.stderr.dump()
        );
        job["error_msg"].as_str().unwrap_or_default().to_owned()
    }

    async fn text(&self, job_id: i64, kind: &str) -> String {
        let body = json_body(download(&self.app, &self.user, job_id, kind).await, 200).await;
        body.as_str()
            .unwrap_or_else(|| panic!("{kind} is a JSON string: {body}"))
            .to_owned()
    }

    /// `as_json` arrives as a string holding the document.
    async fn document(&self, job_id: i64) -> Value {
        let text = self.text(job_id, "as_json").await;
        scribe_tests::serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("as_json is not JSON ({e}): {text}"))
    }

    /// Waits until the job runs and reports progress above 0.
    async fn running(&self, job_id: i64) {
        wait_for_job(
            &self.app,
            &self.user,
            job_id,
            JOB_TIMEOUT,
            |job| job["step"] == "runner_in_progress" && job["progress"].as_f64() > Some(0.0),
            || self.runner.stderr.dump(),
        )
        .await;
    }

    /// The runner's one whisper worker process.
    fn worker(&self) -> u32 {
        let children = self.runner.children();
        assert_eq!(
            children.len(),
            1,
            "one worker process expected: {children:?}\n{}",
            self.runner.stderr.dump()
        );
        children[0]
    }
}

fn settings(extra: Value) -> Value {
    let mut settings = json!({"model": "tiny.en", "language": "en"});
    merge_json(&mut settings, extra);
    settings
}

fn assert_words(text: &str, words: &[&str], what: &str) {
    let normalised = normalise(text);
    for phrase in words {
        assert!(
            normalised.contains(phrase),
            "{what}: {phrase:?} is missing from {text:?}"
        );
    }
}

/// The five downloads of one job, checked against each other and the audio's duration.
/// Returns the JSON document.
async fn check_formats(w: &World, job_id: i64, duration: f64, words: &[&str]) -> Value {
    let txt = w.text(job_id, "as_txt").await;
    let srt = w.text(job_id, "as_srt").await;
    let vtt = w.text(job_id, "as_vtt").await;
    let tsv = w.text(job_id, "as_tsv").await;
    let doc = w.document(job_id).await;

    // Phrases may run across cues: look at the cues' text in a row.
    let joined = |cues: Vec<Cue>| {
        cues.into_iter()
            .map(|c| c.text)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_words(&txt, words, "as_txt");
    assert_words(&joined(parse_srt(&srt)), words, "as_srt");
    assert_words(&joined(parse_vtt(&vtt)), words, "as_vtt");
    assert_words(&joined(parse_tsv(&tsv)), words, "as_tsv");
    assert_words(doc["text"].as_str().unwrap_or_default(), words, "as_json");
    assert_eq!(doc["language"], "en", "{doc}");

    let segments = doc["segments"].as_array().expect("segments").clone();
    assert!(!segments.is_empty(), "{doc}");
    // txt and tsv: a line / row per segment, with the segment's text and times.
    assert_eq!(txt.lines().count(), segments.len(), "{txt:?}\n{doc}");
    let rows = parse_tsv(&tsv);
    assert_eq!(rows.len(), segments.len(), "{tsv:?}");
    assert_cues_in_order(&rows, duration, "as_tsv");
    for (row, segment) in rows.iter().zip(&segments) {
        let start = segment["start"].as_f64().unwrap();
        let end = segment["end"].as_f64().unwrap();
        assert!((row.start - start).abs() < 0.0015 && (row.end - end).abs() < 0.0015);
        assert_eq!(row.text, segment["text"].as_str().unwrap().trim());
    }
    // srt and vtt: the same cues, well formed, in order inside the audio.
    let srt_cues = parse_srt(&srt);
    let vtt_cues = parse_vtt(&vtt);
    assert_cues_in_order(&srt_cues, duration, "as_srt");
    assert_eq!(srt_cues, vtt_cues, "SRT and VTT disagree:\n{srt}\n{vtt}");
    doc
}

db_test!(
    async fn whisper_runner_transcribes_speech_in_every_format(backend: Backend) {
        let mut w = world(backend, &[]).await;
        let wav = speak(w.path(), "meeting.wav", MEETING);
        let wav_seconds = duration(&wav);

        // WAV, aligned (word timestamps), subtitle lines of at most 30 letters, two
        // lines a cue.
        let shaped = w
            .settings(settings(
                json!({"alignment": alignment(false, Some(30), Some(2))}),
            ))
            .await;
        let job_id = w.submit(&wav, "audio/wav", shaped).await;
        let progress = w.succeeded(job_id).await;
        assert!(progress > 0.0, "no progress reported before success");
        let job = job_info(&w.app, &w.user, job_id).await;
        assert_eq!(job["runner_name"], "whisper-1", "{job}");
        let doc = check_formats(&w, job_id, wav_seconds, &MEETING_WORDS).await;
        let words = doc["word_segments"].as_array().expect("aligned words");
        assert!(words.len() >= 15, "{doc}");
        let mut previous = 0.0;
        for word in words {
            let (start, end) = (
                word["start"].as_f64().unwrap(),
                word["end"].as_f64().unwrap(),
            );
            assert!(
                previous <= start && start <= end && end <= wav_seconds + 0.05,
                "{word}"
            );
            assert!(!word["word"].as_str().unwrap().starts_with(' '), "{word}");
            previous = start;
        }
        for cue in parse_srt(&w.text(job_id, "as_srt").await) {
            let lines: Vec<&str> = cue.text.lines().collect();
            assert!(lines.len() <= 2, "{cue:?}");
            for line in lines {
                // whisperx counts a line's letters without the spaces between words.
                let letters = line.chars().filter(|c| !c.is_whitespace()).count();
                assert!(letters <= 30, "{cue:?}");
            }
        }

        // OGG (Vorbis) without alignment: segment-level cues, no words.
        let ogg = encode(&wav, w.path(), "meeting.ogg");
        let plain = w.settings(settings(json!({"alignment": null}))).await;
        let job_id = w.submit(&ogg, "audio/ogg", plain).await;
        w.succeeded(job_id).await;
        let doc = check_formats(&w, job_id, duration(&ogg), &MEETING_WORDS).await;
        assert!(doc.get("word_segments").is_none(), "{doc}");
        let srt = parse_srt(&w.text(job_id, "as_srt").await);
        assert_eq!(srt.len(), doc["segments"].as_array().unwrap().len());

        // MP3 with suppress_numerals: "one two three" comes out in words (tiny.en writes
        // digits for it otherwise).
        let numbers = speak(w.path(), "numbers.wav", "One two three four five.");
        let mp3 = encode(&numbers, w.path(), "numbers.mp3");
        let no_digits = w
            .settings(settings(
                json!({"alignment": null, "asr_settings": asr_settings(true)}),
            ))
            .await;
        let job_id = w.submit(&mp3, "audio/mpeg", no_digits).await;
        w.succeeded(job_id).await;
        let txt = w.text(job_id, "as_txt").await;
        assert!(!txt.chars().any(|c| c.is_ascii_digit()), "{txt:?}");
        assert_words(&txt, &["three", "four"], "numbers");

        let status = w.runner.terminate().await;
        assert!(status.success(), "{status}\n{}", w.runner.stderr.dump());
    }
);

db_test!(
    async fn whisper_jobs_fail_clearly_and_the_runner_keeps_serving(backend: Backend) {
        // "tiny" is mapped to the English-only model: a misconfiguration the worker must
        // catch rather than quietly transcribe English.
        let w = world(backend, &["tiny"]).await;
        let default = w.settings(settings(json!({"alignment": null}))).await;

        // Undecodable bytes, even with an audio type.
        let junk = w.path().join("junk.mp3");
        std::fs::write(&junk, "this is not audio at all\n".repeat(400)).unwrap();
        let job_id = w.submit(&junk, "audio/mpeg", default).await;
        let error = w.failed(job_id).await;
        assert!(error.starts_with("could not decode the audio"), "{error}");
        assert!(!error.contains("/tmp"), "no internal paths: {error}");
        let worker = w.worker();

        let speech = speak(w.path(), "call.wav", CALL_ME);

        // A model this runner doesn't have.
        let base = w.settings(settings(json!({"model": "base.en"}))).await;
        let job_id = w.submit(&speech, "audio/wav", base).await;
        assert_eq!(
            w.failed(job_id).await,
            "model \"base.en\" is not available on this runner; it has tiny, tiny.en"
        );

        // Translation needs a multilingual model.
        let translate = w
            .settings(
                json!({"task": "translate", "model": "tiny", "language": "de",
                             "alignment": null}),
            )
            .await;
        let job_id = w.submit(&speech, "audio/wav", translate).await;
        assert_eq!(
            w.failed(job_id).await,
            "model 'tiny' is English-only and cannot translate; use a multilingual model \
             for task 'translate'"
        );

        // Diarization isn't available: said, not ignored.
        let diarize = w
            .settings(settings(
                json!({"diarization": {"min_speakers": null, "max_speakers": null}}),
            ))
            .await;
        let job_id = w.submit(&speech, "audio/wav", diarize).await;
        let error = w.failed(job_id).await;
        assert!(
            error.starts_with("speaker diarization is not available on this runner"),
            "{error}"
        );

        // Silence is no error: an empty transcript, every format well formed (as
        // Project-W's runner, whose writers print nothing for no segments).
        let quiet = silence(w.path(), "quiet.wav", 3.0);
        let job_id = w.submit(&quiet, "audio/wav", default).await;
        w.succeeded(job_id).await;
        assert_eq!(w.text(job_id, "as_txt").await, "");
        assert_eq!(w.text(job_id, "as_srt").await, "");
        assert_eq!(w.text(job_id, "as_vtt").await, "WEBVTT\n\n");
        assert_eq!(w.text(job_id, "as_tsv").await, "start\tend\ttext\n");
        let doc = w.document(job_id).await;
        assert_eq!(doc["segments"], json!([]), "{doc}");
        assert_eq!(doc["text"], "", "{doc}");

        // Still serving, with the same worker all along.
        let job_id = w.submit(&speech, "audio/wav", default).await;
        w.succeeded(job_id).await;
        assert_words(
            &w.text(job_id, "as_txt").await,
            &["please call me tomorrow morning"],
            "as_txt",
        );
        assert_eq!(w.worker(), worker, "the worker was replaced");
    }
);

db_test!(
    async fn aborting_or_killing_the_whisper_worker_fails_only_that_job(backend: Backend) {
        let mut w = world(backend, &[]).await;
        let plain = w.settings(settings(json!({"alignment": null}))).await;
        let talk = speak(w.path(), "talk.wav", LONG_TALK);

        // Abort mid-transcription: the job fails as aborted and the worker is gone
        // within a second.
        let job_id = w.submit(&talk, "audio/wav", plain).await;
        w.running(job_id).await;
        let worker = w.worker();
        let response = bearer(&w.app, Method::POST, "/api/jobs/abort", &w.user)
            .json(&json!([job_id]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(w.failed(job_id).await, "job was aborted");
        let aborted = Instant::now();
        while w.runner.children().contains(&worker) {
            assert!(
                aborted.elapsed() < Duration::from_secs(1),
                "the worker {worker} outlived the abort"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A worker that dies mid-job (here: SIGKILL) fails that job with a clear message.
        let job_id = w.submit(&talk, "audio/wav", plain).await;
        w.running(job_id).await;
        let worker = w.worker();
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &worker.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let error = w.failed(job_id).await;
        assert!(
            error.starts_with("the whisper worker was killed by signal 9"),
            "{error}"
        );

        // The runner carries on with a new worker.
        let speech = speak(w.path(), "call.wav", CALL_ME);
        let job_id = w.submit(&speech, "audio/wav", plain).await;
        w.succeeded(job_id).await;
        assert_words(
            &w.text(job_id, "as_txt").await,
            &["please call me tomorrow morning"],
            "as_txt",
        );
        let last = w.worker();
        assert_ne!(last, worker);

        // The worker goes with the runner.
        let status = w.runner.terminate().await;
        assert!(status.success(), "{status}\n{}", w.runner.stderr.dump());
        let stopped = Instant::now();
        while process_alive(last) {
            assert!(
                stopped.elapsed() < Duration::from_secs(2),
                "the worker {last} outlived the runner"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
);

/// `scribe-runner check --skip-backend` starts the worker and loads every model; a
/// broken environment or model fails it with the reason.
#[tokio::test]
async fn scribe_runner_check_reports_the_whisper_environment() {
    let dir = scribe_tests::tempfile::tempdir().unwrap();
    let check = |yaml: String| {
        let config = dir.path().join("runner.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut command = std::process::Command::new(scribe_runner_bin());
        command
            .arg("--config")
            .arg(&config)
            .args(["check", "--skip-backend"]);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SCRIBE_") {
                command.env_remove(&key);
            }
        }
        command.output().unwrap()
    };

    let output = check(whisper_yaml(&[]));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("faster-whisper 1.2.1"), "{stdout}");
    assert!(
        stdout.contains("model tiny.en: ") && stdout.contains("(English-only, loaded in "),
        "{stdout}"
    );

    // A Python without faster-whisper: a bare venv of the same interpreter.
    let bare = dir.path().join("bare-venv");
    let made = std::process::Command::new(python())
        .args(["-m", "venv", "--without-pip"])
        .arg(&bare)
        .status()
        .unwrap();
    assert!(made.success());
    let output = check(format!(
        "mode: whisper\nwhisper:\n  python: {}\n  models:\n    tiny.en: {}\n",
        bare.join("bin/python").display(),
        tiny_en_model().display()
    ));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("cannot import faster-whisper"), "{stdout}");

    // A directory without a model is a configuration error.
    let output = check(format!(
        "mode: whisper\nwhisper:\n  python: {}\n  models:\n    tiny.en: {}\n",
        python().display(),
        dir.path().display()
    ));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("whisper.models.tiny.en"), "{stderr}");
}
