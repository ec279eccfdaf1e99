//! Sealed chunks as rows of `blob_chunks` (blob_id, chunk_index, data): the
//! embedded default, needing nothing besides the database (SPEC §2 "State").

use std::collections::VecDeque;

use async_trait::async_trait;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{BlobId, ChunkBackend, ChunkSink, ChunkStream};
use crate::entities::blob_chunks;
use crate::error::DomainResult;

/// Chunks inserted per statement: fewer round trips, about 512 KiB held.
const WRITE_BATCH: usize = 8;
/// Chunks fetched per query while reading: about 512 KiB held.
const READ_BATCH: u64 = 8;

/// Keeps sealed chunks in the database. Chunks are inserted in small
/// batches, each committed on its own, so a long upload never holds a
/// transaction (SQLite would block every other writer meanwhile).
#[derive(Clone)]
pub struct DatabaseBackend {
    db: DatabaseConnection,
}

impl DatabaseBackend {
    pub fn new(db: DatabaseConnection) -> Self {
        DatabaseBackend { db }
    }
}

fn to_i64(index: u64) -> i64 {
    // Chunk indexes stay far below 2^63 (that would be 2^79 bytes).
    i64::try_from(index).unwrap_or(i64::MAX)
}

#[async_trait]
impl ChunkBackend for DatabaseBackend {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn begin(&self, id: &BlobId) -> DomainResult<Box<dyn ChunkSink>> {
        Ok(Box::new(DatabaseSink {
            db: self.db.clone(),
            id: id.clone(),
            pending: Vec::with_capacity(WRITE_BATCH),
        }))
    }

    async fn read(&self, id: &BlobId) -> DomainResult<ChunkStream> {
        let cursor = Cursor {
            db: self.db.clone(),
            id: id.clone(),
            from: 0,
            batch: VecDeque::new(),
            exhausted: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            cursor,
            |mut cursor| async move { cursor.next_chunk().await.map(|item| (item, cursor)) },
        )))
    }

    async fn delete(&self, id: &BlobId) -> DomainResult<()> {
        blob_chunks::Entity::delete_many()
            .filter(blob_chunks::Column::BlobId.eq(id.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

struct DatabaseSink {
    db: DatabaseConnection,
    id: BlobId,
    pending: Vec<blob_chunks::ActiveModel>,
}

impl DatabaseSink {
    async fn flush(&mut self) -> DomainResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        blob_chunks::Entity::insert_many(std::mem::take(&mut self.pending))
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl ChunkSink for DatabaseSink {
    async fn put(&mut self, index: u64, chunk: Vec<u8>) -> DomainResult<()> {
        self.pending.push(blob_chunks::ActiveModel {
            blob_id: sea_orm::Set(self.id.to_string()),
            chunk_index: sea_orm::Set(to_i64(index)),
            data: sea_orm::Set(chunk),
        });
        if self.pending.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> DomainResult<()> {
        self.flush().await
    }
}

/// Pages through a blob's rows by chunk index, a few at a time. Each page is
/// its own query, so a slow download holds no transaction either.
struct Cursor {
    db: DatabaseConnection,
    id: BlobId,
    from: i64,
    batch: VecDeque<Vec<u8>>,
    exhausted: bool,
}

impl Cursor {
    async fn next_chunk(&mut self) -> Option<DomainResult<Vec<u8>>> {
        if self.batch.is_empty() && !self.exhausted {
            if let Err(err) = self.fetch().await {
                self.exhausted = true;
                return Some(Err(err));
            }
        }
        self.batch.pop_front().map(Ok)
    }

    async fn fetch(&mut self) -> DomainResult<()> {
        let rows: Vec<(i64, Vec<u8>)> = blob_chunks::Entity::find()
            .select_only()
            .column(blob_chunks::Column::ChunkIndex)
            .column(blob_chunks::Column::Data)
            .filter(blob_chunks::Column::BlobId.eq(self.id.as_str()))
            .filter(blob_chunks::Column::ChunkIndex.gte(self.from))
            .order_by_asc(blob_chunks::Column::ChunkIndex)
            .limit(READ_BATCH)
            .into_tuple()
            .all(&self.db)
            .await?;
        self.exhausted = (rows.len() as u64) < READ_BATCH;
        if let Some((last, _)) = rows.last() {
            self.from = last.saturating_add(1);
        }
        self.batch.extend(rows.into_iter().map(|(_, data)| data));
        Ok(())
    }
}
