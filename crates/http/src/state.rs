use scribe_domain::Domain;

/// What every handler can reach through `web::Data<AppState>`.
#[derive(Clone)]
pub struct AppState {
    pub domain: Domain,
    pub build: BuildInfo,
}

/// Facts about the running build, reported by `/api/about` and `--version`.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    pub version: &'static str,
    pub git_hash: &'static str,
}
