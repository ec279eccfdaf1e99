//! Blob storage: uploaded audio and transcripts, streamed in and out in
//! chunks and encrypted at rest (SPEC §3.8, issue 5 item 2).
//!
//! Two layers:
//! - [`BlobStore`] is what services use: write a new blob piece by piece
//!   ([`BlobWriter`]), read it back as a stream of plaintext chunks, delete it.
//!   Its one implementation, [`EncryptedStore`], is the only place that
//!   encrypts ([`crate::crypto::BlobCipher`]), enforces the size limit and
//!   keeps the `blobs` catalogue (id, size, complete, created_at) in the
//!   database, so every blob and every unfinished write can be found there.
//! - [`ChunkBackend`] holds opaque sealed chunks: [`DatabaseBackend`] (rows of
//!   `blob_chunks`, the default) or [`DirectoryBackend`] (a file per blob).
//!   A backend knows nothing about keys or plaintext, so an S3-compatible one
//!   only has to put, list and delete objects, and callers don't change.
//!
//! Neither layer ever holds a whole blob in memory: a writer buffers one
//! chunk (the database backend batches a few before an insert), a reader
//! fetches a few chunks at a time.
//!
//! # Cleaning up
//! A write that fails (over the size limit, or a storage error) removes what
//! it had written before it returns the error. A caller that gives up itself
//! (the client went away) calls [`BlobWriter::abort`]. Dropping an unfinished
//! writer (a cancelled request future) starts the same clean-up on the tokio
//! runtime in the background. Only a crash leaves an unfinished blob behind;
//! its catalogue row says `complete = false`, and
//! [`BlobStore::purge_orphans`], run periodically with a generous age (longer
//! than any upload takes), removes it.

mod database;
mod directory;
mod encrypted;

use std::fmt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;
use sea_orm::DatabaseConnection;

pub use database::DatabaseBackend;
pub use directory::DirectoryBackend;
pub use encrypted::EncryptedStore;

use crate::config::{Config, StorageBackend};
use crate::crypto::BlobCipher;
use crate::error::{DomainError, DomainResult};
use crate::secret_key::SecretKey;

/// The longest blob id accepted (ids are also file and object names).
const MAX_ID_LEN: usize = 64;

/// A blob's id: 32 lowercase hex characters from 128 random bits when made
/// by [`BlobId::generate`]. Safe as a file or object name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(String);

impl BlobId {
    pub fn generate() -> Self {
        BlobId(hex::encode(rand::random::<[u8; 16]>()))
    }

    /// An id read back from the database: 1 to 64 ASCII letters, digits, `-`
    /// or `_`, so it can never name a path outside the blob directory.
    pub fn parse(text: &str) -> DomainResult<Self> {
        let valid = !text.is_empty()
            && text.len() <= MAX_ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(BlobId(text.to_owned()))
        } else {
            Err(DomainError::Invalid(format!("invalid blob id `{text}`")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for BlobId {
    type Err = DomainError;
    fn from_str(text: &str) -> DomainResult<Self> {
        BlobId::parse(text)
    }
}

impl AsRef<str> for BlobId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A stored blob: its id and plaintext size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub id: BlobId,
    pub size: u64,
}

/// A blob's plaintext, chunk by chunk (at most [`crate::crypto::CHUNK_SIZE`]
/// bytes each, never empty). Ends with an error, never with wrong or missing
/// bytes, when the stored data was altered, truncated or reordered; a reader
/// must not treat what it got before such an error as the whole blob.
pub type BlobStream = Pin<Box<dyn Stream<Item = DomainResult<Vec<u8>>> + Send>>;

/// Decrypts the stream's first chunk before handing it on: data damaged from the
/// start (altered, reordered, another key) becomes an error the caller can still
/// answer with, rather than a response that breaks off before its first byte.
/// Later damage can only cut the stream short.
pub async fn with_first_chunk_checked(mut stream: BlobStream) -> DomainResult<BlobStream> {
    use futures_util::StreamExt;
    let first = stream.next().await.transpose()?;
    Ok(Box::pin(
        futures_util::stream::iter(first.map(Ok)).chain(stream),
    ))
}

/// Sealed chunks as a backend stored them, in index order.
pub type ChunkStream = Pin<Box<dyn Stream<Item = DomainResult<Vec<u8>>> + Send>>;

/// Where services keep blobs. Build one with [`from_config`].
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Starts a new blob under a fresh id. Nothing is readable until
    /// [`BlobWriter::finish`]; see the module docs for clean-up.
    async fn create(&self) -> DomainResult<Box<dyn BlobWriter>>;

    /// Streams a finished blob's plaintext. `NotFound` for an unknown or
    /// unfinished blob.
    async fn read(&self, id: &BlobId) -> DomainResult<BlobStream>;

    /// Size of a finished blob; `None` if there is none with this id.
    async fn info(&self, id: &BlobId) -> DomainResult<Option<BlobInfo>>;

    /// Whether a finished blob with this id exists.
    async fn exists(&self, id: &BlobId) -> DomainResult<bool> {
        Ok(self.info(id).await?.is_some())
    }

    /// Deletes a blob, finished or not; `false` if there was none. Safe to
    /// repeat, and a crash half-way leaves an orphan for [`Self::purge_orphans`].
    async fn delete(&self, id: &BlobId) -> DomainResult<bool>;

    /// Removes blobs left unfinished for longer than `older_than` (writes cut
    /// off by a crash); returns how many. `older_than` must exceed the longest
    /// upload, or a slow upload in progress is removed under its writer (which
    /// then fails instead of finishing).
    async fn purge_orphans(&self, older_than: Duration) -> DomainResult<u64>;
}

/// An unfinished blob, written in pieces of any size.
#[async_trait]
pub trait BlobWriter: Send {
    fn id(&self) -> &BlobId;

    /// Plaintext bytes accepted so far.
    fn size(&self) -> u64;

    /// Appends plaintext. Past the store's size limit this fails with
    /// [`DomainError::TooLarge`]; after any error the blob is already gone
    /// and the writer only accepts [`abort`](Self::abort).
    async fn write(&mut self, bytes: &[u8]) -> DomainResult<()>;

    /// Stores the rest and makes the blob readable.
    async fn finish(self: Box<Self>) -> DomainResult<BlobInfo>;

    /// Removes everything written so far.
    async fn abort(self: Box<Self>) -> DomainResult<()>;
}

/// Stores sealed chunks for [`EncryptedStore`]; knows nothing of keys.
#[async_trait]
pub trait ChunkBackend: Send + Sync + 'static {
    /// Short name for logs (`database`, `directory`).
    fn name(&self) -> &'static str;

    /// Opens a sink for the chunks of a new blob.
    async fn begin(&self, id: &BlobId) -> DomainResult<Box<dyn ChunkSink>>;

    /// The chunks of a committed blob, in index order, fetched lazily.
    async fn read(&self, id: &BlobId) -> DomainResult<ChunkStream>;

    /// Removes everything stored for the blob, committed or not. Removing
    /// what isn't there is fine.
    async fn delete(&self, id: &BlobId) -> DomainResult<()>;
}

/// The chunks of one blob being written. Dropping a sink without
/// [`commit`](Self::commit) may leave chunks behind; [`ChunkBackend::delete`]
/// removes them.
#[async_trait]
pub trait ChunkSink: Send {
    /// Adds chunk `index`; indexes come in order from 0.
    async fn put(&mut self, index: u64, chunk: Vec<u8>) -> DomainResult<()>;

    /// Makes every chunk durable and the blob readable through
    /// [`ChunkBackend::read`].
    async fn commit(self: Box<Self>) -> DomainResult<()>;
}

/// The blob store the configuration asks for (`storage`, `limits`), with its
/// blob key derived from `secret_key`. Creates the blob directory if needed.
pub fn from_config(
    db: DatabaseConnection,
    config: &Config,
    secret_key: &SecretKey,
) -> DomainResult<Arc<dyn BlobStore>> {
    let backend: Arc<dyn ChunkBackend> = match config.storage.backend {
        StorageBackend::Database => Arc::new(DatabaseBackend::new(db.clone())),
        StorageBackend::Directory => Arc::new(open_directory(&config.blob_directory())?),
    };
    Ok(Arc::new(EncryptedStore::new(
        db,
        backend,
        BlobCipher::new(secret_key),
        config.limits.max_upload_bytes,
    )))
}

fn open_directory(path: &Path) -> DomainResult<DirectoryBackend> {
    DirectoryBackend::new(path).map_err(|err| {
        DomainError::internal(
            &format!("could not create the blob directory {}", path.display()),
            err,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_fresh_and_valid() {
        let a = BlobId::generate();
        let b = BlobId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(BlobId::parse(a.as_str()).ok(), Some(a));
    }

    #[test]
    fn ids_that_could_escape_a_directory_are_refused() {
        for bad in ["", "../x", "a/b", "a.b", "a b", &"x".repeat(65), "ä"] {
            assert!(BlobId::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "job-42_audio", &"f".repeat(64)] {
            assert!(BlobId::parse(good).is_ok(), "{good:?}");
        }
    }
}
