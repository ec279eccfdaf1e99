//! Load generator for the job and runner benchmarks of `bench/jobs.sh`: it plays
//! many users' uploads and many runners at once over real HTTP, and reports
//! throughput and latency percentiles. Results go to stdout as plain lines.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use reqwest::multipart::{Form, Part};
use reqwest::Client;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

static NEXT_FILE: AtomicUsize = AtomicUsize::new(1);

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

#[derive(Parser)]
struct Cli {
    /// The server, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// A user's API token (the jobs' owner; for runner creation it needs admin privileges).
    #[arg(long)]
    token: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Submits `count` small jobs and writes their ids, one per line, to stdout's last line
    /// as a comma-separated list.
    SeedJobs {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Jobs through simulated runners with zero work time: jobs per second, and the time
    /// from submit to assignment while runners are free.
    Pipeline {
        #[arg(long, default_value_t = 1000)]
        jobs: usize,
        #[arg(long, default_value_t = 50)]
        runners: usize,
        /// Jobs submitted one at a time (each waits for its assignment) to measure the
        /// submit → assignment latency with free runners.
        #[arg(long, default_value_t = 200)]
        latency_samples: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// How often an idle simulated runner asks for work.
        #[arg(long, default_value_t = 200)]
        poll_ms: u64,
    },
    /// Many registered runners heartbeating at the same instant, every interval.
    Heartbeats {
        #[arg(long, default_value_t = 1000)]
        runners: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let client = Client::builder()
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(120))
        .build()?;
    let api = Api {
        client,
        url: cli.url.trim_end_matches('/').to_owned(),
        token: cli.token,
    };
    match cli.scenario {
        Scenario::SeedJobs { count, concurrency } => seed_jobs(&api, count, concurrency).await,
        Scenario::Pipeline {
            jobs,
            runners,
            latency_samples,
            concurrency,
            poll_ms,
        } => pipeline(api, jobs, runners, latency_samples, concurrency, poll_ms).await,
        Scenario::Heartbeats {
            runners,
            seconds,
            interval_ms,
        } => heartbeats(api, runners, seconds, interval_ms).await,
    }
}

#[derive(Clone)]
struct Api {
    client: Client,
    url: String,
    token: String,
}

impl Api {
    async fn submit_job(&self) -> Result<i64> {
        // Distinct names in scrambled order, so that sorting by file name has work to do.
        let n = NEXT_FILE
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(2_654_435_761)
            % 1_000_000_007;
        let part = Part::bytes(b"RIFF-not-really-audio".to_vec())
            .file_name(format!("recording-{n:010}.wav"))
            .mime_str("audio/wav")?;
        let response = self
            .client
            .post(format!("{}/api/jobs/submit_job", self.url))
            .bearer_auth(&self.token)
            .multipart(Form::new().part("audio_file", part))
            .send()
            .await?;
        Ok(expect_ok(response)
            .await?
            .as_i64()
            .ok_or("submit_job: not an id")?)
    }

    async fn create_runner(&self) -> Result<String> {
        let response = self
            .client
            .post(format!("{}/api/admins/create_runner", self.url))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let body = expect_ok(response).await?;
        Ok(body["token"]
            .as_str()
            .ok_or("create_runner: no token")?
            .to_owned())
    }

    async fn register(&self, runner_token: &str, name: &str) -> Result<String> {
        let response = self
            .client
            .post(format!("{}/api/runners/register", self.url))
            .bearer_auth(runner_token)
            .json(&json!({
                "name": name, "version": "bench", "git_hash": "bench",
                "source_code_url": "https://example.org", "priority": 100
            }))
            .send()
            .await?;
        let body = expect_ok(response).await?;
        Ok(body["session_token"]
            .as_str()
            .ok_or("register: no session token")?
            .to_owned())
    }

    async fn runner_post(
        &self,
        runner_token: &str,
        session: &str,
        route: &str,
        body: Value,
    ) -> Result<reqwest::Response> {
        Ok(self
            .client
            .post(format!("{}/api/runners/{route}", self.url))
            .query(&[("session_token", session)])
            .bearer_auth(runner_token)
            .json(&body)
            .send()
            .await?)
    }
}

async fn expect_ok(response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        return Err(format!("{status}: {body}").into());
    }
    Ok(serde_json::from_str(&body)?)
}

async fn seed_jobs(api: &Api, count: usize, concurrency: usize) -> Result<()> {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let permit = permits.clone().acquire_owned().await?;
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let id = api.submit_job().await;
            drop(permit);
            id
        }));
    }
    let mut ids = Vec::with_capacity(count);
    for task in tasks {
        ids.push(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "submitted {count} jobs in {elapsed:.1} s: {:.0} jobs/s",
        count as f64 / elapsed
    );
    let listed: Vec<String> = ids.iter().map(i64::to_string).collect();
    println!("{}", listed.join(","));
    Ok(())
}

/// Records, per job id, when its first `job_updated` event arrived. In these benchmarks
/// nothing aborts, so a pending job's first update is its assignment to a runner.
#[derive(Default)]
struct FirstUpdates {
    at: Mutex<HashMap<i64, Instant>>,
    changed: tokio::sync::Notify,
}

async fn listen_for_updates(api: Api, updates: Arc<FirstUpdates>) -> Result<()> {
    let mut response = api
        .client
        .get(format!("{}/api/jobs/events", api.url))
        .bearer_auth(&api.token)
        .timeout(Duration::from_secs(3600))
        .send()
        .await?;
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await? {
        let now = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let mut kind = "";
            let mut data = "";
            for line in message.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    kind = value;
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = value;
                }
            }
            if kind == "job_updated" {
                if let Ok(id) = data.trim().parse::<i64>() {
                    updates
                        .at
                        .lock()
                        .map_err(|_| "poisoned")?
                        .entry(id)
                        .or_insert(now);
                    updates.changed.notify_waiters();
                }
            }
        }
    }
    Ok(())
}

/// A simulated runner with zero work time: asks for work every `poll`, and for the
/// next job immediately after handing in a result (like `scribe-runner`).
async fn simulated_runner(
    api: Api,
    runner_token: String,
    session: String,
    poll: Duration,
    done: Arc<AtomicUsize>,
) -> Result<()> {
    loop {
        let response = api
            .runner_post(
                &runner_token,
                &session,
                "heartbeat",
                json!({"progress": 0.0}),
            )
            .await?;
        let heartbeat = expect_ok(response).await?;
        if heartbeat["job_assigned"] != json!(true) {
            tokio::time::sleep(poll).await;
            continue;
        }
        let info = api
            .client
            .get(format!("{}/api/runners/retrieve_job_info", api.url))
            .query(&[("session_token", session.as_str())])
            .bearer_auth(&runner_token)
            .send()
            .await?;
        expect_ok(info).await?;
        let audio = api
            .runner_post(&runner_token, &session, "retrieve_job_audio", json!({}))
            .await?;
        if !audio.status().is_success() {
            return Err(format!("retrieve_job_audio: {}", audio.status()).into());
        }
        audio.bytes().await?;
        let transcript = json!({"transcript": {
            "as_txt": "bench\n", "as_srt": "1\n00:00:00,000 --> 00:00:01,000\nbench\n\n",
            "as_tsv": "start\tend\ttext\n0\t1000\tbench\n", "as_vtt": "WEBVTT\n\n00:00.000 --> 00:01.000\nbench\n\n",
            "as_json": {"text": "bench", "segments": [], "language": "en"}
        }});
        let result = api
            .runner_post(&runner_token, &session, "submit_job_result", transcript)
            .await?;
        expect_ok(result).await?;
        done.fetch_add(1, Ordering::Relaxed);
    }
}

async fn start_runners(api: &Api, count: usize, poll: Duration) -> Result<Arc<AtomicUsize>> {
    let done = Arc::new(AtomicUsize::new(0));
    for index in 0..count {
        let runner_token = api.create_runner().await?;
        let session = api
            .register(&runner_token, &format!("bench-{index}"))
            .await?;
        let (api, done) = (api.clone(), done.clone());
        tokio::spawn(async move {
            if let Err(e) = simulated_runner(api, runner_token, session, poll, done).await {
                eprintln!("runner {index} stopped: {e}");
            }
        });
    }
    Ok(done)
}

async fn wait_for_assignment(updates: &FirstUpdates, id: i64) -> Result<Instant> {
    loop {
        let notified = updates.changed.notified();
        if let Some(at) = updates.at.lock().map_err(|_| "poisoned")?.get(&id) {
            return Ok(*at);
        }
        tokio::time::timeout(Duration::from_secs(30), notified)
            .await
            .map_err(|_| format!("job {id}: no job_updated event within 30 s"))?;
    }
}

async fn pipeline(
    api: Api,
    jobs: usize,
    runners: usize,
    latency_samples: usize,
    concurrency: usize,
    poll_ms: u64,
) -> Result<()> {
    let updates = Arc::new(FirstUpdates::default());
    tokio::spawn(listen_for_updates(api.clone(), updates.clone()));
    let done = start_runners(&api, runners, Duration::from_millis(poll_ms)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Latency: one job at a time, so a runner is always free when it arrives.
    let mut latencies = Vec::with_capacity(latency_samples);
    for _ in 0..latency_samples {
        let submitted = Instant::now();
        let id = api.submit_job().await?;
        let assigned = wait_for_assignment(&updates, id).await?;
        latencies.push(assigned.saturating_duration_since(submitted));
        let target = done.load(Ordering::Relaxed) + 1;
        while done.load(Ordering::Relaxed) < target {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    report(
        "submit -> assignment (runner free, includes the upload)",
        &mut latencies,
    );

    // Throughput: all jobs submitted as fast as `concurrency` uploads allow.
    let before = done.load(Ordering::Relaxed);
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut uploads = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let permit = permits.clone().acquire_owned().await?;
        let api = api.clone();
        uploads.push(tokio::spawn(async move {
            let id = api.submit_job().await;
            drop(permit);
            id
        }));
    }
    for upload in uploads {
        upload.await??;
    }
    let submitted_in = started.elapsed().as_secs_f64();
    while done.load(Ordering::Relaxed) < before + jobs {
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "only {} of {jobs} jobs finished in 600 s",
                done.load(Ordering::Relaxed) - before
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{jobs} jobs through {runners} runners: {:.0} jobs/s end to end ({elapsed:.2} s; uploads took {submitted_in:.2} s)",
        jobs as f64 / elapsed
    );
    Ok(())
}

async fn heartbeats(api: Api, runners: usize, seconds: u64, interval_ms: u64) -> Result<()> {
    let mut sessions = Vec::with_capacity(runners);
    for index in 0..runners {
        let runner_token = api.create_runner().await?;
        let session = api
            .register(&runner_token, &format!("beat-{index}"))
            .await?;
        sessions.push((runner_token, session));
    }
    println!("{runners} runners registered");
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_millis(interval_ms);
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let rounds = (seconds * 1000 / interval_ms.max(1)).max(1);
    let mut tasks = Vec::with_capacity(runners);
    for (runner_token, session) in sessions {
        let (api, latencies, failures) = (api.clone(), latencies.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(start, interval);
            for _ in 0..rounds {
                ticker.tick().await;
                let sent = Instant::now();
                let ok = match api
                    .runner_post(
                        &runner_token,
                        &session,
                        "heartbeat",
                        json!({"progress": 0.0}),
                    )
                    .await
                {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    if let Ok(mut all) = latencies.lock() {
                        all.push(sent.elapsed());
                    }
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = std::mem::take(&mut *latencies.lock().map_err(|_| "poisoned")?);
    println!(
        "{} heartbeats in {elapsed:.1} s ({:.0}/s), {} failed",
        all.len(),
        all.len() as f64 / elapsed,
        failures.load(Ordering::Relaxed)
    );
    report(
        &format!("heartbeat, {runners} runners at once every {interval_ms} ms"),
        &mut all,
    );
    Ok(())
}

fn report(what: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        println!("{what}: no samples");
        return;
    }
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "{what}: n={} median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}
