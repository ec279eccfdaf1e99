//! Black-box tests: the real `scribe` binary over real HTTP, each test on a fresh SQLite file
//! and again on a fresh PostgreSQL database (`db_test!`). Tests that never touch a database
//! (`--help`, `openapi`, config errors caught before any connection) run once.
//!
//! One binary for all of them (zero2prod): one link step, one harness crate (`scribe_tests`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod cli;
mod config;
mod docs;
mod errors;
mod general;
mod harness;
mod hosts;
mod jobs;
mod jobs_settings;
mod ldap;
mod lifecycle;
mod migrations;
mod oidc;
mod runner_daemon;
mod runner_faults;
mod runners;
mod sessions;
mod spa;
mod tls;
mod whisper;
