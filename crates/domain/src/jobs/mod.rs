//! Transcription jobs (SPEC §3.5): their settings, and (with later work) the jobs
//! themselves, their audio and their transcripts.

pub mod settings;
