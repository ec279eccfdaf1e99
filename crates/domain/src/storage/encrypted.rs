//! The one place where blobs are encrypted: chunking, sealing, the size
//! limit and the `blobs` catalogue, over any [`ChunkBackend`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures_util::StreamExt;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::{BlobId, BlobInfo, BlobStore, BlobStream, BlobWriter, ChunkBackend, ChunkSink};
use crate::crypto::{BlobCipher, CHUNK_SIZE};
use crate::entities::blobs;
use crate::error::{DomainError, DomainResult};

/// How many orphans [`EncryptedStore::purge_orphans`] looks up per query.
const PURGE_BATCH: u64 = 100;

/// A [`BlobStore`] that seals every chunk with a [`BlobCipher`] before it
/// reaches the backend, and records each blob in the `blobs` table.
///
/// `scribe rotate-secret-key` can build two of these over the same backend,
/// one per key, and copy each blob from the old to the new one.
pub struct EncryptedStore {
    cleanup: Cleanup,
    cipher: Arc<BlobCipher>,
    max_bytes: u64,
}

impl EncryptedStore {
    /// `max_bytes` bounds the plaintext size of every blob written.
    pub fn new(
        db: DatabaseConnection,
        backend: Arc<dyn ChunkBackend>,
        cipher: BlobCipher,
        max_bytes: u64,
    ) -> Self {
        EncryptedStore {
            cleanup: Cleanup { db, backend },
            cipher: Arc::new(cipher),
            max_bytes,
        }
    }

    /// The backend holding the sealed chunks.
    pub fn backend(&self) -> &Arc<dyn ChunkBackend> {
        &self.cleanup.backend
    }

    async fn complete_row(&self, id: &BlobId) -> DomainResult<Option<blobs::Model>> {
        Ok(blobs::Entity::find_by_id(id.as_str())
            .filter(blobs::Column::Complete.eq(true))
            .one(&self.cleanup.db)
            .await?)
    }
}

/// What it takes to remove a blob; also owned by writers, whose `Drop` may
/// have to clean up in the background.
#[derive(Clone)]
struct Cleanup {
    db: DatabaseConnection,
    backend: Arc<dyn ChunkBackend>,
}

impl Cleanup {
    /// Data first, then the catalogue row: if removing the data fails, the
    /// row (incomplete by now) lets `purge_orphans` find it again.
    async fn discard(&self, id: &BlobId) -> DomainResult<()> {
        self.backend.delete(id).await?;
        blobs::Entity::delete_by_id(id.as_str())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn discard_logged(&self, id: &BlobId) {
        if let Err(err) = self.discard(id).await {
            tracing::warn!(
                blob = %id,
                backend = self.backend.name(),
                error = %err,
                "could not remove an unfinished blob; purge_orphans will retry"
            );
        }
    }
}

fn corrupt(id: &BlobId, detail: impl std::fmt::Display) -> DomainError {
    DomainError::Internal(format!("stored blob {id} is corrupt: {detail}"))
}

fn ended() -> DomainError {
    DomainError::Internal("this blob write has already ended".to_owned())
}

#[async_trait]
impl BlobStore for EncryptedStore {
    async fn create(&self) -> DomainResult<Box<dyn BlobWriter>> {
        let id = BlobId::generate();
        // The row comes first, so that whatever the backend stores can be
        // found (and purged) from the catalogue.
        blobs::Entity::insert(blobs::ActiveModel {
            id: Set(id.to_string()),
            size: Set(0),
            complete: Set(false),
            created_at: Set(Utc::now()),
        })
        .exec_without_returning(&self.cleanup.db)
        .await?;
        let sink = match self.cleanup.backend.begin(&id).await {
            Ok(sink) => sink,
            Err(err) => {
                self.cleanup.discard_logged(&id).await;
                return Err(err);
            }
        };
        Ok(Box::new(EncryptedWriter {
            id,
            cleanup: self.cleanup.clone(),
            cipher: Arc::clone(&self.cipher),
            sink: Some(sink),
            buffer: Vec::with_capacity(CHUNK_SIZE),
            next_index: 0,
            size: 0,
            max_bytes: self.max_bytes,
            settled: false,
        }))
    }

    async fn read(&self, id: &BlobId) -> DomainResult<BlobStream> {
        let row = self
            .complete_row(id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("blob {id} not found")))?;
        let chunks = self.cleanup.backend.read(id).await?;
        let reader = Reader {
            id: id.clone(),
            cipher: Arc::clone(&self.cipher),
            chunks,
            index: 0,
            seen: 0,
            expected: u64::try_from(row.size).unwrap_or(0),
            done: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            reader,
            |mut reader| async move { reader.next_plain().await.map(|item| (item, reader)) },
        )))
    }

    async fn info(&self, id: &BlobId) -> DomainResult<Option<BlobInfo>> {
        Ok(self.complete_row(id).await?.map(|row| BlobInfo {
            id: id.clone(),
            size: u64::try_from(row.size).unwrap_or(0),
        }))
    }

    async fn delete(&self, id: &BlobId) -> DomainResult<bool> {
        // Unfinished first: readers stop seeing it, and should the rest fail
        // or the process die, purge_orphans finishes the job.
        let marked = blobs::Entity::update_many()
            .col_expr(blobs::Column::Complete, Expr::value(false))
            .filter(blobs::Column::Id.eq(id.as_str()))
            .exec(&self.cleanup.db)
            .await?;
        if marked.rows_affected == 0 {
            return Ok(false);
        }
        self.cleanup.discard(id).await?;
        Ok(true)
    }

    async fn purge_orphans(&self, older_than: Duration) -> DomainResult<u64> {
        let cutoff = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age));
        let Some(cutoff) = cutoff else {
            return Ok(0);
        };
        let mut purged = 0;
        loop {
            let ids: Vec<String> = blobs::Entity::find()
                .select_only()
                .column(blobs::Column::Id)
                .filter(blobs::Column::Complete.eq(false))
                .filter(blobs::Column::CreatedAt.lt(cutoff))
                .order_by_asc(blobs::Column::CreatedAt)
                .limit(PURGE_BATCH)
                .into_tuple()
                .all(&self.cleanup.db)
                .await?;
            let last_batch = (ids.len() as u64) < PURGE_BATCH;
            // One orphan that can't be removed (say, a file without write
            // permission) mustn't keep the others: carry on while any goes.
            let mut progress = false;
            let mut failure = None;
            for id in ids {
                let id = BlobId::parse(&id)?;
                match self.cleanup.discard(&id).await {
                    Ok(()) => {
                        tracing::info!(blob = %id, "removed an unfinished blob");
                        purged += 1;
                        progress = true;
                    }
                    Err(err) => {
                        tracing::warn!(blob = %id, error = %err, "could not remove an unfinished blob");
                        failure = Some(err);
                    }
                }
            }
            match failure {
                Some(err) if !progress => return Err(err),
                _ if last_batch => return Ok(purged),
                _ => {}
            }
        }
    }
}

/// Buffers up to one chunk of plaintext. A chunk is sealed once the next byte
/// arrives (or at `finish`), because only then is it known whether it is the
/// final one: a blob of exactly n chunks ends with a full final chunk, an
/// empty blob is one empty final chunk.
struct EncryptedWriter {
    id: BlobId,
    cleanup: Cleanup,
    cipher: Arc<BlobCipher>,
    /// `None` once the write ended, successfully or not.
    sink: Option<Box<dyn ChunkSink>>,
    buffer: Vec<u8>,
    next_index: u64,
    size: u64,
    max_bytes: u64,
    /// Finished, or cleaned up after a failure: `Drop` has nothing to do.
    settled: bool,
}

impl EncryptedWriter {
    async fn append(&mut self, mut bytes: &[u8]) -> DomainResult<()> {
        while !bytes.is_empty() {
            if self.buffer.len() == CHUNK_SIZE {
                self.seal_buffer(false).await?;
            }
            let take = (CHUNK_SIZE - self.buffer.len()).min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    async fn seal_buffer(&mut self, is_final: bool) -> DomainResult<()> {
        let sealed =
            self.cipher
                .encrypt_chunk(self.id.as_str(), self.next_index, is_final, &self.buffer)?;
        let sink = self.sink.as_mut().ok_or_else(ended)?;
        sink.put(self.next_index, sealed).await?;
        self.next_index += 1;
        self.buffer.clear();
        Ok(())
    }

    async fn complete(&mut self) -> DomainResult<BlobInfo> {
        self.seal_buffer(true).await?;
        let sink = self.sink.take().ok_or_else(ended)?;
        sink.commit().await?;
        let size = i64::try_from(self.size)
            .map_err(|_| DomainError::Internal("blob size out of range".to_owned()))?;
        let updated = blobs::Entity::update_many()
            .col_expr(blobs::Column::Complete, Expr::value(true))
            .col_expr(blobs::Column::Size, Expr::value(size))
            .filter(blobs::Column::Id.eq(self.id.as_str()))
            .filter(blobs::Column::Complete.eq(false))
            .exec(&self.cleanup.db)
            .await?;
        if updated.rows_affected != 1 {
            return Err(DomainError::Internal(format!(
                "blob {} was removed while it was being written (purge_orphans with too short \
                 an age, or a concurrent delete)",
                self.id
            )));
        }
        Ok(BlobInfo {
            id: self.id.clone(),
            size: self.size,
        })
    }

    /// Ends the write and removes what it stored.
    async fn discard(&mut self) -> DomainResult<()> {
        self.sink = None;
        self.buffer = Vec::new();
        let result = self.cleanup.discard(&self.id).await;
        // Even on failure: the row is still incomplete, purge_orphans retries.
        self.settled = true;
        result
    }

    /// [`Self::discard`] after an error, which is what the caller hears about.
    async fn fail(&mut self, err: DomainError) -> DomainError {
        if let Err(cleanup_err) = self.discard().await {
            tracing::warn!(
                blob = %self.id,
                error = %cleanup_err,
                "could not remove a failed blob write; purge_orphans will retry"
            );
        }
        err
    }
}

#[async_trait]
impl BlobWriter for EncryptedWriter {
    fn id(&self) -> &BlobId {
        &self.id
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn write(&mut self, bytes: &[u8]) -> DomainResult<()> {
        if self.sink.is_none() {
            return Err(ended());
        }
        let new_size = self.size.saturating_add(bytes.len() as u64);
        if new_size > self.max_bytes {
            let err = DomainError::TooLarge(format!(
                "The file is larger than the limit of {} bytes",
                self.max_bytes
            ));
            return Err(self.fail(err).await);
        }
        if let Err(err) = self.append(bytes).await {
            return Err(self.fail(err).await);
        }
        self.size = new_size;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> DomainResult<BlobInfo> {
        if self.sink.is_none() {
            return Err(ended());
        }
        match self.complete().await {
            Ok(info) => {
                self.settled = true;
                Ok(info)
            }
            Err(err) => Err(self.fail(err).await),
        }
    }

    async fn abort(mut self: Box<Self>) -> DomainResult<()> {
        if self.settled {
            return Ok(());
        }
        self.discard().await
    }
}

impl Drop for EncryptedWriter {
    /// A writer dropped unfinished (typically a request future cancelled when
    /// its client went away) can't await here, so its clean-up is spawned.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.sink = None;
        let cleanup = self.cleanup.clone();
        let id = self.id.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { cleanup.discard_logged(&id).await });
            }
            Err(_) => tracing::warn!(
                blob = %id,
                "an unfinished blob write was dropped outside a runtime; purge_orphans will \
                 remove it"
            ),
        }
    }
}

/// Opens sealed chunks in order, checking that the blob is whole.
struct Reader {
    id: BlobId,
    cipher: Arc<BlobCipher>,
    chunks: super::ChunkStream,
    /// The index the next chunk must have been sealed with.
    index: u64,
    /// Plaintext bytes so far, against the size the catalogue recorded.
    seen: u64,
    expected: u64,
    done: bool,
}

impl Reader {
    async fn next_plain(&mut self) -> Option<DomainResult<Vec<u8>>> {
        if self.done {
            return None;
        }
        match self.step().await {
            Ok(Some(data)) => Some(Ok(data)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(err) => {
                // After an error the stream ends: nothing more may be trusted.
                self.done = true;
                Some(Err(err))
            }
        }
    }

    async fn step(&mut self) -> DomainResult<Option<Vec<u8>>> {
        let sealed = match self.chunks.next().await {
            Some(sealed) => sealed?,
            None => return Err(corrupt(&self.id, "it ends before its final chunk")),
        };
        let chunk = self
            .cipher
            .decrypt_chunk(self.id.as_str(), self.index, sealed)
            .map_err(|err| corrupt(&self.id, format_args!("chunk {}: {err}", self.index)))?;
        self.index += 1;
        self.seen += chunk.data.len() as u64;
        if self.seen > self.expected {
            return Err(corrupt(&self.id, "it is longer than its recorded size"));
        }
        if chunk.is_final {
            if self.chunks.next().await.is_some() {
                return Err(corrupt(&self.id, "there is data after its final chunk"));
            }
            if self.seen != self.expected {
                return Err(corrupt(&self.id, "it is shorter than its recorded size"));
            }
            self.done = true;
            return Ok((!chunk.data.is_empty()).then_some(chunk.data));
        }
        if chunk.data.is_empty() {
            // The writer never seals an empty chunk before the final one.
            return Err(corrupt(&self.id, "it has an empty chunk before its end"));
        }
        Ok(Some(chunk.data))
    }
}
