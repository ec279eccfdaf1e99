//! Log output: human-readable by default, one JSON object per line when
//! `logging.console.json_fmt` is set, always on stderr so that commands that
//! print (`openapi`, `check-config`) keep stdout clean. `SCRIBE_LOG` (an
//! env-filter directive) overrides the configured level for debugging.

use std::io::IsTerminal;

use scribe_domain::config::{LogLevel, LoggingConfig};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub fn init(config: &LoggingConfig) -> Result<(), String> {
    let console_filter = filter_for(config.console.level);
    let console = if config.console.json_fmt {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(false)
            .with_span_list(false)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colour codes only for a person at a terminal, not for journald or docker logs.
            .with_ansi(std::io::stderr().is_terminal())
            .boxed()
    }
    .with_filter(console_filter);

    let file = match &config.file.path {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|err| format!("cannot open log file {}: {err}", path.display()))?;
            let writer = std::sync::Mutex::new(file).with_max_level(tracing::Level::TRACE);
            let layer = if config.file.json_fmt {
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(writer)
                    .with_ansi(false)
                    .boxed()
            } else {
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(false)
                    .boxed()
            };
            Some(layer.with_filter(filter_for(config.file.level)))
        }
        None => None,
    };

    tracing_subscriber::registry()
        .with(console)
        .with(file)
        .try_init()
        .map_err(|err| err.to_string())
}

fn filter_for(level: LogLevel) -> EnvFilter {
    if let Ok(directive) = std::env::var("SCRIBE_LOG") {
        if let Ok(filter) = EnvFilter::try_new(directive) {
            return filter;
        }
    }
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error | LogLevel::Critical => "error",
    };
    // Dependencies are noisy below warn; our own crates follow the configured level.
    EnvFilter::new(format!("warn,scribe={level},scribe_domain={level},scribe_http={level},scribe_client_routes={level},scribe_runner_routes={level},scribe_admin_routes={level},scribe_server={level}"))
}
