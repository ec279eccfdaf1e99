//! Transcription jobs (SPEC §3.5): their settings, submission, listing,
//! deletion and transcripts. Scheduling and the runner side live in
//! `crate::scheduling` and `crate::runners`.

pub mod deletion;
pub mod queries;
pub mod retention;
pub mod settings;
pub mod submission;
pub mod transcripts;
