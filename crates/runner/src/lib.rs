//! `scribe-runner`: a runner daemon speaking Scribe's (and Project-W's) runner
//! protocol (SPEC §3.6). [`client`] is the typed protocol client, [`daemon`] the
//! register / heartbeat / job loop, [`processor`] the dummy and command modes,
//! [`whisper`] the whisper mode (faster-whisper in a Python worker), [`formats`] the
//! five transcript formats, [`config`] the YAML file and flags.

pub mod client;
pub mod config;
pub mod daemon;
pub mod formats;
pub mod processor;
pub mod whisper;
