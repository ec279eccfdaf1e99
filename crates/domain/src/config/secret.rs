//! A wrapper that keeps secrets out of logs and printed configs.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// What a [`Secret`] shows instead of its value.
pub const REDACTED: &str = "[redacted]";

/// A configured secret (password, key, connection string). `Debug` and
/// `Serialize` print `[redacted]`, so neither a log line nor
/// `scribe check-config` can leak it; the value is only reachable through
/// [`Secret::expose`], which makes every use easy to find.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value itself. Never log or print it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde's messages quote the offending value; for a secret that would
        // put (part of) it in the log, so the message only says what's wrong.
        T::deserialize(deserializer)
            .map(Secret)
            .map_err(|err: D::Error| {
                // A missing field's message names the key, not the value: keep it.
                if err.to_string().starts_with("missing field") {
                    return err;
                }
                de::Error::custom(
                    "expected text (the value is not shown since it is secret); if YAML reads it \
                 as a number or boolean, put it in quotes",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn debug_and_serialize_redact_but_expose_returns_the_value() {
        let secret: Secret<String> = serde_yaml::from_str("hunter2-hunter2").unwrap();
        assert_eq!(secret.expose(), "hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), REDACTED);
        let yaml = serde_yaml::to_string(&secret).unwrap();
        assert!(!yaml.contains("hunter2"));
        assert!(yaml.contains(REDACTED));
    }

    #[test]
    fn errors_do_not_quote_the_value() {
        let err = serde_yaml::from_str::<Secret<String>>("[1234567890]").unwrap_err();
        assert!(!err.to_string().contains("1234567890"), "{err}");
    }
}
