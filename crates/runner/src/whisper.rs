//! Whisper mode: transcription with faster-whisper in a Python worker process.
//!
//! The worker (`whisper/worker.py`, built into this binary) is started with the
//! configured Python and speaks a line-based JSON protocol on stdin/stdout
//! (`whisper/PROTOCOL.md`). It lives across jobs and keeps the last model loaded; it
//! runs in its own process group, and a [`Worker`] kills that group when dropped. A
//! job's future owns the worker while it runs, so aborting the job (dropping the
//! future) kills the worker at once; the next job starts a fresh one. A crash, a
//! protocol violation or a hang fails only the current job.
//!
//! Here the job's settings become faster-whisper options, the streamed segments
//! become progress and, at the end, the five formats ([`crate::formats`]).

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tracing::{info, warn};

use crate::client::Transcript;
use crate::config::WhisperConfig;
use crate::formats::{Segment, SubtitleOptions, Transcription, Word};
use crate::processor::{JobInput, ProcessGroup, Progress};

/// The worker script, shipped inside the binary so a runner is one file plus its
/// Python environment.
pub const WORKER_SCRIPT: &str = include_str!("../whisper/worker.py");
/// The protocol version this daemon speaks (`ready.protocol`).
pub const PROTOCOL: u64 = 1;
/// How long a worker may take to import faster-whisper and say `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a worker may take to exit after the job's last message or a kill.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of the worker's stderr goes into an error message.
const STDERR_TAIL: usize = 2000;

/// Progress milestones: the model is loaded, the audio decoded; segments fill the
/// rest up to [`SEGMENTS_END`], and rendering is the last step to 100.
const PROGRESS_LOADED: f64 = 2.0;
const PROGRESS_STARTED: f64 = 5.0;
const SEGMENTS_END: f64 = 99.0;

// --- Job settings ------------------------------------------------------------------

/// The job settings the runner protocol delivers (Project-W's `JobSettingsResponse`),
/// read leniently: a missing field takes Project-W's default, unknown fields are
/// ignored, so any compatible backend works.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct JobSettings {
    pub task: String,
    pub model: String,
    pub language: Option<String>,
    pub alignment: Option<AlignmentSettings>,
    /// Any non-null value asks for speaker diarization.
    pub diarization: Option<Value>,
    pub vad_settings: VadSettings,
    pub asr_settings: AsrSettings,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            task: "transcribe".into(),
            model: "large".into(),
            language: None,
            alignment: Some(AlignmentSettings::default()),
            diarization: None,
            vad_settings: VadSettings::default(),
            asr_settings: AsrSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AlignmentSettings {
    pub processing: ProcessingSettings,
    /// Character-level times: not available from faster-whisper (words only).
    pub return_char_alignments: bool,
    /// How whisperx fills words it couldn't align; faster-whisper times every word.
    pub interpolate_method: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProcessingSettings {
    pub highlight_words: bool,
    pub max_line_count: Option<i64>,
    pub max_line_width: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct VadSettings {
    pub vad_onset: f64,
    pub vad_offset: f64,
    pub chunk_size: f64,
}

impl Default for VadSettings {
    fn default() -> Self {
        Self {
            vad_onset: 0.5,
            vad_offset: 0.363,
            chunk_size: 30.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AsrSettings {
    pub beam_size: i64,
    pub patience: f64,
    pub length_penalty: f64,
    pub temperature: f64,
    pub temperature_increment_on_fallback: Option<f64>,
    pub compression_ratio_threshold: Option<f64>,
    pub log_prob_threshold: Option<f64>,
    pub no_speech_threshold: Option<f64>,
    pub initial_prompt: Option<String>,
    pub suppress_tokens: Vec<i64>,
    pub suppress_numerals: bool,
}

impl Default for AsrSettings {
    fn default() -> Self {
        Self {
            beam_size: 5,
            patience: 1.0,
            length_penalty: 1.0,
            temperature: 0.0,
            temperature_increment_on_fallback: Some(0.2),
            compression_ratio_threshold: Some(2.4),
            log_prob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            initial_prompt: None,
            suppress_tokens: vec![-1],
            suppress_numerals: false,
        }
    }
}

/// Everything the worker needs for one job, plus how to render it.
#[derive(Debug, Clone)]
pub struct JobPlan {
    /// The `transcribe` request without `id` and `audio`.
    pub request: Value,
    pub subtitles: SubtitleOptions,
    pub words: bool,
}

/// Maps a job's settings to a worker request. The error is the job's `error_msg`.
pub fn plan(config: &WhisperConfig, settings: &Value) -> Result<JobPlan, String> {
    let settings: JobSettings = if settings.is_null() {
        JobSettings::default()
    } else {
        serde_json::from_value(settings.clone())
            .map_err(|e| format!("the job settings are not readable: {e}"))?
    };
    if settings.diarization.is_some() {
        return Err(
            "speaker diarization is not available on this runner (faster-whisper \
                    has none); submit the job without diarization"
                .into(),
        );
    }
    let Some(model_dir) = config.models.get(&settings.model) else {
        let configured: Vec<&str> = config.models.keys().map(String::as_str).collect();
        return Err(format!(
            "model {:?} is not available on this runner; it has {}",
            settings.model,
            configured.join(", ")
        ));
    };
    if settings.task != "transcribe" && settings.task != "translate" {
        return Err(format!(
            "unknown task {:?} (transcribe or translate)",
            settings.task
        ));
    }
    let asr = &settings.asr_settings;
    let vad = &settings.vad_settings;
    let words = settings.alignment.is_some();
    let subtitles = settings
        .alignment
        .as_ref()
        .map(|a| SubtitleOptions {
            highlight_words: a.processing.highlight_words,
            max_line_width: a.processing.max_line_width.and_then(positive),
            max_line_count: a.processing.max_line_count.and_then(positive),
        })
        .unwrap_or_default();
    let beam_size = u32::try_from(asr.beam_size.max(1)).unwrap_or(u32::MAX);
    let options = json!({
        "task": settings.task,
        "language": settings.language,
        "beam_size": beam_size,
        "patience": asr.patience,
        "length_penalty": asr.length_penalty,
        "temperature": temperatures(asr.temperature, asr.temperature_increment_on_fallback),
        "compression_ratio_threshold": asr.compression_ratio_threshold,
        "log_prob_threshold": asr.log_prob_threshold,
        "no_speech_threshold": asr.no_speech_threshold,
        // As Project-W's runner: each window is decoded on its own, which keeps a
        // misheard passage from spreading.
        "condition_on_previous_text": false,
        "initial_prompt": asr.initial_prompt,
        "suppress_tokens": asr.suppress_tokens,
        "word_timestamps": words,
        // whisperx always cuts the audio with a VAD first; so does this runner.
        "vad_filter": true,
        "vad_parameters": {
            "threshold": vad.vad_onset,
            "neg_threshold": vad.vad_offset,
            "max_speech_duration_s": vad.chunk_size,
        },
    });
    Ok(JobPlan {
        request: json!({
            "type": "transcribe",
            "model": model_spec(config, &settings.model, model_dir),
            "options": options,
            "suppress_numerals": asr.suppress_numerals,
        }),
        subtitles,
        words,
    })
}

fn positive(n: i64) -> Option<usize> {
    usize::try_from(n).ok().filter(|n| *n > 0)
}

fn model_spec(config: &WhisperConfig, name: &str, dir: &Path) -> Value {
    json!({
        "name": name,
        "path": dir,
        "device": config.device,
        "compute_type": config.compute_type,
        "cpu_threads": config.cpu_threads,
    })
}

/// Whisper's fallback temperatures: `numpy.arange(t, 1.0 + 1e-6, increment)`, or
/// just `t` without an increment.
pub fn temperatures(start: f64, increment: Option<f64>) -> Vec<f64> {
    let mut list = Vec::new();
    if let Some(step) = increment.filter(|s| s.is_finite() && *s > 0.0) {
        let mut i = 0.0;
        loop {
            let t = start + i * step;
            if t >= 1.0 + 1e-6 || list.len() >= 100 {
                break;
            }
            // Keeps 0.6000000000000001 out of the request.
            list.push((t * 1e6).round() / 1e6);
            i += 1.0;
        }
    }
    if list.is_empty() {
        list.push(start);
    }
    list
}

// --- The worker --------------------------------------------------------------------

/// What the worker announced when it started.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerInfo {
    pub protocol: u64,
    pub pid: u32,
    pub python: String,
    pub faster_whisper: String,
    pub ctranslate2: String,
    #[serde(default)]
    pub cuda_devices: u64,
}

/// A running worker process. Dropping it kills the worker's process group.
pub struct Worker {
    info: WorkerInfo,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr_tail: Arc<Mutex<String>>,
    child: Child,
    next_id: u64,
    // Field order is drop order: kill the group before the script file goes.
    _group: ProcessGroup,
    _script: Option<tempfile::TempPath>,
}

/// Why a request didn't produce its answer.
#[derive(Debug)]
pub enum WorkerError {
    /// The worker reported a failure of this request and is still usable.
    Job(String),
    /// The worker died, hung or broke the protocol; it must not be used again.
    Broken(String),
}

impl WorkerError {
    pub fn message(&self) -> &str {
        match self {
            WorkerError::Job(m) | WorkerError::Broken(m) => m,
        }
    }
}

impl Worker {
    /// Starts the worker and waits for its `ready` line.
    pub async fn start(config: &WhisperConfig) -> Result<Self, String> {
        let (script_path, script_file) = match &config.worker_script {
            Some(path) => (path.clone(), None),
            None => {
                let file = tempfile::Builder::new()
                    .prefix("scribe-whisper-worker-")
                    .suffix(".py")
                    .tempfile()
                    .map_err(|e| format!("writing the whisper worker script: {e}"))?;
                std::fs::write(file.path(), WORKER_SCRIPT)
                    .map_err(|e| format!("writing the whisper worker script: {e}"))?;
                let path = file.into_temp_path();
                (path.to_path_buf(), Some(path))
            }
        };
        let mut cmd = Command::new(&config.python);
        cmd.arg("-u")
            .arg(&script_path)
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "starting the whisper worker with {}: {e}",
                config.python.display()
            )
        })?;
        let group = ProcessGroup(child.id().unwrap_or(0));
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the whisper worker's pipes are missing".into());
        };
        let stderr_tail = Arc::new(Mutex::new(String::new()));
        tokio::spawn(forward_stderr(stderr, Arc::clone(&stderr_tail)));
        let mut worker = Worker {
            info: WorkerInfo {
                protocol: 0,
                pid: 0,
                python: String::new(),
                faster_whisper: String::new(),
                ctranslate2: String::new(),
                cuda_devices: 0,
            },
            stdin,
            stdout: BufReader::new(stdout).lines(),
            stderr_tail,
            child,
            next_id: 1,
            _group: group,
            _script: script_file,
        };
        let ready = match tokio::time::timeout(READY_TIMEOUT, worker.next_message()).await {
            Ok(Ok(message)) => message,
            Ok(Err(e)) => return Err(e.message().to_owned()),
            Err(_) => {
                return Err(format!(
                    "the whisper worker did not start within {READY_TIMEOUT:?}"
                ))
            }
        };
        match ready["type"].as_str() {
            Some("ready") => {}
            Some("fatal") => {
                let message = ready["message"].as_str().unwrap_or("(no message)");
                return Err(format!("the whisper worker cannot run: {message}"));
            }
            _ => return Err(format!("the whisper worker said {ready} instead of ready")),
        }
        worker.info = serde_json::from_value(ready.clone())
            .map_err(|e| format!("the whisper worker's ready line {ready}: {e}"))?;
        if worker.info.protocol != PROTOCOL {
            return Err(format!(
                "the whisper worker speaks protocol {}, this runner {PROTOCOL}",
                worker.info.protocol
            ));
        }
        Ok(worker)
    }

    pub fn info(&self) -> &WorkerInfo {
        &self.info
    }

    /// False once the process has exited (e.g. killed for memory while idle).
    fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The next protocol message; the worker's death or garbage is [`WorkerError::Broken`].
    async fn next_message(&mut self) -> Result<Value, WorkerError> {
        match self.stdout.next_line().await {
            Ok(Some(line)) => serde_json::from_str::<Value>(&line)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    WorkerError::Broken(format!(
                        "the whisper worker broke the protocol with {:?}",
                        line.chars().take(200).collect::<String>()
                    ))
                }),
            Ok(None) => Err(WorkerError::Broken(self.death().await)),
            Err(e) => Err(WorkerError::Broken(format!(
                "reading from the whisper worker: {e}"
            ))),
        }
    }

    /// Why the worker's stdout closed: its exit status and the tail of its stderr.
    async fn death(&mut self) -> String {
        let status = tokio::time::timeout(EXIT_TIMEOUT, self.child.wait()).await;
        // Let the stderr reader catch up with the last words.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        let how = match status {
            Ok(Ok(status)) => describe(status),
            _ => "closed its output".into(),
        };
        if tail.is_empty() {
            format!("the whisper worker {how}")
        } else {
            format!("the whisper worker {how}: {tail}")
        }
    }

    async fn send(&mut self, mut request: Value) -> Result<u64, WorkerError> {
        let id = self.next_id;
        self.next_id += 1;
        request["id"] = json!(id);
        let mut line = request.to_string();
        line.push('\n');
        let written = async {
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await
        }
        .await;
        match written {
            Ok(()) => Ok(id),
            // A dead worker closes its stdin: say why it died.
            Err(_) => Err(WorkerError::Broken(self.death().await)),
        }
    }

    /// The next message for request `id`, with `error` answers turned into
    /// [`WorkerError::Job`].
    async fn answer(&mut self, id: u64) -> Result<Value, WorkerError> {
        loop {
            let message = self.next_message().await?;
            if message["id"] != json!(id) {
                warn!(%message, "ignoring a whisper worker message for another request");
                continue;
            }
            if message["type"] == "error" {
                let text = message["message"].as_str().unwrap_or("unknown error");
                return Err(WorkerError::Job(text.to_owned()));
            }
            return Ok(message);
        }
    }

    /// Runs one transcription; `progress` receives 0–99 as segments arrive.
    pub async fn transcribe(
        &mut self,
        plan: &JobPlan,
        audio: &Path,
        progress: &Progress,
    ) -> Result<Transcription, WorkerError> {
        let mut request = plan.request.clone();
        request["audio"] = json!(audio);
        let id = self.send(request).await?;
        let mut duration = 0.0;
        let mut language = String::new();
        let mut segments = Vec::new();
        loop {
            let message = self.answer(id).await?;
            match message["type"].as_str() {
                Some("loaded") => {
                    let seconds = message["seconds"].as_f64().unwrap_or(0.0);
                    if message["cached"] != true {
                        info!(seconds, "whisper model loaded");
                    }
                    progress.set(PROGRESS_LOADED);
                }
                Some("started") => {
                    duration = message["duration"].as_f64().unwrap_or(0.0);
                    language = message["language"].as_str().unwrap_or("").to_owned();
                    progress.set(PROGRESS_STARTED);
                }
                Some("segment") => {
                    let segment = segment(&message, plan.words).ok_or_else(|| {
                        WorkerError::Broken(format!("a malformed segment: {message}"))
                    })?;
                    if duration > 0.0 {
                        let done = (segment.end / duration).clamp(0.0, 1.0);
                        progress.set(PROGRESS_STARTED + (SEGMENTS_END - PROGRESS_STARTED) * done);
                    }
                    segments.push(segment);
                }
                Some("done") => {
                    if let Some(l) = message["language"].as_str() {
                        language = l.to_owned();
                    }
                    return Ok(Transcription { language, segments });
                }
                _ => {
                    return Err(WorkerError::Broken(format!(
                        "an unexpected message from the whisper worker: {message}"
                    )))
                }
            }
        }
    }

    /// Loads a model and runs a second of silence through it.
    pub async fn check(
        &mut self,
        config: &WhisperConfig,
        name: &str,
        dir: &Path,
    ) -> Result<Value, WorkerError> {
        let id = self
            .send(json!({"type": "check", "model": model_spec(config, name, dir)}))
            .await?;
        let message = self.answer(id).await?;
        if message["type"] == "checked" {
            Ok(message)
        } else {
            Err(WorkerError::Broken(format!(
                "an unexpected answer to check: {message}"
            )))
        }
    }
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("exited ({status})"),
    }
}

/// A `segment` message as a [`Segment`]: words stripped of their leading space and
/// scored, as whisperx's aligned words.
fn segment(message: &Value, with_words: bool) -> Option<Segment> {
    let words = if with_words {
        let list = message["words"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut words = Vec::with_capacity(list.len());
        for w in list {
            words.push(Word {
                word: w["word"].as_str()?.trim().to_owned(),
                start: w["start"].as_f64()?,
                end: w["end"].as_f64()?,
                score: w["probability"].as_f64(),
            });
        }
        Some(words)
    } else {
        None
    };
    Some(Segment {
        start: message["start"].as_f64()?,
        end: message["end"].as_f64()?,
        text: message["text"].as_str()?.to_owned(),
        words,
    })
}

async fn forward_stderr(stderr: tokio::process::ChildStderr, tail: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        info!(target: "scribe_runner::whisper_worker", "{line}");
        if let Ok(mut tail) = tail.lock() {
            tail.push_str(&line);
            tail.push('\n');
            if tail.len() > STDERR_TAIL {
                let mut cut = tail.len() - STDERR_TAIL;
                while !tail.is_char_boundary(cut) {
                    cut += 1;
                }
                tail.drain(..cut);
            }
        }
    }
}

// --- The processor -----------------------------------------------------------------

/// Whisper mode's state across jobs: the idle worker, if one is running.
pub struct Whisper {
    config: WhisperConfig,
    idle: Mutex<Option<Worker>>,
}

impl Whisper {
    pub fn new(config: WhisperConfig) -> Self {
        Self {
            config,
            idle: Mutex::new(None),
        }
    }

    /// Starts a worker now (rather than at the first job), so a broken environment
    /// stops the runner before it registers.
    pub async fn warm_up(&self) -> Result<WorkerInfo, String> {
        let worker = Worker::start(&self.config).await?;
        let info = worker.info().clone();
        self.put_back(worker);
        Ok(info)
    }

    /// The idle worker if it is still alive; a dead one is dropped, not handed a job.
    fn take_idle(&self) -> Option<Worker> {
        let mut worker = self.idle.lock().ok().and_then(|mut idle| idle.take())?;
        if worker.is_alive() {
            Some(worker)
        } else {
            warn!("the idle whisper worker had exited; starting a new one");
            None
        }
    }

    fn put_back(&self, worker: Worker) {
        if let Ok(mut idle) = self.idle.lock() {
            *idle = Some(worker);
        }
    }

    /// One job. The error is the job's `error_msg`.
    pub async fn process(&self, input: &JobInput) -> Result<Transcript, String> {
        let plan = plan(&self.config, &input.settings)?;
        let mut worker = match self.take_idle() {
            Some(worker) => worker,
            None => Worker::start(&self.config).await?,
        };
        let started = Instant::now();
        let result = worker
            .transcribe(&plan, &input.audio_path, &input.progress)
            .await;
        match result {
            Ok(transcription) => {
                self.put_back(worker);
                info!(
                    job_id = input.job_id,
                    seconds = started.elapsed().as_secs_f64(),
                    segments = transcription.segments.len(),
                    language = %transcription.language,
                    "whisper transcription done"
                );
                let transcript = transcription.render(&plan.subtitles);
                input.progress.set(100.0);
                Ok(transcript)
            }
            Err(WorkerError::Job(message)) => {
                self.put_back(worker);
                Err(message)
            }
            Err(WorkerError::Broken(message)) => {
                warn!(job_id = input.job_id, error = %message, "the whisper worker is gone");
                drop(worker);
                Err(message)
            }
        }
    }

    /// `scribe-runner check`: starts a worker and loads every configured model.
    /// Returns one line per finding; `Err` when something doesn't work.
    pub async fn check(&self) -> Result<Vec<String>, Vec<String>> {
        let mut lines = Vec::new();
        let mut worker = match Worker::start(&self.config).await {
            Ok(worker) => worker,
            Err(e) => return Err(vec![e]),
        };
        let info = worker.info().clone();
        lines.push(format!(
            "whisper worker: {} (Python {}, faster-whisper {}, ctranslate2 {}, {} CUDA device(s)); \
             device {}, compute type {}",
            self.config.python.display(),
            info.python,
            info.faster_whisper,
            info.ctranslate2,
            info.cuda_devices,
            self.config.device,
            self.config.compute_type
        ));
        let mut ok = true;
        for (name, dir) in &self.config.models {
            match worker.check(&self.config, name, dir).await {
                Ok(answer) => {
                    let kind = if answer["multilingual"] == true {
                        "multilingual"
                    } else {
                        "English-only"
                    };
                    lines.push(format!(
                        "model {name}: {} ({kind}, loaded in {:.2} s): ok",
                        dir.display(),
                        answer["seconds"].as_f64().unwrap_or(0.0)
                    ));
                }
                Err(e) => {
                    ok = false;
                    lines.push(format!("model {name}: {}: {}", dir.display(), e.message()));
                    if matches!(e, WorkerError::Broken(_)) {
                        break;
                    }
                }
            }
        }
        if ok {
            Ok(lines)
        } else {
            Err(lines)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    fn config(dir: &Path) -> WhisperConfig {
        WhisperConfig {
            python: PathBuf::from("/bin/sh"),
            models: BTreeMap::from([("tiny.en".to_owned(), dir.join("tiny.en"))]),
            device: "cpu".into(),
            compute_type: "int8".into(),
            cpu_threads: 2,
            worker_script: None,
            working_dir: None,
        }
    }

    #[test]
    fn fallback_temperatures() {
        assert_eq!(temperatures(0.0, Some(0.2)), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(temperatures(0.5, Some(0.25)), [0.5, 0.75, 1.0]);
        assert_eq!(temperatures(0.3, None), [0.3]);
        assert_eq!(temperatures(0.3, Some(0.0)), [0.3]);
        assert_eq!(temperatures(1.5, Some(0.2)), [1.5]);
    }

    #[test]
    fn settings_become_faster_whisper_options() {
        let dir = tempfile::tempdir().unwrap();
        let settings = json!({
            "task": "transcribe", "model": "tiny.en", "language": "en",
            "alignment": {"processing": {"highlight_words": true, "max_line_count": 2,
                          "max_line_width": 30}, "return_char_alignments": false,
                          "interpolate_method": "nearest"},
            "diarization": null,
            "vad_settings": {"vad_onset": 0.4, "vad_offset": 0.3, "chunk_size": 20},
            "asr_settings": {"beam_size": 3, "patience": 1.5, "length_penalty": 0.5,
                             "temperature": 0.2, "temperature_increment_on_fallback": 0.4,
                             "compression_ratio_threshold": 2.0, "log_prob_threshold": -0.5,
                             "no_speech_threshold": 0.7, "initial_prompt": "Scribe",
                             "suppress_tokens": [-1, 7], "suppress_numerals": true},
            "email_notification": false
        });
        let plan = plan(&config(dir.path()), &settings).unwrap();
        assert!(plan.words);
        assert_eq!(
            plan.subtitles,
            SubtitleOptions {
                highlight_words: true,
                max_line_width: Some(30),
                max_line_count: Some(2)
            }
        );
        let r = &plan.request;
        assert_eq!(r["model"]["name"], "tiny.en");
        assert_eq!(r["model"]["path"], json!(dir.path().join("tiny.en")));
        assert_eq!(r["model"]["cpu_threads"], 2);
        assert_eq!(r["suppress_numerals"], true);
        let o = &r["options"];
        assert_eq!(o["beam_size"], 3);
        assert_eq!(o["patience"], 1.5);
        assert_eq!(o["temperature"], json!([0.2, 0.6, 1.0]));
        assert_eq!(o["initial_prompt"], "Scribe");
        assert_eq!(o["suppress_tokens"], json!([-1, 7]));
        assert_eq!(o["word_timestamps"], true);
        assert_eq!(o["condition_on_previous_text"], false);
        assert_eq!(
            o["vad_parameters"],
            json!({"threshold": 0.4, "neg_threshold": 0.3, "max_speech_duration_s": 20.0})
        );
    }

    #[test]
    fn missing_settings_take_project_w_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(
            &config(dir.path()),
            &json!({"model": "tiny.en", "alignment": null}),
        )
        .unwrap();
        assert!(!plan.words);
        let o = &plan.request["options"];
        assert_eq!(o["task"], "transcribe");
        assert_eq!(o["language"], Value::Null);
        assert_eq!(o["beam_size"], 5);
        assert_eq!(o["temperature"], json!([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]));
        assert_eq!(o["word_timestamps"], false);
        assert_eq!(o["vad_parameters"]["threshold"], 0.5);
    }

    #[test]
    fn unavailable_models_and_diarization_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let error = plan(&config, &json!({"model": "large"})).unwrap_err();
        assert_eq!(
            error,
            "model \"large\" is not available on this runner; it has tiny.en"
        );
        let error = plan(
            &config,
            &json!({"model": "tiny.en", "diarization": {"min_speakers": 2, "max_speakers": null}}),
        )
        .unwrap_err();
        assert!(error.contains("diarization is not available"), "{error}");
        let error = plan(&config, &json!({"model": 7})).unwrap_err();
        assert!(error.contains("not readable"), "{error}");
        // No settings at all means Project-W's defaults: model large.
        let error = plan(&config, &Value::Null).unwrap_err();
        assert!(error.contains("\"large\""), "{error}");
        let error = plan(&config, &json!("fast please")).unwrap_err();
        assert!(error.contains("not readable"), "{error}");
    }

    /// A worker in shell that answers by the audio file's name.
    const FAKE_WORKER: &str = r#"
echo '{"type":"ready","protocol":1,"pid":'$$',"python":"sh","faster_whisper":"fake","ctranslate2":"fake"}'
while read -r line; do
  id=$(printf '%s' "$line" | sed 's/.*"id":\([0-9]*\).*/\1/')
  case "$line" in
    *crash*) echo "Traceback: boom" >&2; exit 9;;
    *garbage*) echo "not json";;
    *fail*) echo '{"id":'$id',"type":"error","message":"could not decode the audio"}';;
    *hang*) echo '{"id":'$id',"type":"loaded","seconds":0.1,"cached":false}'; sleep 30;;
    *) echo '{"id":'$id',"type":"loaded","seconds":0.1,"cached":false,"multilingual":false}'
       echo '{"id":'$id',"type":"started","duration":4.0,"language":"en"}'
       echo '{"id":'$id',"type":"segment","start":0.0,"end":2.0,"text":" Hello there."}'
       echo '{"id":'$id',"type":"done","duration":4.0,"language":"en"}';;
  esac
done
"#;

    fn fake(dir: &Path, script: &str) -> Whisper {
        let path = dir.join("worker.sh");
        std::fs::write(&path, script).unwrap();
        Whisper::new(WhisperConfig {
            worker_script: Some(path),
            ..config(dir)
        })
    }

    fn job(dir: &Path, audio: &str) -> JobInput {
        JobInput {
            job_id: 1,
            settings: json!({"model": "tiny.en", "language": "en", "alignment": null}),
            audio_path: dir.join(audio),
            audio: crate::client::Audio {
                size: 10,
                content_type: "audio/wav".into(),
            },
            job_dir: dir.to_path_buf(),
            progress: Arc::new(Progress::default()),
        }
    }

    fn idle_pid(whisper: &Whisper) -> Option<u32> {
        whisper.idle.lock().unwrap().as_ref().map(|w| w.info().pid)
    }

    fn alive(pid: u32) -> bool {
        // A zombie (killed, not yet reaped) counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn the_worker_serves_jobs_and_survives_their_failures() {
        let dir = tempfile::tempdir().unwrap();
        let whisper = fake(dir.path(), FAKE_WORKER);
        whisper.warm_up().await.unwrap();
        let first = idle_pid(&whisper).unwrap();

        let input = job(dir.path(), "speech.wav");
        let transcript = whisper.process(&input).await.unwrap();
        assert_eq!(transcript.as_txt, "Hello there.\n");
        assert_eq!(
            transcript.as_vtt,
            "WEBVTT\n\n00:00.000 --> 00:02.000\nHello there.\n\n"
        );
        assert_eq!(input.progress.get(), 100.0);
        assert_eq!(idle_pid(&whisper), Some(first), "the worker is reused");

        // A failed job leaves the worker serving.
        let error = whisper
            .process(&job(dir.path(), "fail.wav"))
            .await
            .unwrap_err();
        assert_eq!(error, "could not decode the audio");
        assert_eq!(idle_pid(&whisper), Some(first));

        // A crash fails the job with the exit status and the stderr tail...
        let error = whisper
            .process(&job(dir.path(), "crash.wav"))
            .await
            .unwrap_err();
        assert!(error.contains("exited with status 9"), "{error}");
        assert!(error.contains("Traceback: boom"), "{error}");
        assert_eq!(idle_pid(&whisper), None);
        // ...and the next job gets a new worker.
        whisper
            .process(&job(dir.path(), "speech.wav"))
            .await
            .unwrap();
        let second = idle_pid(&whisper).unwrap();
        assert_ne!(second, first);

        // An idle worker that died meanwhile is replaced, not handed the job.
        std::process::Command::new("kill")
            .args(["-KILL", &second.to_string()])
            .status()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        whisper
            .process(&job(dir.path(), "speech.wav"))
            .await
            .unwrap();
        let third = idle_pid(&whisper).unwrap();
        assert_ne!(third, second);

        let error = whisper
            .process(&job(dir.path(), "garbage.wav"))
            .await
            .unwrap_err();
        assert!(error.contains("broke the protocol"), "{error}");
        assert_eq!(idle_pid(&whisper), None);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!alive(third), "a worker that broke the protocol is killed");

        // Settings the runner can't honour never reach the worker.
        let mut input = job(dir.path(), "speech.wav");
        input.settings = json!({"model": "large"});
        let error = whisper.process(&input).await.unwrap_err();
        assert!(error.contains("\"large\" is not available"), "{error}");
    }

    #[tokio::test]
    async fn dropping_a_job_kills_its_worker_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let whisper = fake(dir.path(), FAKE_WORKER);
        whisper.warm_up().await.unwrap();
        let pid = idle_pid(&whisper).unwrap();
        let input = job(dir.path(), "hang.wav");
        let result =
            tokio::time::timeout(Duration::from_millis(500), whisper.process(&input)).await;
        assert!(result.is_err());
        assert_eq!(input.progress.get(), PROGRESS_LOADED);
        let killed = Instant::now();
        while alive(pid) {
            assert!(
                killed.elapsed() < Duration::from_secs(1),
                "the worker outlived the job"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(idle_pid(&whisper), None);
    }

    #[tokio::test]
    async fn a_broken_environment_stops_the_warm_up() {
        let dir = tempfile::tempdir().unwrap();
        let whisper = fake(
            dir.path(),
            r#"echo '{"type":"fatal","message":"cannot import faster-whisper"}'; exit 3"#,
        );
        let error = whisper.warm_up().await.unwrap_err();
        assert_eq!(
            error,
            "the whisper worker cannot run: cannot import faster-whisper"
        );
        let whisper = fake(
            dir.path(),
            r#"echo '{"type":"ready","protocol":2,"pid":1,"python":"x","faster_whisper":"x","ctranslate2":"x"}'"#,
        );
        let error = whisper.warm_up().await.unwrap_err();
        assert!(error.contains("protocol 2"), "{error}");
        let whisper = fake(dir.path(), "echo oops >&2; exit 1");
        let error = whisper.warm_up().await.unwrap_err();
        assert_eq!(error, "the whisper worker exited with status 1: oops");
        let whisper = Whisper::new(WhisperConfig {
            python: dir.path().join("no-python"),
            ..config(dir.path())
        });
        let error = whisper.warm_up().await.unwrap_err();
        assert!(
            error.starts_with("starting the whisper worker with"),
            "{error}"
        );
    }

    #[test]
    fn segments_from_messages() {
        let message = json!({"type": "segment", "start": 0.0, "end": 1.5, "text": " Hi there",
            "words": [{"word": " Hi", "start": 0.0, "end": 0.4, "probability": 0.9},
                      {"word": " there", "start": 0.5, "end": 1.5, "probability": 0.8}]});
        let s = segment(&message, true).unwrap();
        assert_eq!(s.words.as_ref().unwrap()[1].word, "there");
        assert_eq!(s.text, " Hi there");
        assert!(segment(&message, false).unwrap().words.is_none());
        assert!(segment(&json!({"start": 0.0}), false).is_none());
    }
}
