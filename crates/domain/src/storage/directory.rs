//! Sealed chunks in files, one per blob: `<id>.blob`, written as `<id>.part`
//! and renamed once complete, so a reader never sees a half-written file.
//!
//! File format: the magic `SCRBLOB1`, then one record per chunk, in index
//! order: the chunk's length (u32, big-endian) and its bytes. Records carry
//! no index: position is the index, and the cipher checks it.
//! An S3 backend can store the same bytes as one object per blob.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::fs::{self, File};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use super::{BlobId, ChunkBackend, ChunkSink, ChunkStream};
use crate::crypto::{CHUNK_OVERHEAD, CHUNK_SIZE};
use crate::error::{DomainError, DomainResult};

const MAGIC: &[u8; 8] = b"SCRBLOB1";
const FINAL_SUFFIX: &str = "blob";
const PART_SUFFIX: &str = "part";
/// Larger records than any writer produces are corruption; refusing them
/// keeps a damaged length field from allocating gigabytes.
const MAX_RECORD: usize = 16 * 1024 * 1024;

/// Keeps sealed chunks in files under one directory.
#[derive(Debug, Clone)]
pub struct DirectoryBackend {
    dir: PathBuf,
}

impl DirectoryBackend {
    /// Uses `dir`, creating it (and its parents) if missing.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(DirectoryBackend { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a finished blob's file is.
    pub fn blob_path(&self, id: &BlobId) -> PathBuf {
        self.dir.join(format!("{id}.{FINAL_SUFFIX}"))
    }

    fn part_path(&self, id: &BlobId) -> PathBuf {
        self.dir.join(format!("{id}.{PART_SUFFIX}"))
    }
}

fn io_error(what: &str, path: &Path, err: io::Error) -> DomainError {
    DomainError::internal(&format!("{what} {}", path.display()), err)
}

async fn remove_if_present(path: &Path) -> DomainResult<()> {
    match fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_error("could not remove", path, err)),
    }
}

#[async_trait]
impl ChunkBackend for DirectoryBackend {
    fn name(&self) -> &'static str {
        "directory"
    }

    async fn begin(&self, id: &BlobId) -> DomainResult<Box<dyn ChunkSink>> {
        let part = self.part_path(id);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .await
            .map_err(|err| io_error("could not create", &part, err))?;
        // From here on, dropping the sink removes the part file.
        let mut sink = DirectorySink {
            file: Some(file),
            part,
            blob: self.blob_path(id),
            dir: self.dir.clone(),
            next_index: 0,
            record: Vec::with_capacity(4 + CHUNK_SIZE + CHUNK_OVERHEAD),
            committed: false,
        };
        sink.write(MAGIC).await?;
        Ok(Box::new(sink))
    }

    async fn read(&self, id: &BlobId) -> DomainResult<ChunkStream> {
        let path = self.blob_path(id);
        let file = File::open(&path)
            .await
            .map_err(|err| io_error("could not open", &path, err))?;
        let mut reader = BufReader::with_capacity(4 + CHUNK_SIZE + CHUNK_OVERHEAD, file);
        let mut magic = [0u8; MAGIC.len()];
        reader
            .read_exact(&mut magic)
            .await
            .map_err(|err| io_error("could not read", &path, err))?;
        if &magic != MAGIC {
            return Err(DomainError::Internal(format!(
                "{} is not a Scribe blob file",
                path.display()
            )));
        }
        let records = Records {
            reader,
            path,
            done: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            records,
            |mut records| async move { records.next_record().await.map(|item| (item, records)) },
        )))
    }

    async fn delete(&self, id: &BlobId) -> DomainResult<()> {
        remove_if_present(&self.blob_path(id)).await?;
        remove_if_present(&self.part_path(id)).await
    }
}

struct DirectorySink {
    /// `None` once committing.
    file: Option<File>,
    part: PathBuf,
    blob: PathBuf,
    dir: PathBuf,
    next_index: u64,
    /// Reused for each length-prefixed record, so each chunk is one write.
    record: Vec<u8>,
    committed: bool,
}

impl DirectorySink {
    async fn write(&mut self, bytes: &[u8]) -> DomainResult<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| DomainError::Internal("blob file already closed".to_owned()))?;
        file.write_all(bytes)
            .await
            .map_err(|err| io_error("could not write", &self.part, err))
    }
}

#[async_trait]
impl ChunkSink for DirectorySink {
    async fn put(&mut self, index: u64, chunk: Vec<u8>) -> DomainResult<()> {
        if index != self.next_index || chunk.len() > MAX_RECORD {
            return Err(DomainError::Internal(format!(
                "chunk {index} of {} out of order or too large",
                self.part.display()
            )));
        }
        let mut record = std::mem::take(&mut self.record);
        record.clear();
        // MAX_RECORD fits in a u32.
        record.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        record.extend_from_slice(&chunk);
        let written = self.write(&record).await;
        self.record = record;
        written?;
        self.next_index += 1;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> DomainResult<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| DomainError::Internal("blob file already closed".to_owned()))?;
        // Durable before it becomes visible: a crash right after the rename
        // must not leave a complete-looking file with missing data.
        let synced = async {
            file.flush().await?;
            file.sync_all().await
        };
        synced
            .await
            .map_err(|err| io_error("could not write", &self.part, err))?;
        drop(file);
        fs::rename(&self.part, &self.blob)
            .await
            .map_err(|err| io_error("could not rename", &self.part, err))?;
        self.committed = true;
        sync_directory(&self.dir).await;
        Ok(())
    }
}

impl Drop for DirectorySink {
    /// Not committed: the part file is garbage. Unlinking is quick enough to
    /// do right here, and covers a writer dropped without clean-up too.
    fn drop(&mut self) {
        if !self.committed {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

/// Makes a rename durable (POSIX: the directory entry lives in the
/// directory). Best effort; not every platform can open a directory.
async fn sync_directory(dir: &Path) {
    #[cfg(unix)]
    if let Ok(handle) = File::open(dir).await {
        if let Err(err) = handle.sync_all().await {
            tracing::debug!(dir = %dir.display(), error = %err, "could not sync the blob directory");
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

struct Records {
    reader: BufReader<File>,
    path: PathBuf,
    done: bool,
}

impl Records {
    async fn next_record(&mut self) -> Option<DomainResult<Vec<u8>>> {
        if self.done {
            return None;
        }
        let result = self.read_record().await;
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result.transpose()
    }

    async fn read_record(&mut self) -> DomainResult<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        let mut filled = 0;
        while filled < len.len() {
            let n = self
                .reader
                .read(&mut len[filled..])
                .await
                .map_err(|err| io_error("could not read", &self.path, err))?;
            if n == 0 {
                if filled == 0 {
                    return Ok(None);
                }
                return Err(self.damaged());
            }
            filled += n;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_RECORD {
            return Err(self.damaged());
        }
        let mut chunk = vec![0u8; len];
        match self.reader.read_exact(&mut chunk).await {
            Ok(_) => Ok(Some(chunk)),
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Err(self.damaged()),
            Err(err) => Err(io_error("could not read", &self.path, err)),
        }
    }

    fn damaged(&self) -> DomainError {
        DomainError::Internal(format!(
            "{} is damaged: a record is cut off or has an impossible length",
            self.path.display()
        ))
    }
}
