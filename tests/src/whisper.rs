//! Harness pieces for whisper-mode tests: the runner's Python environment, spoken audio
//! made with espeak-ng and sox, a `scribe-runner` process, and strict parsers for the
//! subtitle formats.
//!
//! `scripts/test` (ensure_whisper) provides the components and exports
//! `SCRIBE_TEST_WHISPER_PYTHON` (the venv's python) and `SCRIBE_TEST_WHISPER_MODEL` (the
//! tiny.en model directory). A missing component fails the test with what to do.

use std::path::{Path, PathBuf};

use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::{json, Value};

use crate::accounts::bearer;
use crate::runners::RunnerProcess;
use crate::{json_body, TestApp};

pub const PYTHON_VAR: &str = "SCRIBE_TEST_WHISPER_PYTHON";
pub const MODEL_VAR: &str = "SCRIBE_TEST_WHISPER_MODEL";

/// Where `scripts/runner-env` puts the venv by default.
fn default_venv() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("scribe-runner/venv"))
}

fn from_env_or_venv(var: &str, in_venv: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| default_venv().map(|v| v.join(in_venv)))
        .unwrap_or_default();
    assert!(
        path.exists(),
        "\n\nWhisper-mode tests need the runner's Python environment, but {var} is unset and \
         {} does not exist.\nRun the suite with `scripts/test` (it creates the environment), \
         or run `scripts/runner-env` and export {var}.\n",
        path.display()
    );
    path
}

/// The Python of the runner's environment.
pub fn python() -> PathBuf {
    from_env_or_venv(PYTHON_VAR, "bin/python")
}

/// The Whisper tiny.en model directory (CTranslate2).
pub fn tiny_en_model() -> PathBuf {
    from_env_or_venv(MODEL_VAR, "models/tiny.en")
}

/// The runner config lines for whisper mode with tiny.en (plus `extra_models`, e.g. a
/// multilingual name mapped to the English-only model).
pub fn whisper_yaml(extra_models: &[&str]) -> String {
    let model = tiny_en_model();
    let mut yaml = format!(
        "mode: whisper\nwhisper:\n  python: {}\n  cpu_threads: 2\n  models:\n    tiny.en: {}\n",
        python().display(),
        model.display()
    );
    for name in extra_models {
        yaml.push_str(&format!("    {name}: {}\n", model.display()));
    }
    yaml
}

fn run_tool(program: &str, args: &[&str], package: &str) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "\n\n`{program}` could not be run ({e}). Whisper-mode tests speak their audio \
                 with it: install {package} (scripts/test does so as root).\n"
            )
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `text` spoken by espeak-ng into `dir/name` (a WAV file).
pub fn speak(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    run_tool(
        "espeak-ng",
        &["-w", &path.to_string_lossy(), text],
        "espeak-ng",
    );
    path
}

/// `source` re-encoded by sox into `dir/name`; the extension picks the format
/// (`.mp3`, `.ogg`, …).
pub fn encode(source: &Path, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    run_tool(
        "sox",
        &[&source.to_string_lossy(), &path.to_string_lossy()],
        "sox, libsox-fmt-base and libsox-fmt-mp3",
    );
    path
}

/// `seconds` of digital silence as a 16 kHz mono WAV.
pub fn silence(dir: &Path, name: &str, seconds: f64) -> PathBuf {
    let path = dir.join(name);
    run_tool(
        "sox",
        &[
            "-n",
            "-r",
            "16000",
            "-c",
            "1",
            &path.to_string_lossy(),
            "trim",
            "0",
            &seconds.to_string(),
        ],
        "sox",
    );
    path
}

/// The length of an audio file in seconds, as sox's `soxi -D` reads it.
pub fn duration(path: &Path) -> f64 {
    let output = std::process::Command::new("soxi")
        .arg("-D")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("soxi could not be run ({e}); install sox"));
    assert!(output.status.success(), "soxi -D {}", path.display());
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("soxi -D {}: {e}", path.display()))
}

/// Project-W's `alignment` object with shaped subtitle lines (all fields: nested objects
/// have no defaults).
pub fn alignment(
    highlight_words: bool,
    max_line_width: Option<u32>,
    max_line_count: Option<u32>,
) -> Value {
    json!({
        "processing": {"highlight_words": highlight_words, "max_line_width": max_line_width,
                       "max_line_count": max_line_count},
        "return_char_alignments": false,
        "interpolate_method": "nearest"
    })
}

/// Project-W's default `asr_settings`, with `suppress_numerals` as given.
pub fn asr_settings(suppress_numerals: bool) -> Value {
    json!({
        "beam_size": 5, "patience": 1.0, "length_penalty": 1.0, "temperature": 0.0,
        "temperature_increment_on_fallback": 0.2, "compression_ratio_threshold": 2.4,
        "log_prob_threshold": -1.0, "no_speech_threshold": 0.6, "initial_prompt": null,
        "suppress_tokens": [-1], "suppress_numerals": suppress_numerals
    })
}

/// `POST /api/jobs/submit_settings` → the settings id.
pub async fn submit_settings(app: &TestApp, user: &str, settings: Value) -> i64 {
    let response = bearer(app, Method::POST, "/api/jobs/submit_settings", user)
        .json(&settings)
        .send()
        .await
        .expect("submit_settings reaches the server");
    json_body(response, 200)
        .await
        .as_i64()
        .unwrap_or_else(|| panic!("a settings id for {settings}"))
}

/// Uploads the file at `path` as `content_type` with the given settings → the job id.
pub async fn submit_file(
    app: &TestApp,
    user: &str,
    path: &Path,
    content_type: &str,
    settings_id: i64,
) -> i64 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let part = Part::bytes(bytes)
        .file_name(name)
        .mime_str(content_type)
        .expect("a valid MIME type");
    let response = bearer(
        app,
        Method::POST,
        &format!("/api/jobs/submit_job?job_settings_id={settings_id}"),
        user,
    )
    .multipart(Form::new().part("audio_file", part))
    .send()
    .await
    .expect("submit_job reaches the server");
    json_body(response, 200).await.as_i64().expect("a job id")
}

impl RunnerProcess {
    /// Live (not zombie) child processes of the runner: its whisper worker.
    pub fn children(&self) -> Vec<u32> {
        live_children(self.pid())
    }
}

/// Whether `pid` runs (a zombie, killed but not yet reaped, doesn't).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .trim_start();
        !state.starts_with('Z') && !state.starts_with('X')
    })
}

/// Processes whose parent is `parent` and which aren't zombies.
pub fn live_children(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let mut fields = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && state != "Z" && state != "X" {
            children.push(pid);
        }
    }
    children
}

/// A subtitle cue with its times in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// `HH:MM:SS,mmm` (SRT) or `[HH:]MM:SS.mmm` (VTT).
fn parse_time(text: &str, marker: char, hours_required: bool) -> Option<f64> {
    let (clock, millis) = text.split_once(marker)?;
    if millis.len() != 3 || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parts: Vec<&str> = clock.split(':').collect();
    let (h, m, s) = match parts.as_slice() {
        [h, m, s] => (*h, *m, *s),
        [m, s] if !hours_required => ("0", *m, *s),
        _ => return None,
    };
    if [m, s].iter().any(|p| p.len() != 2) || (hours_required && h.len() < 2) {
        return None;
    }
    let h: u64 = h.parse().ok()?;
    let m: u64 = m.parse().ok()?;
    let s: u64 = s.parse().ok()?;
    let ms: u64 = millis.parse().ok()?;
    if m >= 60 || s >= 60 {
        return None;
    }
    Some((h * 3600 + m * 60 + s) as f64 + ms as f64 / 1000.0)
}

fn parse_cue_times(line: &str, marker: char, hours: bool, doc: &str) -> (f64, f64) {
    let (start, end) = line
        .split_once(" --> ")
        .unwrap_or_else(|| panic!("not a cue timing line: {line:?} in\n{doc}"));
    let parse = |t: &str| {
        parse_time(t, marker, hours)
            .unwrap_or_else(|| panic!("malformed time {t:?} in {line:?} in\n{doc}"))
    };
    (parse(start), parse(end))
}

/// Parses SRT strictly: numbered cues from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, text,
/// a blank line after each cue.
pub fn parse_srt(doc: &str) -> Vec<Cue> {
    let mut cues = Vec::new();
    for (i, block) in doc.split_terminator("\n\n").enumerate() {
        let mut lines = block.lines();
        let number = lines.next().unwrap_or_default();
        assert_eq!(number, (i + 1).to_string(), "cue number in\n{doc}");
        let (start, end) = parse_cue_times(lines.next().unwrap_or_default(), ',', true, doc);
        let text: Vec<&str> = lines.collect();
        assert!(!text.is_empty(), "cue {} has no text in\n{doc}", i + 1);
        cues.push(Cue {
            start,
            end,
            text: text.join("\n"),
        });
    }
    assert!(
        doc.is_empty() || doc.ends_with("\n\n"),
        "SRT ends with a blank line:\n{doc}"
    );
    cues
}

/// Parses WebVTT strictly: the `WEBVTT` header, then cues of `[HH:]MM:SS.mmm --> …` and text.
pub fn parse_vtt(doc: &str) -> Vec<Cue> {
    let body = doc
        .strip_prefix("WEBVTT\n\n")
        .unwrap_or_else(|| panic!("no WEBVTT header in\n{doc}"));
    let mut cues = Vec::new();
    for block in body.split_terminator("\n\n") {
        let mut lines = block.lines();
        let (start, end) = parse_cue_times(lines.next().unwrap_or_default(), '.', false, doc);
        let text: Vec<&str> = lines.collect();
        assert!(!text.is_empty(), "a cue without text in\n{doc}");
        cues.push(Cue {
            start,
            end,
            text: text.join("\n"),
        });
    }
    assert!(
        body.is_empty() || body.ends_with("\n\n"),
        "VTT ends with a blank line:\n{doc}"
    );
    cues
}

/// Parses the TSV: the `start\tend\ttext` header, then integer milliseconds and text.
pub fn parse_tsv(doc: &str) -> Vec<Cue> {
    let mut lines = doc.lines();
    assert_eq!(
        lines.next(),
        Some("start\tend\ttext"),
        "TSV header in\n{doc}"
    );
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [start, end, text] = fields.as_slice() else {
                panic!("a TSV row without three fields: {line:?}")
            };
            let ms = |f: &str| {
                f.parse::<u64>()
                    .unwrap_or_else(|_| panic!("not integer milliseconds: {f:?} in {line:?}"))
            };
            Cue {
                start: ms(start) as f64 / 1000.0,
                end: ms(end) as f64 / 1000.0,
                text: (*text).to_owned(),
            }
        })
        .collect()
}

/// Checks that cues are in order and inside `[0, duration]`: each starts no later than
/// it ends, and no cue starts before the previous one.
pub fn assert_cues_in_order(cues: &[Cue], duration: f64, what: &str) {
    assert!(!cues.is_empty(), "{what}: no cues");
    let mut previous = 0.0;
    for cue in cues {
        assert!(
            cue.start <= cue.end,
            "{what}: a cue ends before it starts: {cue:?} in {cues:?}"
        );
        assert!(
            cue.start >= previous,
            "{what}: cues out of order at {cue:?} in {cues:?}"
        );
        assert!(
            cue.end <= duration + 0.05,
            "{what}: {cue:?} ends after the audio ({duration} s)"
        );
        previous = cue.start;
    }
}

/// Lower case, letters, digits and single spaces only: for "the words are there" checks
/// that ignore punctuation and capitals.
pub fn normalise(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtitle_parsers_are_strict() {
        let srt = "1\n00:00:00,000 --> 00:00:01,500\nHello\n\n2\n00:00:02,000 --> 01:00:03,250\nWorld\nagain\n\n";
        let cues = parse_srt(srt);
        assert_eq!(cues[1].end, 3603.25);
        assert_eq!(cues[1].text, "World\nagain");
        let vtt =
            "WEBVTT\n\n00:01.000 --> 00:02.000\nHi\n\n01:00:00.000 --> 01:00:01.000\nThere\n\n";
        assert_eq!(parse_vtt(vtt)[1].start, 3600.0);
        assert!(parse_time("00:00.000", ',', true).is_none());
        assert!(parse_time("0:00:00,000", ',', true).is_none());
        assert!(parse_time("00:61.000", '.', false).is_none());
        let tsv = "start\tend\ttext\n0\t1500\tHello\n";
        assert_eq!(parse_tsv(tsv)[0].end, 1.5);
        assert_eq!(
            normalise("Good morning, Everyone!"),
            "good morning everyone"
        );
    }
}
