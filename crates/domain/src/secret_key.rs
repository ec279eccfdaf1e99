//! The instance's 256-bit secret key: signs links in mails and (through derived
//! keys) encrypts data at rest. Configured as 64 hex characters, as in Project-W;
//! without one, a key is generated once and kept in the data directory.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;

const KEY_FILE_NAME: &str = "secret_key";

#[derive(Clone)]
pub struct SecretKey(Arc<[u8; 32]>);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// Where the key in use came from, so the server can warn about generated keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    Configured,
    GeneratedNow(PathBuf),
    LoadedFromDataDir(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("the secret key must be 64 hexadecimal characters (256 bits)")]
    Malformed,
    #[error("could not read or write the secret key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SecretKey {
    pub fn from_hex(hex_key: &str) -> Result<Self, SecretKeyError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| SecretKeyError::Malformed)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretKeyError::Malformed)?;
        Ok(SecretKey(Arc::new(key)))
    }

    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        SecretKey(Arc::new(key))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The configured key if there is one; else the key kept in `data_dir`,
    /// generated (file mode 0600) on first use.
    pub fn load_or_generate(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> Result<(Self, KeyOrigin), SecretKeyError> {
        if let Some(hex_key) = configured {
            return Ok((Self::from_hex(hex_key)?, KeyOrigin::Configured));
        }
        let path = data_dir.join(KEY_FILE_NAME);
        let io_err = |source| SecretKeyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(content) => Ok((
                Self::from_hex(&content)?,
                KeyOrigin::LoadedFromDataDir(path.clone()),
            )),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(io_err)?;
                let key = Self::generate();
                let mut file = create_private_file(&path).map_err(io_err)?;
                writeln!(file, "{}", hex::encode(key.as_bytes())).map_err(io_err)?;
                file.sync_all().map_err(io_err)?;
                Ok((key, KeyOrigin::GeneratedNow(path.clone())))
            }
            Err(err) => Err(io_err(err)),
        }
    }
}

/// `create_new` so two processes starting together can't overwrite each other's key.
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, origin) = SecretKey::load_or_generate(None, dir.path()).unwrap();
        assert!(matches!(origin, KeyOrigin::GeneratedNow(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, origin) = SecretKey::load_or_generate(None, dir.path()).unwrap();
        assert!(matches!(origin, KeyOrigin::LoadedFromDataDir(_)));
        assert_eq!(first.as_bytes(), second.as_bytes());
    }

    #[test]
    fn configured_key_wins_and_must_be_256_bits() {
        let dir = tempfile::tempdir().unwrap();
        let hex_key = "ab".repeat(32);
        let (key, origin) = SecretKey::load_or_generate(Some(&hex_key), dir.path()).unwrap();
        assert_eq!(origin, KeyOrigin::Configured);
        assert_eq!(key.as_bytes(), &[0xab; 32]);
        assert!(SecretKey::from_hex("abcd").is_err());
        assert!(format!("{key:?}").contains("redacted"));
    }
}
