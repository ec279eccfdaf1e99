//! Key paths, and where a value came from when it was not written in the
//! file, so that a message about `web_server.port` can say it was set by
//! `SCRIBE_WEB_SERVER__PORT`.

use std::collections::BTreeMap;
use std::fmt;

use super::error::Problem;

/// A position in the configuration tree, rendered like serde_path_to_error
/// renders its paths (`a.b[0].c`), so that problems found before and during
/// deserialization read the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub(crate) fn root() -> Self {
        KeyPath::default()
    }

    pub(crate) fn key(&self, key: impl Into<String>) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.into()));
        path
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Where a value that was not literally in the file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A `SCRIBE_...` variable set this key (or created this section).
    EnvVar(String),
    /// A `!ENV` tag in the file read these variables.
    EnvTag(Vec<String>),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::EnvVar(name) => write!(f, "set by environment variable {name}"),
            Origin::EnvTag(names) if names.is_empty() => f.write_str("from a !ENV tag"),
            Origin::EnvTag(names) => {
                write!(f, "from a !ENV tag reading {}", names.join(", "))
            }
        }
    }
}

/// The origins of values that did not come from the file, by rendered path.
#[derive(Debug, Default)]
pub(crate) struct Origins(BTreeMap<String, Origin>);

impl Origins {
    /// Records an origin; the first one recorded for a path wins, since it is
    /// the one that created the section.
    pub(crate) fn record(&mut self, path: &KeyPath, origin: Origin) {
        self.0.entry(path.to_string()).or_insert(origin);
    }

    pub(crate) fn set_by_env_var(&self, path: &KeyPath) -> bool {
        matches!(self.0.get(&path.to_string()), Some(Origin::EnvVar(_)))
    }

    /// The origin of the value at `key` or of the nearest enclosing section.
    fn find(&self, key: &str) -> Option<&Origin> {
        let mut candidate = key;
        loop {
            if let Some(origin) = self.0.get(candidate) {
                return Some(origin);
            }
            let cut = candidate.rfind(['.', '['])?;
            candidate = &candidate[..cut];
        }
    }

    /// Adds "(set by environment variable ...)" to a problem whose key did
    /// not come from the file, so the admin looks in the right place.
    pub(crate) fn annotate(&self, mut problem: Problem) -> Problem {
        if let Some(origin) = self.find(&problem.key) {
            problem.message = format!("{} ({origin})", problem.message);
        }
        problem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_serde_path_to_error() {
        let path = KeyPath::root()
            .key("web_server")
            .key("allowed_hosts")
            .index(2);
        assert_eq!(path.to_string(), "web_server.allowed_hosts[2]");
        assert_eq!(KeyPath::root().to_string(), "");
    }

    #[test]
    fn annotation_uses_the_nearest_recorded_section() {
        let mut origins = Origins::default();
        let provider = KeyPath::root()
            .key("security")
            .key("oidc_providers")
            .key("new");
        origins.record(&provider, Origin::EnvVar("SCRIBE_X".into()));
        let problem = origins.annotate(Problem::new(
            "security.oidc_providers.new.base_url",
            "missing",
        ));
        assert_eq!(
            problem.message,
            "missing (set by environment variable SCRIBE_X)"
        );
        let untouched = origins.annotate(Problem::new("security.secret_key", "bad"));
        assert_eq!(untouched.message, "bad");
    }
}
