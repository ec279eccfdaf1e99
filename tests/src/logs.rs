//! A child's output, collected line by line in the background, that tests can wait on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

/// One output line; `json` is set when the line is a JSON object (`logging.console.json_fmt`).
#[derive(Clone, Debug)]
pub struct LogLine {
    pub raw: String,
    pub json: Option<Value>,
}

impl LogLine {
    fn parse(raw: String) -> Self {
        let json = serde_json::from_str::<Value>(&raw)
            .ok()
            .filter(Value::is_object);
        Self { raw, json }
    }

    /// `fields.message` of a tracing JSON line.
    pub fn message(&self) -> Option<&str> {
        self.field("message").and_then(Value::as_str)
    }

    /// A field of the event: tracing-subscriber nests them under `fields`; a flattened
    /// format puts them at the top level. Both are accepted.
    pub fn field(&self, name: &str) -> Option<&Value> {
        let json = self.json.as_ref()?;
        json.get("fields")
            .and_then(|fields| fields.get(name))
            .or_else(|| json.get(name))
    }

    /// A field rendered as text whether it was logged as a string or a number.
    pub fn field_text(&self, name: &str) -> Option<String> {
        self.field(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    pub fn level(&self) -> Option<&str> {
        self.json.as_ref()?.get("level")?.as_str()
    }
}

/// Lines read so far, plus a way to wait for more. Cheap to clone.
#[derive(Clone)]
pub struct Logs {
    lines: Arc<Mutex<Vec<LogLine>>>,
    /// Counts lines; the sender drops at end of stream, which waiters see as "closed".
    updates: watch::Receiver<usize>,
}

impl Logs {
    /// Starts draining `stream` on the current runtime. Echoes nothing: the lines are shown
    /// when a test fails (see [`Logs::dump`]).
    pub fn collect(stream: impl AsyncRead + Unpin + Send + 'static) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (sender, updates) = watch::channel(0usize);
        let sink = Arc::clone(&lines);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let count = {
                    let mut lines = sink.lock().expect("log buffer lock");
                    lines.push(LogLine::parse(line));
                    lines.len()
                };
                sender.send_replace(count);
            }
            // `sender` drops here: the stream is closed.
        });
        Self { lines, updates }
    }

    /// A copy of every line so far.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.lock().expect("log buffer lock").clone()
    }

    /// Every line so far, joined, for failure messages.
    pub fn dump(&self) -> String {
        let lines = self.lines.lock().expect("log buffer lock");
        let mut out = String::new();
        for line in lines.iter() {
            out.push_str(&line.raw);
            out.push('\n');
        }
        out
    }

    /// The first line (old or new) matching `predicate`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        predicate: impl Fn(&LogLine) -> bool,
    ) -> Result<LogLine, WaitError> {
        self.wait_for_from(0, timeout, predicate).await
    }

    /// Like [`Logs::wait_for`], but panics with the whole log when nothing matches.
    pub async fn expect_line(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&LogLine) -> bool,
    ) -> LogLine {
        match self.wait_for(timeout, predicate).await {
            Ok(line) => line,
            Err(e) => panic!("no log line {what} ({e}); log so far:\n{}", self.dump()),
        }
    }

    /// The number of lines so far: pass it to [`Logs::wait_for_from`] to wait for lines
    /// written after this point only.
    pub fn mark(&self) -> usize {
        self.lines.lock().expect("log buffer lock").len()
    }

    /// The first line at index `from` or later matching `predicate`.
    pub async fn wait_for_from(
        &self,
        from: usize,
        timeout: Duration,
        predicate: impl Fn(&LogLine) -> bool,
    ) -> Result<LogLine, WaitError> {
        let mut updates = self.updates.clone();
        let mut next = from;
        let search = async {
            loop {
                // Mark the current count as seen *before* scanning, so a line pushed during
                // the scan still wakes `changed` below.
                updates.borrow_and_update();
                {
                    let lines = self.lines.lock().expect("log buffer lock");
                    while next < lines.len() {
                        if predicate(&lines[next]) {
                            return Ok(lines[next].clone());
                        }
                        next += 1;
                    }
                }
                if updates.changed().await.is_err() {
                    // Closed: one last look at lines pushed just before the close.
                    let lines = self.lines.lock().expect("log buffer lock");
                    return lines[next.min(lines.len())..]
                        .iter()
                        .find(|l| predicate(l))
                        .cloned()
                        .ok_or(WaitError::Closed);
                }
            }
        };
        tokio::time::timeout(timeout, search)
            .await
            .unwrap_or(Err(WaitError::Timeout(timeout)))
    }
}

#[derive(Debug)]
pub enum WaitError {
    /// The stream ended (the process exited) without a matching line.
    Closed,
    Timeout(Duration),
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed => write!(f, "the output ended"),
            Self::Timeout(t) => write!(f, "nothing within {t:?}"),
        }
    }
}

impl std::error::Error for WaitError {}
