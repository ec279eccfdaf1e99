//! Password hashing with argon2id, and Project-W's password rule.
//!
//! New hashes use OWASP's argon2id parameters (m = 19 MiB, t = 2, p = 1). Any
//! argon2 PHC string verifies whatever its parameters, so hashes brought over
//! from Project-W (m = 64 MiB, t = 3, p = 4) keep working; the caller rehashes
//! on a successful login when [`Verification::MatchNeedsRehash`] says so.
//!
//! Hashing is CPU- and memory-bound (tens of milliseconds, 19 MiB and more
//! each), so it runs on tokio's blocking pool behind a semaphore: a login storm
//! queues for permits instead of starving the async workers or allocating
//! without bound. Under load each permit reuses one 19 MiB working area (an idle
//! server gives it back): allocating it per
//! hash left glibc holding a freed area per blocking thread (measured: 574 MiB
//! RSS during a 50-client login storm) and cost a page-fault pass per hash.

use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{Output, PasswordHash, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::error::{DomainError, DomainResult, Violation};

/// OWASP's argon2id recommendation (Password Storage Cheat Sheet): 19 MiB, two
/// passes, one lane.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;
const OUTPUT_LEN: usize = 32;
const SALT_LEN: usize = 16;

/// Project-W's message for a password that breaks the rule (PasswordValidated).
pub const PASSWORD_RULE_MESSAGE: &str = "The password needs to have at least one lowercase letter, uppercase letter, number, special character and at least 12 characters in total";

/// Project-W's rule, `^(?=.*[A-Z])(?=.*[a-z])(?=.*[0-9])(?=.*[^a-zA-Z0-9]).{12,}$`
/// as Python's `re.match` applies it: `.` doesn't cross a line break and `$`
/// also matches before one final `\n`.
pub fn satisfies_rule(password: &str) -> bool {
    let (line, trailing_newline) = match password.strip_suffix('\n') {
        Some(line) => (line, true),
        None => (password, false),
    };
    if line.contains('\n') || line.chars().count() < 12 {
        return false;
    }
    line.chars().any(|c| c.is_ascii_uppercase())
        && line.chars().any(|c| c.is_ascii_lowercase())
        && line.chars().any(|c| c.is_ascii_digit())
        // The special-character lookahead may match the final line break itself.
        && (trailing_newline || line.chars().any(|c| !c.is_ascii_alphanumeric()))
}

/// The 422 item for a password that breaks the rule, at `loc` (e.g.
/// `["body", "password"]`), worded as pydantic reports Project-W's validator.
pub fn rule_violation(field: &str) -> Violation {
    Violation::new(
        ["body".into(), field.into()],
        format!("Value error, {PASSWORD_RULE_MESSAGE}"),
        "value_error",
    )
}

/// Checks the rule, answering with the 422 for `field`.
pub fn check_rule(password: &str, field: &str) -> DomainResult<()> {
    if satisfies_rule(password) {
        Ok(())
    } else {
        Err(DomainError::Validation(vec![rule_violation(field)]))
    }
}

/// The outcome of [`PasswordHasher::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Wrong password (or a stored hash that can't be read).
    Mismatch,
    /// Right password; the hash uses the current parameters.
    Match,
    /// Right password; the hash should be replaced by [`PasswordHasher::hash`].
    MatchNeedsRehash,
}

impl Verification {
    pub fn is_match(self) -> bool {
        self != Verification::Mismatch
    }
}

/// Hashes and verifies passwords on the blocking thread pool, at most
/// `max_concurrent` at a time, so a login storm can't starve the server or
/// exhaust memory (each argon2id hash holds 19 MiB while it runs).
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when there is no user, so
    /// an unknown account costs as much time as a wrong password.
    dummy: Arc<OnceLock<String>>,
    /// Working areas for the current parameters; at most one per permit.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
}

impl PasswordHasher {
    pub fn new(max_concurrent: usize) -> Self {
        PasswordHasher {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy: Arc::new(OnceLock::new()),
            memory: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn permits(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) for `password`.
    pub async fn hash(&self, password: &str) -> DomainResult<String> {
        let password = password.to_owned();
        self.run(move |memory| hash_blocking(&password, memory))
            .await?
    }

    /// Checks `password` against a stored PHC string of any argon2 variant and
    /// parameters.
    pub async fn verify(&self, password: &str, phc: &str) -> DomainResult<Verification> {
        let password = password.to_owned();
        let phc = phc.to_owned();
        self.run(move |memory| verify_blocking(&password, &phc, memory))
            .await
    }

    /// Spends the time of a verification without a stored hash, so that "no
    /// such user" and "wrong password" can't be told apart by timing.
    pub async fn verify_dummy(&self, password: &str) -> DomainResult<()> {
        let password = password.to_owned();
        let dummy = self.dummy.clone();
        self.run(move |memory| {
            let phc = match dummy.get() {
                Some(phc) => phc.clone(),
                None => {
                    let mut random = [0u8; 24];
                    rand::rng().fill_bytes(&mut random);
                    let phc = hash_blocking(&hex::encode(random), memory)?;
                    dummy.get_or_init(|| phc).clone()
                }
            };
            let _ = verify_blocking(&password, &phc, memory);
            Ok(())
        })
        .await?
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> DomainResult<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|err| DomainError::internal("password hasher", err))?;
        let mut memory = self
            .memory
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_else(|| vec![Block::default(); MEMORY_KIB as usize]);
        let (result, memory) = tokio::task::spawn_blocking(move || {
            let result = work(&mut memory);
            (result, memory)
        })
        .await
        .map_err(|err| DomainError::internal("password hashing task", err))?;
        // Keep the working area only while hashes are queueing up (a login
        // storm); an idle server gives its 19 MiB back.
        if self.permits.available_permits() == 0 {
            if let Ok(mut pool) = self.memory.lock() {
                pool.push(memory);
            }
        }
        Ok(result)
    }
}

fn current_params() -> DomainResult<Params> {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_LEN))
        .map_err(|err| DomainError::internal("argon2 parameters", err))
}

fn hash_blocking(password: &str, memory: &mut [Block]) -> DomainResult<String> {
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, current_params()?);
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let mut output = [0u8; OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut output, memory)
        .map_err(|err| DomainError::internal("argon2 hash", err))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|err| DomainError::internal("argon2 salt", err))?;
    let output = Output::new(&output).map_err(|err| DomainError::internal("argon2 hash", err))?;
    Ok(format!(
        "$argon2id$v=19$m={MEMORY_KIB},t={ITERATIONS},p={PARALLELISM}${}${output}",
        salt.as_str()
    ))
}

fn verify_blocking(password: &str, phc: &str, memory: &mut [Block]) -> Verification {
    let hash = match PasswordHash::new(phc) {
        Ok(hash) => hash,
        Err(err) => {
            tracing::error!(error = %err, "a stored password hash can't be parsed; the login fails");
            return Verification::Mismatch;
        }
    };
    if !needs_rehash(&hash) {
        return verify_current(password, &hash, memory);
    }
    // Other parameters (imported hashes): `verify_password` takes algorithm,
    // version and parameters from the hash and allocates for this one call.
    if Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_err()
    {
        return Verification::Mismatch;
    }
    if needs_rehash(&hash) {
        Verification::MatchNeedsRehash
    } else {
        Verification::Match
    }
}

/// Verifies a hash made with the current parameters in the reused working area.
fn verify_current(password: &str, hash: &PasswordHash<'_>, memory: &mut [Block]) -> Verification {
    let (Some(salt), Some(expected), Ok(params)) = (hash.salt, hash.hash, current_params()) else {
        return Verification::Mismatch;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return Verification::Mismatch;
    };
    let mut output = [0u8; OUTPUT_LEN];
    let computed = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut output, memory);
    if computed.is_ok() && bool::from(output.ct_eq(expected.as_bytes())) {
        Verification::Match
    } else {
        Verification::Mismatch
    }
}

fn needs_rehash(hash: &PasswordHash<'_>) -> bool {
    let Ok(params) = Params::try_from(hash) else {
        return true;
    };
    hash.algorithm != Algorithm::Argon2id.ident()
        || hash.version != Some(Version::V0x13.into())
        || params.m_cost() != MEMORY_KIB
        || params.t_cost() != ITERATIONS
        || params.p_cost() != PARALLELISM
        || hash.hash.map(|output| output.len()) != Some(OUTPUT_LEN)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher as _;

    #[tokio::test]
    async fn reused_memory_gives_the_same_hashes_as_the_reference_implementation() {
        let hasher = PasswordHasher::new(1);
        // A hash by the argon2 crate's own API verifies through the reused-memory path ...
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let reference = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            current_params().unwrap(),
        )
        .hash_password(b"Reference-Pass-1", &salt)
        .unwrap()
        .to_string();
        assert_eq!(
            hasher.verify("Reference-Pass-1", &reference).await.unwrap(),
            Verification::Match
        );
        assert_eq!(
            hasher.verify("Reference-Pass-2", &reference).await.unwrap(),
            Verification::Mismatch
        );
        // ... and ours verify through the reference implementation, repeatedly
        // with one working area.
        for attempt in 0..3 {
            let ours = hasher
                .hash(&format!("Our-Password-{attempt}"))
                .await
                .unwrap();
            let parsed = PasswordHash::new(&ours).unwrap();
            assert!(Argon2::default()
                .verify_password(format!("Our-Password-{attempt}").as_bytes(), &parsed)
                .is_ok());
        }
        // With one permit, every hash ran "under load" and kept its area.
        assert_eq!(hasher.memory.lock().unwrap().len(), 1);
    }

    #[test]
    fn rule_follows_project_w() {
        for ok in [
            "Abcdefghij1!",
            "Passwort-123-ABC",
            "ÄÖÜäöü Aa1xxxx",
            "Abcdefghij12\n",
        ] {
            assert!(satisfies_rule(ok), "{ok:?}");
        }
        for bad in [
            "",
            "Abcdefgh1!",     // 10 characters
            "abcdefghij1!",   // no upper case
            "ABCDEFGHIJ1!",   // no lower case
            "Abcdefghijk!",   // no digit
            "Abcdefghijk1",   // no special character
            "äöüäöüäöü1!a",   // non-ASCII letters aren't upper case
            "Abcdef\nghij1!", // line break inside
        ] {
            assert!(!satisfies_rule(bad), "{bad:?}");
        }
        let violation = rule_violation("new_password");
        assert_eq!(violation.kind, "value_error");
        assert!(violation.msg.starts_with("Value error, The password needs"));
    }

    #[tokio::test]
    async fn hashes_with_owasp_parameters_and_verifies() {
        let hasher = PasswordHasher::new(2);
        let phc = hasher.hash("Correct-Horse-1").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(
            hasher.verify("Correct-Horse-1", &phc).await.unwrap(),
            Verification::Match
        );
        assert_eq!(
            hasher.verify("correct-Horse-1", &phc).await.unwrap(),
            Verification::Mismatch
        );
        assert_eq!(
            hasher.verify("x", "not a phc string").await.unwrap(),
            Verification::Mismatch
        );
        hasher.verify_dummy("anything").await.unwrap();
        hasher.verify_dummy("again").await.unwrap();
    }

    #[tokio::test]
    async fn foreign_parameters_verify_and_ask_for_a_rehash() {
        // Project-W's argon2-cffi defaults, reduced in memory to keep the test fast.
        let params = Params::new(4096, 3, 4, Some(32)).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"Old-Password-1", &salt)
            .unwrap()
            .to_string();
        let hasher = PasswordHasher::new(1);
        assert_eq!(
            hasher.verify("Old-Password-1", &phc).await.unwrap(),
            Verification::MatchNeedsRehash
        );
        assert_eq!(
            hasher.verify("Old-Password-2", &phc).await.unwrap(),
            Verification::Mismatch
        );
        // argon2i is read too.
        let phc = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default())
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            hasher.verify("pw", &phc).await.unwrap(),
            Verification::MatchNeedsRehash
        );
    }
}
