//! The `scribe-runner` binary: parses the command line, loads the config and runs
//! the daemon until SIGTERM or SIGINT.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use scribe_runner::client::RunnerClient;
use scribe_runner::config::{Config, Overrides, ProcessorConfig};
use scribe_runner::daemon;
use scribe_runner::processor::Processor;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A Scribe runner: registers with a Scribe (or Project-W) backend, receives
/// jobs, transcribes them and hands the transcripts back.
#[derive(Debug, Parser)]
#[command(name = "scribe-runner", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    overrides: Overrides,
    /// Log format on stderr.
    #[arg(
        long,
        env = "SCRIBE_RUNNER_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to the backend and process jobs (the default).
    Run,
    /// Validate the configuration, check the transcription environment (whisper mode:
    /// the Python worker and every configured model) and that the backend answers
    /// /api/about.
    Check {
        /// Skip the backend: no backend URL or token needed.
        #[arg(long)]
        skip_backend: bool,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCRIBE_RUNNER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let command = cli.command.unwrap_or(Command::Run);
    let loaded = match command {
        Command::Check { skip_backend: true } => {
            ProcessorConfig::load(&cli.overrides).map(Loaded::Processor)
        }
        _ => Config::load(&cli.overrides).map(Loaded::Full),
    };
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            error!("invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match (command, loaded) {
        (Command::Run, Loaded::Full(config)) => runtime.block_on(run(config)),
        (Command::Check { .. }, Loaded::Full(config)) => {
            runtime.block_on(check(config.processor.clone(), Some(config)))
        }
        (_, Loaded::Processor(processor)) => runtime.block_on(check(processor, None)),
    }
}

enum Loaded {
    Full(Config),
    Processor(ProcessorConfig),
}

async fn run(config: Config) -> ExitCode {
    let shutdown = CancellationToken::new();
    if let Err(e) = watch_signals(shutdown.clone()) {
        error!("could not install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    info!(backend = %config.backend_url, name = %config.name, "starting");
    match daemon::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("stopping: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM and SIGINT cancel `shutdown`.
fn watch_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
        shutdown.cancel();
    });
    Ok(())
}

/// Prints what it found on stdout, one line each; fails if anything doesn't work.
async fn check(processor: ProcessorConfig, config: Option<Config>) -> ExitCode {
    let (lines, mut ok) = match Processor::new(processor).check().await {
        Ok(lines) => (lines, true),
        Err(lines) => (lines, false),
    };
    {
        let mut out = std::io::stdout().lock();
        for line in &lines {
            if writeln!(out, "{line}").is_err() {
                return ExitCode::FAILURE;
            }
        }
    }
    if !ok {
        error!("the transcription environment does not work; see above");
    }
    if let Some(config) = config {
        ok &= check_backend(&config).await;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn check_backend(config: &Config) -> bool {
    let client = match RunnerClient::new(&config.backend_url, config.token.clone()) {
        Ok(client) => client,
        Err(e) => {
            error!("{e}");
            return false;
        }
    };
    match client.about().await {
        Ok(about) => {
            let version = about["version"].as_str().unwrap_or("?");
            let git_hash = about["git_hash"].as_str().unwrap_or("?");
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "configuration ok; the backend at {} runs version {version} ({git_hash})",
                config.backend_url
            )
            .is_ok()
        }
        Err(e) => {
            error!(backend = %config.backend_url, "the backend did not answer /api/about: {e}");
            false
        }
    }
}
