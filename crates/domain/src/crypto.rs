//! Encryption at rest (SPEC §3.8): audio, transcripts and small secrets such
//! as OIDC refresh tokens are sealed with XChaCha20-Poly1305, an authenticated
//! cipher, under keys derived from the instance's secret key with HKDF-SHA256.
//! Each purpose gets its own key (`scribe blob v1`, `scribe value v1`), so a
//! ciphertext of one kind can never be passed off as the other.
//!
//! # Blob chunks
//! Blobs are cut into [`CHUNK_SIZE`] plaintext chunks (the last one shorter,
//! possibly empty), each sealed on its own so that uploads and downloads
//! stream. A sealed chunk is
//!
//! ```text
//! offset  size  field
//!      0     1  format version (1)
//!      1     1  flags: bit 0 = final chunk of the blob
//!      2     4  key id: the first 4 bytes of HKDF(secret, "scribe key id v1")
//!      6    24  nonce, random per chunk
//!     30     n  ciphertext of the n plaintext bytes
//!   30+n    16  Poly1305 tag
//! ```
//!
//! The associated data is `"scribe blob v1" || version || flags || key id ||
//! chunk index (u64, big-endian) || blob id`, so a chunk only decrypts as the
//! chunk at its own index of its own blob, with its own final flag. A reader
//! passes the index it *expects*, which detects reordering, dropped middle
//! chunks and chunks moved in from another blob; a blob whose last chunk
//! isn't flagged final was truncated; flipping the flag breaks the tag.
//!
//! # Small values
//! [`encrypt_value`] seals a byte string as `version (1) || key id (4) ||
//! nonce (24) || ciphertext || tag (16)` with associated data `"scribe value
//! v1" || version || key id || purpose`: a value encrypted for one purpose
//! (say `oidc refresh token`) doesn't decrypt for another.
//!
//! The key id lets a reader tell "encrypted under another secret key" (e.g.
//! after a key change without `scribe rotate-secret-key`) from "altered".

use std::fmt;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

use crate::error::DomainError;
use crate::secret_key::SecretKey;

/// Plaintext bytes per blob chunk: large enough that the per-chunk overhead
/// ([`CHUNK_OVERHEAD`]) and per-chunk storage round trips stay small, small
/// enough that a stream holds little in memory.
pub const CHUNK_SIZE: usize = 64 * 1024;

const FORMAT_VERSION: u8 = 1;
const FLAG_FINAL: u8 = 0x01;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Bytes in front of a sealed chunk's ciphertext.
pub const CHUNK_HEADER_LEN: usize = 2 + KEY_ID_LEN + NONCE_LEN;
/// Bytes a sealed chunk has beyond its plaintext (header and tag).
pub const CHUNK_OVERHEAD: usize = CHUNK_HEADER_LEN + TAG_LEN;
/// Bytes in front of a sealed value's ciphertext.
const VALUE_HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// HKDF `info` labels: one key per purpose, and the key id.
const BLOB_KEY_INFO: &[u8] = b"scribe blob v1";
const VALUE_KEY_INFO: &[u8] = b"scribe value v1";
const KEY_ID_INFO: &[u8] = b"scribe key id v1";

/// Why a ciphertext was refused. None of these should ever reach a client:
/// the data is ours, so each means corruption, tampering or a changed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the ciphertext is malformed or of an unknown format")]
    Malformed,
    #[error("the data was encrypted with a different secret key")]
    WrongKey,
    #[error("the data failed authentication: it was altered, moved or truncated")]
    Tampered,
    #[error("the data is too large to encrypt")]
    TooLarge,
}

impl From<CryptoError> for DomainError {
    fn from(err: CryptoError) -> Self {
        DomainError::internal("encryption at rest", err)
    }
}

fn derive(secret: &SecretKey, info: &[u8]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    // The secret is already uniformly random, so no salt is needed (RFC 5869 §3.1).
    Hkdf::<Sha256>::new(None, secret.as_bytes())
        .expand(info, &mut okm)
        .unwrap_or_else(|_| unreachable!("HKDF-SHA256 can always expand to 32 bytes"));
    okm
}

fn key_id(secret: &SecretKey) -> [u8; KEY_ID_LEN] {
    let okm = derive(secret, KEY_ID_INFO);
    [okm[0], okm[1], okm[2], okm[3]]
}

fn cipher(secret: &SecretKey, info: &[u8]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&derive(secret, info).into())
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// `header || seal(plaintext) || tag`; the nonce is the header's last 24 bytes.
fn seal(
    aead: &XChaCha20Poly1305,
    header: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(header.len() + plaintext.len() + TAG_LEN);
    out.extend_from_slice(header);
    out.extend_from_slice(plaintext);
    let nonce = XNonce::clone_from_slice(&header[header.len() - NONCE_LEN..]);
    let tag = aead
        .encrypt_in_place_detached(&nonce, aad, &mut out[header.len()..])
        .map_err(|_| CryptoError::TooLarge)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The inverse of [`seal`], in place: the returned vector is `sealed`'s buffer.
fn open(
    aead: &XChaCha20Poly1305,
    header_len: usize,
    aad: &[u8],
    mut sealed: Vec<u8>,
) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < header_len + TAG_LEN {
        return Err(CryptoError::Malformed);
    }
    let nonce = XNonce::clone_from_slice(&sealed[header_len - NONCE_LEN..header_len]);
    let tag_at = sealed.len() - TAG_LEN;
    let tag = Tag::clone_from_slice(&sealed[tag_at..]);
    aead.decrypt_in_place_detached(&nonce, aad, &mut sealed[header_len..tag_at], &tag)
        .map_err(|_| CryptoError::Tampered)?;
    sealed.truncate(tag_at);
    sealed.drain(..header_len);
    Ok(sealed)
}

fn blob_aad(header: &[u8], index: u64, blob_id: &str) -> Vec<u8> {
    let fixed = &header[..2 + KEY_ID_LEN];
    let mut aad = Vec::with_capacity(BLOB_KEY_INFO.len() + fixed.len() + 8 + blob_id.len());
    aad.extend_from_slice(BLOB_KEY_INFO);
    aad.extend_from_slice(fixed);
    aad.extend_from_slice(&index.to_be_bytes());
    // Last, so its variable length can't blur the fields before it.
    aad.extend_from_slice(blob_id.as_bytes());
    aad
}

/// A decrypted blob chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainChunk {
    pub data: Vec<u8>,
    /// Whether the writer marked this chunk as the blob's last one.
    pub is_final: bool,
}

/// Seals and opens blob chunks under the blob key derived from a secret key.
/// Cheap to share behind an `Arc`; holds no per-blob state.
#[derive(Clone)]
pub struct BlobCipher {
    aead: XChaCha20Poly1305,
    key_id: [u8; KEY_ID_LEN],
}

impl fmt::Debug for BlobCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobCipher")
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

impl BlobCipher {
    pub fn new(secret: &SecretKey) -> Self {
        BlobCipher {
            aead: cipher(secret, BLOB_KEY_INFO),
            key_id: key_id(secret),
        }
    }

    /// Seals chunk `index` of blob `blob_id` ([`CHUNK_SIZE`] bytes, except
    /// the final chunk, which may be shorter or empty).
    pub fn encrypt_chunk(
        &self,
        blob_id: &str,
        index: u64,
        is_final: bool,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut header = [0u8; CHUNK_HEADER_LEN];
        header[0] = FORMAT_VERSION;
        header[1] = if is_final { FLAG_FINAL } else { 0 };
        header[2..2 + KEY_ID_LEN].copy_from_slice(&self.key_id);
        header[2 + KEY_ID_LEN..].copy_from_slice(&random_nonce());
        let aad = blob_aad(&header, index, blob_id);
        seal(&self.aead, &header, &aad, plaintext)
    }

    /// Opens what [`encrypt_chunk`](Self::encrypt_chunk) sealed, given the
    /// index the reader expects at this position of blob `blob_id`.
    pub fn decrypt_chunk(
        &self,
        blob_id: &str,
        index: u64,
        sealed: Vec<u8>,
    ) -> Result<PlainChunk, CryptoError> {
        if sealed.len() < CHUNK_OVERHEAD
            || sealed[0] != FORMAT_VERSION
            || sealed[1] & !FLAG_FINAL != 0
        {
            return Err(CryptoError::Malformed);
        }
        if sealed[2..2 + KEY_ID_LEN] != self.key_id {
            return Err(CryptoError::WrongKey);
        }
        let is_final = sealed[1] & FLAG_FINAL != 0;
        let aad = blob_aad(&sealed[..CHUNK_HEADER_LEN], index, blob_id);
        let data = open(&self.aead, CHUNK_HEADER_LEN, &aad, sealed)?;
        Ok(PlainChunk { data, is_final })
    }
}

fn value_aad(header: &[u8], purpose: &str) -> Vec<u8> {
    let fixed = &header[..1 + KEY_ID_LEN];
    let mut aad = Vec::with_capacity(VALUE_KEY_INFO.len() + fixed.len() + purpose.len());
    aad.extend_from_slice(VALUE_KEY_INFO);
    aad.extend_from_slice(fixed);
    aad.extend_from_slice(purpose.as_bytes());
    aad
}

/// Seals a small value (a refresh token, say) for `purpose`, a fixed label
/// naming what it is and, where useful, whose (`"oidc refresh token:user 42"`),
/// so a ciphertext copied to another purpose or row doesn't decrypt there.
/// The result is [`VALUE_HEADER_LEN`] + 16 bytes longer than `plaintext`.
pub fn encrypt_value(
    secret: &SecretKey,
    purpose: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut header = [0u8; VALUE_HEADER_LEN];
    header[0] = FORMAT_VERSION;
    header[1..1 + KEY_ID_LEN].copy_from_slice(&key_id(secret));
    header[1 + KEY_ID_LEN..].copy_from_slice(&random_nonce());
    let aad = value_aad(&header, purpose);
    seal(&cipher(secret, VALUE_KEY_INFO), &header, &aad, plaintext)
}

/// Opens what [`encrypt_value`] sealed for the same `purpose`.
pub fn decrypt_value(
    secret: &SecretKey,
    purpose: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < VALUE_HEADER_LEN + TAG_LEN || sealed[0] != FORMAT_VERSION {
        return Err(CryptoError::Malformed);
    }
    if sealed[1..1 + KEY_ID_LEN] != key_id(secret) {
        return Err(CryptoError::WrongKey);
    }
    let aad = value_aad(&sealed[..VALUE_HEADER_LEN], purpose);
    open(
        &cipher(secret, VALUE_KEY_INFO),
        VALUE_HEADER_LEN,
        &aad,
        sealed.to_vec(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_hex(&hex::encode([byte; 32])).unwrap()
    }

    #[test]
    fn chunks_round_trip_with_their_final_flag() {
        let cipher = BlobCipher::new(&key(1));
        for (len, is_final) in [(0, true), (1, false), (CHUNK_SIZE, true)] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = cipher
                .encrypt_chunk("blob", 7, is_final, &plaintext)
                .unwrap();
            assert_eq!(sealed.len(), len + CHUNK_OVERHEAD);
            let opened = cipher.decrypt_chunk("blob", 7, sealed).unwrap();
            assert_eq!(opened.data, plaintext);
            assert_eq!(opened.is_final, is_final);
        }
    }

    #[test]
    fn the_same_plaintext_never_gives_the_same_ciphertext() {
        let cipher = BlobCipher::new(&key(1));
        let a = cipher.encrypt_chunk("blob", 0, true, b"same").unwrap();
        let b = cipher.encrypt_chunk("blob", 0, true, b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let cipher = BlobCipher::new(&key(1));
        let sealed = cipher
            .encrypt_chunk("blob", 3, false, b"hello world")
            .unwrap();
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            let err = cipher.decrypt_chunk("blob", 3, bad).unwrap_err();
            // The version and flag bytes fail the format check or the tag, the
            // key id the key check; everything else the tag.
            assert!(
                matches!(
                    err,
                    CryptoError::Tampered | CryptoError::Malformed | CryptoError::WrongKey
                ),
                "byte {at}: {err:?}"
            );
            if at >= 2 + KEY_ID_LEN {
                assert_eq!(err, CryptoError::Tampered, "byte {at}");
            }
        }
    }

    #[test]
    fn a_chunk_only_opens_at_its_own_place() {
        let cipher = BlobCipher::new(&key(1));
        let sealed = cipher.encrypt_chunk("blob-a", 1, false, b"data").unwrap();
        let wrong_index = cipher.decrypt_chunk("blob-a", 2, sealed.clone());
        assert_eq!(wrong_index.unwrap_err(), CryptoError::Tampered);
        let wrong_blob = cipher.decrypt_chunk("blob-b", 1, sealed.clone());
        assert_eq!(wrong_blob.unwrap_err(), CryptoError::Tampered);
        // Marking a middle chunk final (to hide a truncation) breaks the tag.
        let mut made_final = sealed.clone();
        made_final[1] |= FLAG_FINAL;
        let err = cipher.decrypt_chunk("blob-a", 1, made_final).unwrap_err();
        assert_eq!(err, CryptoError::Tampered);
        assert!(cipher.decrypt_chunk("blob-a", 1, sealed).is_ok());
    }

    #[test]
    fn another_key_is_recognised() {
        let sealed = BlobCipher::new(&key(1))
            .encrypt_chunk("blob", 0, true, b"data")
            .unwrap();
        let err = BlobCipher::new(&key(2))
            .decrypt_chunk("blob", 0, sealed)
            .unwrap_err();
        assert_eq!(err, CryptoError::WrongKey);
    }

    #[test]
    fn short_or_foreign_input_is_malformed() {
        let cipher = BlobCipher::new(&key(1));
        for input in [vec![], vec![1; CHUNK_OVERHEAD - 1], vec![2; 100]] {
            let err = cipher.decrypt_chunk("blob", 0, input).unwrap_err();
            assert_eq!(err, CryptoError::Malformed);
        }
    }

    #[test]
    fn values_round_trip_for_their_purpose_only() {
        let secret = key(1);
        let sealed = encrypt_value(&secret, "oidc refresh token", b"rt-123").unwrap();
        assert_eq!(sealed.len(), 6 + VALUE_HEADER_LEN + TAG_LEN);
        assert_eq!(
            decrypt_value(&secret, "oidc refresh token", &sealed).unwrap(),
            b"rt-123"
        );
        let err = decrypt_value(&secret, "something else", &sealed).unwrap_err();
        assert_eq!(err, CryptoError::Tampered);
        let err = decrypt_value(&key(2), "oidc refresh token", &sealed).unwrap_err();
        assert_eq!(err, CryptoError::WrongKey);
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 0x80;
        let err = decrypt_value(&secret, "oidc refresh token", &bad).unwrap_err();
        assert_eq!(err, CryptoError::Tampered);
        assert_eq!(
            decrypt_value(&secret, "x", &sealed[..10]).unwrap_err(),
            CryptoError::Malformed
        );
    }

    #[test]
    fn blob_and_value_keys_are_separate() {
        // A sealed value laid out as a chunk must not open as one (and the
        // keys differ, so it would fail even with a matching layout).
        let secret = key(1);
        let blob = BlobCipher::new(&secret);
        let value = encrypt_value(&secret, "p", &[0u8; 64]).unwrap();
        let mut as_chunk = vec![FORMAT_VERSION, 0];
        as_chunk.extend_from_slice(&value[1..]);
        assert!(blob.decrypt_chunk("blob", 0, as_chunk).is_err());
    }

    /// Data at rest outlives builds: these were sealed by the first version of
    /// this module and must keep opening. Change the format only with a new
    /// version byte, never in place.
    #[test]
    fn the_format_is_stable() {
        let secret = key(0x42);
        let chunk = hex::decode(PINNED_CHUNK).unwrap();
        let opened = BlobCipher::new(&secret)
            .decrypt_chunk("0123456789abcdef0123456789abcdef", 5, chunk)
            .unwrap();
        assert_eq!(opened.data, b"scribe pinned chunk");
        assert!(opened.is_final);
        let value = hex::decode(PINNED_VALUE).unwrap();
        assert_eq!(
            decrypt_value(&secret, "pinned purpose", &value).unwrap(),
            b"scribe pinned value"
        );
    }

    const PINNED_CHUNK: &str = "010128f3d21b3f27a3d9c14d430145c19d112eba376909af9c7b7b588560fec55fdff876b01d3b85b4e02fb54f25e67f52372670a2fe949181074d620ba8ac8f16";
    const PINNED_VALUE: &str = "0128f3d21b26c5a7d3027bfe1b2acce2bd70424a581ef3ebb6c5e4e8cf5147fcc23cec4575d242232cdd1d6ab931ccaddb2b487bfc05da194870d3bff93da85e";
}
