//! `scribe-runner`: a runner daemon speaking Scribe's (and Project-W's) runner
//! protocol. The protocol client and the dummy and command modes arrive with
//! the jobs-and-runners issue; this binary already has its final CLI shape.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Scribe runner: registers with a Scribe (or Project-W) backend, receives
/// jobs, transcribes them and hands the transcripts back.
#[derive(Debug, Parser)]
#[command(name = "scribe-runner", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to the backend and process jobs (the default).
    Run,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            eprintln!("scribe-runner: the runner protocol is not implemented in this version yet");
            ExitCode::from(1)
        }
    }
}
