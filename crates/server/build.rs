//! Records the git commit of the build for `/api/about` and `--version`.
//! `SCRIBE_GIT_HASH` wins (container builds have no .git directory).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SCRIBE_GIT_HASH");
    let hash = std::env::var("SCRIBE_GIT_HASH")
        .ok()
        .filter(|hash| !hash.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "HEAD"])
                .output()
                .ok()
                .filter(|output| output.status.success())
                .and_then(|output| String::from_utf8(output.stdout).ok())
                .map(|hash| hash.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SCRIBE_GIT_HASH={hash}");
    if let Ok(output) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
    {
        if let Ok(git_dir) = String::from_utf8(output.stdout) {
            let git_dir = git_dir.trim();
            if !git_dir.is_empty() {
                println!("cargo:rerun-if-changed={git_dir}/HEAD");
                println!("cargo:rerun-if-changed={git_dir}/refs/heads");
            }
        }
    }
}
