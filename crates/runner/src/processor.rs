//! Turning a downloaded audio file into a transcript: the `dummy` mode (fake but
//! deterministic, for tests and load), the `command` mode (an external program) and
//! the `whisper` mode ([`crate::whisper`]).
//!
//! Processing is a future; aborting a job drops it. In command and whisper modes the
//! program runs in its own process group, and dropping the future kills the whole group.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::client::{Audio, Transcript};
use crate::config::ProcessorConfig;
use crate::formats::{Segment, SubtitleOptions, Transcription};
use crate::whisper::Whisper;

/// The current job's progress (0–100), shared with the heartbeat.
#[derive(Debug, Default)]
pub struct Progress(AtomicU64);

impl Progress {
    pub fn set(&self, value: f64) {
        let value = if value.is_finite() {
            value.clamp(0.0, 100.0)
        } else {
            0.0
        };
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Everything a processor gets for one job.
#[derive(Debug)]
pub struct JobInput {
    pub job_id: i64,
    pub settings: Value,
    pub audio_path: PathBuf,
    pub audio: Audio,
    /// The job's private directory (holds the audio; removed afterwards).
    pub job_dir: PathBuf,
    pub progress: Arc<Progress>,
}

/// The configured processor and what it keeps between jobs (whisper's worker).
pub struct Processor {
    config: ProcessorConfig,
    whisper: Option<Whisper>,
}

impl Processor {
    pub fn new(config: ProcessorConfig) -> Self {
        let whisper = match &config {
            ProcessorConfig::Whisper(whisper) => Some(Whisper::new(whisper.clone())),
            _ => None,
        };
        Self { config, whisper }
    }

    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    /// Checks what can be checked before the first job (whisper: starts its worker).
    pub async fn warm_up(&self) -> Result<(), String> {
        if let Some(whisper) = &self.whisper {
            let info = whisper.warm_up().await?;
            tracing::info!(
                python = %info.python,
                faster_whisper = %info.faster_whisper,
                ctranslate2 = %info.ctranslate2,
                worker_pid = info.pid,
                "whisper worker ready"
            );
        }
        Ok(())
    }

    /// Runs one job. The error is the `error_msg` the backend gets.
    pub async fn process(&self, input: &JobInput) -> Result<Transcript, String> {
        match (&self.config, &self.whisper) {
            (ProcessorConfig::Dummy { duration }, _) => dummy(*duration, input).await,
            (ProcessorConfig::Command { argv, .. }, _) => command(argv, input).await,
            (ProcessorConfig::Whisper(_), Some(whisper)) => whisper.process(input).await,
            (ProcessorConfig::Whisper(_), None) => Err("whisper mode is not set up".into()),
        }
    }

    /// `scribe-runner check`: what this processor found, one line each.
    pub async fn check(&self) -> Result<Vec<String>, Vec<String>> {
        match (&self.config, &self.whisper) {
            (ProcessorConfig::Whisper(_), Some(whisper)) => whisper.check().await,
            (ProcessorConfig::Dummy { .. }, _) => Ok(vec!["mode dummy: nothing to check".into()]),
            (ProcessorConfig::Command { argv, .. }, _) => {
                Ok(vec![format!("mode command: runs {argv:?}")])
            }
            (ProcessorConfig::Whisper(_), None) => Err(vec!["whisper mode is not set up".into()]),
        }
    }
}

/// Runs a processor without state kept between jobs (tests).
pub async fn process(config: &ProcessorConfig, input: &JobInput) -> Result<Transcript, String> {
    Processor::new(config.clone()).process(input).await
}

/// Steps in which the dummy reports progress.
const DUMMY_STEPS: u32 = 10;

async fn dummy(duration: Duration, input: &JobInput) -> Result<Transcript, String> {
    if input.audio.size == 0 {
        return Err("dummy transcription: the audio file is empty".into());
    }
    let checksum = fnv1a64_file(&input.audio_path)
        .await
        .map_err(|e| format!("dummy transcription: reading the audio: {e}"))?;
    for step in 0..DUMMY_STEPS {
        input
            .progress
            .set(f64::from(step) * 100.0 / f64::from(DUMMY_STEPS));
        tokio::time::sleep(duration / DUMMY_STEPS).await;
    }
    input.progress.set(100.0);
    Ok(dummy_transcript(
        input.audio.size,
        &input.audio.content_type,
        checksum,
    ))
}

/// The dummy's output: a function of the audio's size, type and bytes only, so tests
/// (and load runs) can predict it. One segment from 0 to 1 s, rendered like a real
/// transcript.
pub fn dummy_transcript(size: u64, content_type: &str, checksum: u64) -> Transcript {
    let line = dummy_line(size, content_type, checksum);
    Transcription {
        language: "en".into(),
        segments: vec![Segment {
            start: 0.0,
            end: 1.0,
            text: line,
            words: None,
        }],
    }
    .render(&SubtitleOptions::default())
}

/// The one line of text every dummy format carries.
pub fn dummy_line(size: u64, content_type: &str, checksum: u64) -> String {
    format!("Dummy transcript of {size} bytes of {content_type} (fnv1a64 {checksum:016x}).")
}

/// FNV-1a (64 bit) of a byte string: the dummy's proof that the audio arrived intact.
pub fn fnv1a64(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

async fn fnv1a64_file(path: &Path) -> std::io::Result<u64> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut hash = FNV_OFFSET;
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            return Ok(hash);
        }
        hash = fnv1a64(hash, &buffer[..n]);
    }
}

/// How much of the program's stderr goes into the error message.
const STDERR_TAIL: usize = 2000;
/// The single-file output a program may write instead of five files.
pub const RESULT_FILE: &str = "result.json";

async fn command(argv: &[String], input: &JobInput) -> Result<Transcript, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "no transcription command configured".to_owned())?;
    let out_dir = input.job_dir.join("out");
    tokio::fs::create_dir_all(&out_dir)
        .await
        .map_err(|e| format!("creating the output directory: {e}"))?;

    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg(&input.audio_path)
        .arg(&out_dir)
        .current_dir(&input.job_dir)
        .env("SCRIBE_JOB_ID", input.job_id.to_string())
        .env("SCRIBE_JOB_SETTINGS", input.settings.to_string())
        .env("SCRIBE_AUDIO_CONTENT_TYPE", &input.audio.content_type)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting the transcription command {program:?}: {e}"))?;
    // Kills the program and anything it started, however this future ends.
    let group = child.id().map(ProcessGroup);

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let progress = Arc::clone(&input.progress);
    let read_progress = async move {
        if let Some(stdout) = stdout {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(value) = parse_progress(&line) {
                    progress.set(value);
                }
            }
        }
    };
    let wait = async {
        let status = child.wait().await;
        // Helpers the program left behind would hold the pipes open.
        if let Some(group) = &group {
            group.kill();
        }
        status
    };
    let (status, (), tail) = tokio::join!(wait, read_progress, tail_of(stderr));
    let status = status.map_err(|e| format!("waiting for the transcription command: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the transcription command failed ({status}): {}",
            tail.trim()
        ));
    }
    read_outputs(&out_dir).await.map_err(|e| {
        let tail = tail.trim();
        if tail.is_empty() {
            e
        } else {
            format!("{e}; stderr: {tail}")
        }
    })
}

/// `progress 42.5` or `progress: 42.5` (any case) on the program's stdout.
fn parse_progress(line: &str) -> Option<f64> {
    let line = line.trim();
    let rest = line
        .get(..8)?
        .eq_ignore_ascii_case("progress")
        .then(|| &line[8..])?;
    let rest = rest.trim_start().strip_prefix(':').unwrap_or(rest).trim();
    rest.trim_end_matches('%').trim().parse().ok()
}

/// The last [`STDERR_TAIL`] bytes of a stream, read to its end.
async fn tail_of(stream: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut tail: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buffer[..n]);
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    String::from_utf8_lossy(&tail).into_owned()
}

/// `result.json` with the five fields, else one file per format, found by extension.
async fn read_outputs(out_dir: &Path) -> Result<Transcript, String> {
    let result = out_dir.join(RESULT_FILE);
    if tokio::fs::try_exists(&result).await.unwrap_or(false) {
        let text = tokio::fs::read(&result)
            .await
            .map_err(|e| format!("reading {RESULT_FILE}: {e}"))?;
        return serde_json::from_slice(&text).map_err(|e| format!("{RESULT_FILE}: {e}"));
    }
    let mut files: Vec<PathBuf> = Vec::new();
    let mut entries = tokio::fs::read_dir(out_dir)
        .await
        .map_err(|e| format!("reading the output directory: {e}"))?;
    while let Ok(Some(entry)) = entries.next_entry().await {
        files.push(entry.path());
    }
    files.sort();
    let find = |ext: &str| -> Result<PathBuf, String> {
        let mut matching = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext));
        match (matching.next(), matching.next()) {
            (Some(path), None) => Ok(path.clone()),
            (None, _) => Err(format!(
                "the transcription command wrote no .{ext} file (and no {RESULT_FILE})"
            )),
            (Some(_), Some(_)) => Err(format!(
                "the transcription command wrote more than one .{ext} file"
            )),
        }
    };
    let paths = [
        find("txt")?,
        find("srt")?,
        find("tsv")?,
        find("vtt")?,
        find("json")?,
    ];
    let mut texts = Vec::with_capacity(5);
    for path in &paths {
        texts.push(
            tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?,
        );
    }
    let as_json = match serde_json::from_str::<Value>(&texts[4]) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("the .json output is not a JSON object".into()),
        Err(e) => return Err(format!("the .json output: {e}")),
    };
    let mut texts = texts.into_iter();
    let mut next = || texts.next().unwrap_or_default();
    Ok(Transcript {
        as_txt: next(),
        as_srt: next(),
        as_tsv: next(),
        as_vtt: next(),
        as_json,
    })
}

/// A child's process group, killed (SIGKILL) on drop. A group outlives its leader while
/// any member lives, and Linux never hands out a pid still used as a group id, so this
/// never hits a stranger.
pub(crate) struct ProcessGroup(pub(crate) u32);

impl ProcessGroup {
    #[allow(unsafe_code)]
    pub(crate) fn kill(&self) {
        #[cfg(unix)]
        if let Ok(pid) = libc::pid_t::try_from(self.0) {
            // 0 and 1 would name our own group and init: never a child's group.
            if pid <= 1 {
                return;
            }
            // SAFETY: kill(2) takes plain integers and touches no memory of ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn input(dir: &Path, bytes: &[u8]) -> JobInput {
        let audio_path = dir.join("audio.mpeg");
        std::fs::write(&audio_path, bytes).unwrap();
        JobInput {
            job_id: 7,
            settings: json!({"model": "large"}),
            audio_path,
            audio: Audio {
                size: bytes.len() as u64,
                content_type: "audio/mpeg".into(),
            },
            job_dir: dir.to_path_buf(),
            progress: Arc::new(Progress::default()),
        }
    }

    fn script(dir: &Path, body: &str) -> Vec<String> {
        let path = dir.join("transcribe.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        vec!["/bin/sh".into(), path.display().to_string()]
    }

    #[test]
    fn progress_lines() {
        assert_eq!(parse_progress("progress 42.5"), Some(42.5));
        assert_eq!(parse_progress("PROGRESS: 7%"), Some(7.0));
        assert_eq!(parse_progress("progressive rock"), None);
        assert_eq!(parse_progress("pro"), None);
    }

    #[tokio::test]
    async fn the_dummy_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let input = input(dir.path(), b"abc");
        let config = ProcessorConfig::Dummy {
            duration: Duration::from_millis(20),
        };
        let transcript = process(&config, &input).await.unwrap();
        let expected = dummy_transcript(3, "audio/mpeg", fnv1a64(FNV_OFFSET, b"abc"));
        assert_eq!(transcript, expected);
        assert_eq!(input.progress.get(), 100.0);
        // FNV-1a 64 of "abc", a published test vector.
        assert_eq!(fnv1a64(FNV_OFFSET, b"abc"), 0xe71f_a219_0541_574b);
    }

    #[tokio::test]
    async fn a_command_writes_five_files() {
        let dir = tempfile::tempdir().unwrap();
        let input = input(dir.path(), b"abc");
        let argv = script(
            dir.path(),
            r#"echo "progress: 50"
out="$2"
printf 'hello %s' "$SCRIBE_JOB_ID" > "$out/audio.txt"
printf 'srt' > "$out/audio.srt"
printf 'tsv' > "$out/audio.tsv"
printf 'vtt' > "$out/audio.vtt"
printf '{"segments": []}' > "$out/audio.json""#,
        );
        let config = ProcessorConfig::Command {
            argv,
            working_dir: None,
        };
        let transcript = process(&config, &input).await.unwrap();
        assert_eq!(transcript.as_txt, "hello 7");
        assert_eq!(transcript.as_vtt, "vtt");
        assert_eq!(transcript.as_json["segments"], json!([]));
        assert_eq!(input.progress.get(), 50.0);
    }

    #[tokio::test]
    async fn a_command_may_write_one_json() {
        let dir = tempfile::tempdir().unwrap();
        let input = input(dir.path(), b"abc");
        let argv = script(
            dir.path(),
            r#"printf '{"as_txt":"a","as_srt":"b","as_tsv":"c","as_vtt":"d","as_json":{}}' > "$2/result.json""#,
        );
        let config = ProcessorConfig::Command {
            argv,
            working_dir: None,
        };
        let transcript = process(&config, &input).await.unwrap();
        assert_eq!(transcript.as_txt, "a");
    }

    #[tokio::test]
    async fn failures_carry_the_stderr_tail() {
        let dir = tempfile::tempdir().unwrap();
        let input = input(dir.path(), b"abc");
        let argv = script(dir.path(), "echo 'model not found' >&2\nexit 3");
        let config = ProcessorConfig::Command {
            argv,
            working_dir: None,
        };
        let error = process(&config, &input).await.unwrap_err();
        assert!(error.contains("model not found"), "{error}");
        assert!(error.contains('3'), "{error}");

        let argv = script(dir.path(), "echo 'half done' >&2\nprintf x > \"$2/a.txt\"");
        let config = ProcessorConfig::Command {
            argv,
            working_dir: None,
        };
        let error = process(&config, &input).await.unwrap_err();
        assert!(
            error.contains(".srt") && error.contains("half done"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let input = input(dir.path(), b"abc");
        let marker = dir.path().join("still-running");
        let argv = script(
            dir.path(),
            &format!("sleep 1\ntouch {}\nsleep 30", marker.display()),
        );
        let config = ProcessorConfig::Command {
            argv,
            working_dir: None,
        };
        let result =
            tokio::time::timeout(Duration::from_millis(200), process(&config, &input)).await;
        assert!(result.is_err());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "the script survived the abort");
    }
}
