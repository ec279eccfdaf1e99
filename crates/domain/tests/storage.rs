//! Blob storage against real, migrated databases (SQLite and PostgreSQL),
//! each test with both backends: the database (`blob_chunks`) and a
//! directory. Round trips of awkward sizes, every kind of tampering the
//! chunk format must catch, the size limit, and that failed, aborted, dropped
//! and crashed writes leave nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use scribe_domain::config::{parse_str, StorageBackend};
use scribe_domain::crypto::{BlobCipher, CHUNK_OVERHEAD, CHUNK_SIZE};
use scribe_domain::entities::{blob_chunks, blobs};
use scribe_domain::secret_key::SecretKey;
use scribe_domain::storage::{
    self, BlobId, BlobInfo, BlobStore, ChunkBackend, DatabaseBackend, DirectoryBackend,
    EncryptedStore,
};
use scribe_domain::DomainError;
use scribe_tests::{db_test, Backend};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, Statement};

const GIB: u64 = 1024 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Database,
    Directory,
}

const KINDS: [Kind; 2] = [Kind::Database, Kind::Directory];

/// A migrated database and a blob directory.
struct Stores {
    d: TestDomain,
    blob_dir: tempfile::TempDir,
}

impl Stores {
    async fn new(backend: Backend) -> Self {
        Stores {
            d: domain(backend).await,
            blob_dir: tempfile::tempdir().unwrap(),
        }
    }

    fn backend(&self, kind: Kind) -> Arc<dyn ChunkBackend> {
        match kind {
            Kind::Database => Arc::new(DatabaseBackend::new(self.d.db.clone())),
            Kind::Directory => Arc::new(DirectoryBackend::new(self.blob_dir.path()).unwrap()),
        }
    }

    fn store_with(&self, kind: Kind, key: &SecretKey, max_bytes: u64) -> EncryptedStore {
        EncryptedStore::new(
            self.d.db.clone(),
            self.backend(kind),
            BlobCipher::new(key),
            max_bytes,
        )
    }

    fn store(&self, kind: Kind) -> EncryptedStore {
        self.store_with(kind, &self.d.secret_key, GIB)
    }

    /// Catalogue rows, chunk rows and files: what a blob can leave behind.
    async fn leftovers(&self) -> (u64, u64, usize) {
        let rows = blobs::Entity::find().count(&self.d.db).await.unwrap();
        let chunks = blob_chunks::Entity::find().count(&self.d.db).await.unwrap();
        let files = std::fs::read_dir(self.blob_dir.path()).unwrap().count();
        (rows, chunks, files)
    }

    async fn assert_nothing_left(&self, kind: Kind) {
        assert_eq!(self.leftovers().await, (0, 0, 0), "{kind:?}");
    }

    /// Waits (up to 10 s) for a background clean-up to leave nothing.
    async fn wait_until_empty(&self, kind: Kind) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.leftovers().await != (0, 0, 0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind:?}: still left after 10 s: {:?}",
                self.leftovers().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Deterministic bytes that differ for every seed and position.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Writes `data` in pieces of the given sizes, cycling through them.
async fn write_in_pieces(store: &dyn BlobStore, data: &[u8], pieces: &[usize]) -> BlobInfo {
    let mut writer = store.create().await.unwrap();
    let mut rest = data;
    for &piece in pieces.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let take = piece.min(rest.len());
        writer.write(&rest[..take]).await.unwrap();
        rest = &rest[take..];
        assert_eq!(writer.size(), (data.len() - rest.len()) as u64);
    }
    writer.finish().await.unwrap()
}

async fn write(store: &dyn BlobStore, data: &[u8]) -> BlobInfo {
    write_in_pieces(store, data, &[10_000]).await
}

/// Reads a blob back, checking on the way that every chunk is non-empty, at
/// most CHUNK_SIZE, and equal to the original at its offset: a store may fail
/// but must never hand out wrong bytes. Returns the chunk sizes, or the error.
async fn read_checked(
    store: &dyn BlobStore,
    id: &BlobId,
    original: &[u8],
) -> Result<Vec<usize>, DomainError> {
    let mut stream = store.read(id).await?;
    let mut offset = 0;
    let mut sizes = Vec::new();
    while let Some(item) = stream.next().await {
        let chunk = item?;
        assert!(
            !chunk.is_empty() && chunk.len() <= CHUNK_SIZE,
            "{}",
            chunk.len()
        );
        assert_eq!(
            &original[offset..offset + chunk.len()],
            &chunk[..],
            "wrong bytes at offset {offset}"
        );
        offset += chunk.len();
        sizes.push(chunk.len());
    }
    assert_eq!(
        offset,
        original.len(),
        "a stream ended early without an error"
    );
    Ok(sizes)
}

/// Reads a blob that must fail; returns the error's message.
async fn read_fails(store: &dyn BlobStore, id: &BlobId, original: &[u8]) -> String {
    match read_checked(store, id, original).await {
        Ok(_) => panic!("reading blob {id} should fail"),
        Err(err) => err.to_string(),
    }
}

/// The sealed chunks of a blob as its backend holds them.
async fn raw_chunks(backend: &dyn ChunkBackend, id: &BlobId) -> Vec<Vec<u8>> {
    let mut stream = backend.read(id).await.unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.unwrap());
    }
    chunks
}

/// Replaces a blob's stored chunks behind the store's back (its catalogue
/// row stays complete), as someone with access to the storage could.
async fn replace_raw(backend: &dyn ChunkBackend, id: &BlobId, chunks: Vec<Vec<u8>>) {
    backend.delete(id).await.unwrap();
    let mut sink = backend.begin(id).await.unwrap();
    for (index, chunk) in chunks.into_iter().enumerate() {
        sink.put(index as u64, chunk).await.unwrap();
    }
    sink.commit().await.unwrap();
}

fn expect_too_large<T>(result: Result<T, DomainError>) {
    match result {
        Err(DomainError::TooLarge(detail)) => assert!(detail.contains("limit"), "{detail}"),
        Err(other) => panic!("expected TooLarge, got {other:?}"),
        Ok(_) => panic!("expected TooLarge, got Ok"),
    }
}

db_test!(
    async fn blobs_of_awkward_sizes_round_trip_in_odd_writes(backend: Backend) {
        let s = Stores::new(backend).await;
        for kind in KINDS {
            let store = s.store(kind);
            let sizes = [
                0,
                1,
                CHUNK_SIZE - 1,
                CHUNK_SIZE,
                CHUNK_SIZE + 1,
                2 * CHUNK_SIZE,
                3 * 1024 * 1024 + 12_345,
            ];
            for (seed, size) in sizes.into_iter().enumerate() {
                let data = pattern(size, seed as u64);
                let info =
                    write_in_pieces(&store, &data, &[1, 7, 4_093, 65_537, 300_001, 13]).await;
                assert_eq!(info.size, size as u64);
                assert_eq!(store.info(&info.id).await.unwrap(), Some(info.clone()));
                assert!(store.exists(&info.id).await.unwrap());
                let chunks = read_checked(&store, &info.id, &data).await.unwrap();
                // Streamed chunk by chunk, never as one piece.
                assert_eq!(chunks.len(), size.div_ceil(CHUNK_SIZE), "{kind:?} {size}");
                assert!(chunks.iter().rev().skip(1).all(|&n| n == CHUNK_SIZE));
                // A blob of exactly n chunks is n sealed chunks; an empty one, one.
                let stored = raw_chunks(store.backend().as_ref(), &info.id).await;
                assert_eq!(stored.len(), size.div_ceil(CHUNK_SIZE).max(1));
                let stored_bytes: usize = stored.iter().map(Vec::len).sum();
                assert_eq!(stored_bytes, size + stored.len() * CHUNK_OVERHEAD);
            }
        }
    }
);

db_test!(
    async fn a_large_blob_is_read_lazily(backend: Backend) {
        let s = Stores::new(backend).await;
        for kind in KINDS {
            let store = s.store(kind);
            let data = pattern(2 * 1024 * 1024 + 1, 99);
            let info = write_in_pieces(&store, &data, &[512 * 1024 + 1]).await;
            let mut stream = store.read(&info.id).await.unwrap();
            let first = stream.next().await.unwrap().unwrap();
            assert_eq!(first, data[..CHUNK_SIZE]);
            // Dropping a stream half-way is fine and leaves the blob as it was.
            drop(stream);
            assert_eq!(
                read_checked(&store, &info.id, &data).await.unwrap().len(),
                33
            );
        }
    }
);

db_test!(
    async fn stored_data_is_ciphertext(backend: Backend) {
        let s = Stores::new(backend).await;
        let data = b"a recording nobody but its owner may hear ".repeat(4_000);
        for kind in KINDS {
            let store = s.store(kind);
            let info = write(&store, &data).await;
            let needle = &data[..40];
            for chunk in raw_chunks(store.backend().as_ref(), &info.id).await {
                assert!(
                    !chunk.windows(needle.len()).any(|w| w == needle),
                    "{kind:?}"
                );
            }
            if kind == Kind::Directory {
                let path = DirectoryBackend::new(s.blob_dir.path())
                    .unwrap()
                    .blob_path(&info.id);
                let file = std::fs::read(path).unwrap();
                assert!(!file.windows(needle.len()).any(|w| w == needle));
            }
        }
    }
);

db_test!(
    async fn a_flipped_byte_anywhere_is_detected(backend: Backend) {
        let s = Stores::new(backend).await;
        for kind in KINDS {
            let store = s.store(kind);
            let data = pattern(3 * CHUNK_SIZE + 100, 1);
            let info = write(&store, &data).await;
            let original = raw_chunks(store.backend().as_ref(), &info.id).await;
            // The version, flags, key id, nonce, ciphertext and tag of the
            // first, a middle and the last chunk.
            for (chunk, at) in [
                (0, 0),
                (0, 1),
                (1, 3),
                (1, 10),
                (1, 5_000),
                (2, 40),
                (3, 129),
            ] {
                let mut tampered = original.clone();
                let last = tampered[chunk].len() - 1;
                tampered[chunk][at.min(last)] ^= 0x20;
                replace_raw(store.backend().as_ref(), &info.id, tampered).await;
                let err = read_fails(&store, &info.id, &data).await;
                assert!(
                    err.contains("corrupt"),
                    "{kind:?} chunk {chunk} byte {at}: {err}"
                );
            }
            // The untouched chunks still read.
            replace_raw(store.backend().as_ref(), &info.id, original).await;
            read_checked(&store, &info.id, &data).await.unwrap();
        }
    }
);

db_test!(
    async fn truncation_is_detected(backend: Backend) {
        let s = Stores::new(backend).await;
        for kind in KINDS {
            let store = s.store(kind);
            let data = pattern(3 * CHUNK_SIZE + 1, 2);
            let info = write(&store, &data).await;
            let original = raw_chunks(store.backend().as_ref(), &info.id).await;
            assert_eq!(original.len(), 4);
            for keep in [3, 2, 1, 0] {
                replace_raw(
                    store.backend().as_ref(),
                    &info.id,
                    original[..keep].to_vec(),
                )
                .await;
                let err = read_fails(&store, &info.id, &data).await;
                assert!(
                    err.contains("before its final chunk"),
                    "{kind:?} {keep}: {err}"
                );
            }
            // A cut exactly at a chunk boundary of a blob whose size is a
            // multiple of the chunk size, too.
            let even = pattern(2 * CHUNK_SIZE, 3);
            let info = write(&store, &even).await;
            let chunks = raw_chunks(store.backend().as_ref(), &info.id).await;
            replace_raw(store.backend().as_ref(), &info.id, chunks[..1].to_vec()).await;
            read_fails(&store, &info.id, &even).await;
        }
    }
);

db_test!(
    async fn reordered_duplicated_and_appended_chunks_are_detected(backend: Backend) {
        let s = Stores::new(backend).await;
        for kind in KINDS {
            let store = s.store(kind);
            let data = pattern(3 * CHUNK_SIZE, 4);
            let info = write(&store, &data).await;
            let original = raw_chunks(store.backend().as_ref(), &info.id).await;

            let mut swapped = original.clone();
            swapped.swap(0, 1);
            replace_raw(store.backend().as_ref(), &info.id, swapped).await;
            let err = read_fails(&store, &info.id, &data).await;
            assert!(err.contains("chunk 0"), "{kind:?}: {err}");

            let mut duplicated = original.clone();
            duplicated[1] = duplicated[0].clone();
            replace_raw(store.backend().as_ref(), &info.id, duplicated).await;
            read_fails(&store, &info.id, &data).await;

            let mut appended = original.clone();
            appended.push(original[2].clone());
            replace_raw(store.backend().as_ref(), &info.id, appended).await;
            let err = read_fails(&store, &info.id, &data).await;
            assert!(err.contains("after its final chunk"), "{kind:?}: {err}");
        }
    }
);

db_test!(
    async fn a_chunk_moved_from_another_blob_is_detected(backend: Backend) {
        let s = Stores::new(backend).await;
        for kind in KINDS {
            let store = s.store(kind);
            let a = pattern(3 * CHUNK_SIZE, 5);
            let b = pattern(3 * CHUNK_SIZE, 6);
            let blob_a = write(&store, &a).await;
            let blob_b = write(&store, &b).await;
            let chunks_a = raw_chunks(store.backend().as_ref(), &blob_a.id).await;
            let mut chunks_b = raw_chunks(store.backend().as_ref(), &blob_b.id).await;
            chunks_b[1] = chunks_a[1].clone();
            replace_raw(store.backend().as_ref(), &blob_b.id, chunks_b).await;
            let err = read_fails(&store, &blob_b.id, &b).await;
            assert!(err.contains("chunk 1"), "{kind:?}: {err}");
            // Even a whole blob's chunks under another id don't read.
            replace_raw(store.backend().as_ref(), &blob_b.id, chunks_a).await;
            read_fails(&store, &blob_b.id, &b).await;
            read_checked(&store, &blob_a.id, &a).await.unwrap();
        }
    }
);

db_test!(
    async fn rows_swapped_in_the_database_are_detected(backend: Backend) {
        let s = Stores::new(backend).await;
        let store = s.store(Kind::Database);
        let data = pattern(3 * CHUNK_SIZE + 5, 7);
        let info = write(&store, &data).await;
        let id = info.id.as_str();
        for sql in [
            format!("UPDATE blob_chunks SET chunk_index = 99 WHERE blob_id = '{id}' AND chunk_index = 0"),
            format!("UPDATE blob_chunks SET chunk_index = 0 WHERE blob_id = '{id}' AND chunk_index = 1"),
            format!("UPDATE blob_chunks SET chunk_index = 1 WHERE blob_id = '{id}' AND chunk_index = 99"),
        ] {
            s.d.db
                .execute(Statement::from_string(s.d.db.get_database_backend(), sql))
                .await
                .unwrap();
        }
        read_fails(&store, &info.id, &data).await;
        s.d.db
            .execute(Statement::from_string(
                s.d.db.get_database_backend(),
                format!("DELETE FROM blob_chunks WHERE blob_id = '{id}' AND chunk_index = 3"),
            ))
            .await
            .unwrap();
        read_fails(&store, &info.id, &data).await;
    }
);

db_test!(
    async fn a_damaged_blob_file_is_detected(backend: Backend) {
        let s = Stores::new(backend).await;
        let store = s.store(Kind::Directory);
        let dir = DirectoryBackend::new(s.blob_dir.path()).unwrap();
        let data = pattern(2 * CHUNK_SIZE + 10, 8);
        let info = write(&store, &data).await;
        let path = dir.blob_path(&info.id);
        let original = std::fs::read(&path).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("flipped byte", {
                let mut bytes = original.clone();
                bytes[original.len() / 2] ^= 1;
                bytes
            }),
            ("cut mid-record", original[..original.len() - 10].to_vec()),
            (
                "cut after a record",
                original[..8 + 4 + CHUNK_SIZE + CHUNK_OVERHEAD].to_vec(),
            ),
            ("cut in a length", original[..8 + 2].to_vec()),
            ("no magic", original[8..].to_vec()),
            ("empty file", Vec::new()),
            ("huge length", {
                let mut bytes = original.clone();
                bytes[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
                bytes
            }),
        ];
        for (case, bytes) in cases {
            std::fs::write(&path, bytes).unwrap();
            let err = read_fails(&store, &info.id, &data).await;
            assert!(!err.is_empty(), "{case}");
        }
        std::fs::remove_file(&path).unwrap();
        read_fails(&store, &info.id, &data).await;
    }
);

db_test!(
    async fn another_key_reads_nothing(backend: Backend) {
        let s = Stores::new(backend).await;
        for kind in KINDS {
            let store = s.store(kind);
            let data = pattern(CHUNK_SIZE + 3, 9);
            let info = write(&store, &data).await;
            let other = s.store_with(kind, &SecretKey::generate(), GIB);
            let err = read_fails(&other, &info.id, &data).await;
            assert!(err.contains("different secret key"), "{kind:?}: {err}");
            read_checked(&store, &info.id, &data).await.unwrap();
        }
    }
);

db_test!(
    async fn the_size_limit_refuses_and_leaves_nothing(backend: Backend) {
        let s = Stores::new(backend).await;
        for kind in KINDS {
            let limit = 3 * CHUNK_SIZE as u64 + 17;
            let store = s.store_with(kind, &s.d.secret_key, limit);

            // Exactly the limit is fine.
            let data = pattern(limit as usize, 10);
            let info = write_in_pieces(&store, &data, &[CHUNK_SIZE / 3]).await;
            read_checked(&store, &info.id, &data).await.unwrap();
            assert!(store.delete(&info.id).await.unwrap());
            s.assert_nothing_left(kind).await;

            // One byte more fails, after chunks were already stored.
            let mut writer = store.create().await.unwrap();
            let id = writer.id().clone();
            writer.write(&data[..CHUNK_SIZE * 2 + 5]).await.unwrap();
            writer.write(&data[CHUNK_SIZE * 2 + 5..]).await.unwrap();
            expect_too_large(writer.write(b"x").await);
            s.assert_nothing_left(kind).await;
            // The writer is done: no more writes, no finish; abort is harmless.
            assert!(writer.write(b"y").await.is_err());
            assert!(!store.exists(&id).await.unwrap());
            writer.abort().await.unwrap();
            s.assert_nothing_left(kind).await;

            // A single write over the limit, as the first write.
            let mut writer = store.create().await.unwrap();
            expect_too_large(writer.write(&pattern(limit as usize + 1, 11)).await);
            assert!(writer.finish().await.is_err());
            s.assert_nothing_left(kind).await;
        }
    }
);

db_test!(
    async fn aborted_dropped_and_crashed_writes_leave_nothing(backend: Backend) {
        let s = Stores::new(backend).await;
        for kind in KINDS {
            let store = s.store(kind);
            let data = pattern(3 * CHUNK_SIZE + 1, 12);

            let mut writer = store.create().await.unwrap();
            writer.write(&data).await.unwrap();
            assert_ne!(s.leftovers().await, (0, 0, 0));
            let id = writer.id().clone();
            // Unfinished blobs can't be read.
            assert!(matches!(
                store.read(&id).await,
                Err(DomainError::NotFound(_))
            ));
            assert!(!store.exists(&id).await.unwrap());
            writer.abort().await.unwrap();
            s.assert_nothing_left(kind).await;

            // Dropped without finish or abort (a cancelled request).
            let mut writer = store.create().await.unwrap();
            writer.write(&data).await.unwrap();
            drop(writer);
            s.wait_until_empty(kind).await;

            // A crash: nothing runs at all; the catalogue finds the orphan.
            let mut writer = store.create().await.unwrap();
            writer.write(&data).await.unwrap();
            std::mem::forget(writer);
            let finished = write(&store, &data).await;
            assert_eq!(
                store
                    .purge_orphans(Duration::from_secs(3600))
                    .await
                    .unwrap(),
                0,
                "too young to be an orphan"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(store.purge_orphans(Duration::ZERO).await.unwrap(), 1);
            // Finished blobs are no orphans.
            read_checked(&store, &finished.id, &data).await.unwrap();
            assert!(store.delete(&finished.id).await.unwrap());
            s.assert_nothing_left(kind).await;
        }
    }
);

db_test!(
    async fn purging_carries_on_past_an_orphan_it_cannot_remove(backend: Backend) {
        let s = Stores::new(backend).await;
        let store = s.store(Kind::Directory);
        let mut stuck = store.create().await.unwrap();
        stuck.write(b"crashed upload").await.unwrap();
        let stuck_part = s.blob_dir.path().join(format!("{}.part", stuck.id()));
        std::mem::forget(stuck);
        // A directory where the part file was: unlink fails, even for root.
        std::fs::remove_file(&stuck_part).unwrap();
        std::fs::create_dir(&stuck_part).unwrap();
        std::fs::write(stuck_part.join("x"), b"x").unwrap();
        let mut other = store.create().await.unwrap();
        other.write(b"another crashed upload").await.unwrap();
        std::mem::forget(other);
        tokio::time::sleep(Duration::from_millis(5)).await;

        assert_eq!(store.purge_orphans(Duration::ZERO).await.unwrap(), 1);
        assert_eq!(s.leftovers().await, (1, 0, 1));
        // Only the stuck one left, and nothing to make progress with: an error.
        assert!(store.purge_orphans(Duration::ZERO).await.is_err());
        std::fs::remove_dir_all(&stuck_part).unwrap();
        assert_eq!(store.purge_orphans(Duration::ZERO).await.unwrap(), 1);
        s.assert_nothing_left(Kind::Directory).await;
    }
);

db_test!(
    async fn deleting_removes_everything_once(backend: Backend) {
        let s = Stores::new(backend).await;
        for kind in KINDS {
            let store = s.store(kind);
            let data = pattern(2 * CHUNK_SIZE + 1, 13);
            let keep = write(&store, b"another blob").await;
            let info = write(&store, &data).await;
            assert!(store.delete(&info.id).await.unwrap());
            assert!(!store.exists(&info.id).await.unwrap());
            assert_eq!(store.info(&info.id).await.unwrap(), None);
            assert!(matches!(
                store.read(&info.id).await,
                Err(DomainError::NotFound(_))
            ));
            assert!(!store.delete(&info.id).await.unwrap());
            let unknown = BlobId::generate();
            assert!(!store.delete(&unknown).await.unwrap());
            assert!(matches!(
                store.read(&unknown).await,
                Err(DomainError::NotFound(_))
            ));
            // Only that blob went.
            read_checked(&store, &keep.id, b"another blob")
                .await
                .unwrap();
            assert!(store.delete(&keep.id).await.unwrap());
            s.assert_nothing_left(kind).await;
        }
    }
);

db_test!(
    async fn from_config_builds_the_configured_backend(backend: Backend) {
        let s = Stores::new(backend).await;
        let blob_dir = s.blob_dir.path().join("nested").join("blobs");
        let yaml = format!(
            "client_url: \"{CLIENT_URL}\"\nweb_server: {{no_https: true}}\n\
             storage: {{backend: directory, directory: \"{}\"}}\n\
             limits: {{max_upload_bytes: 100}}\n",
            blob_dir.display()
        );
        let config = parse_str(&yaml, Vec::new()).unwrap().config;
        let store = storage::from_config(s.d.db.clone(), &config, &s.d.secret_key).unwrap();
        let info = write(store.as_ref(), &pattern(100, 14)).await;
        assert!(blob_dir.join(format!("{}.blob", info.id)).is_file());
        assert_eq!(blob_chunks::Entity::find().count(&s.d.db).await.unwrap(), 0);
        let mut writer = store.create().await.unwrap();
        expect_too_large(writer.write(&[0; 101]).await);

        // The default: the database, with a 1 GiB limit.
        let store = storage::from_config(s.d.db.clone(), &s.d.config, &s.d.secret_key).unwrap();
        let info = write(store.as_ref(), &pattern(CHUNK_SIZE + 1, 15)).await;
        assert_eq!(blob_chunks::Entity::find().count(&s.d.db).await.unwrap(), 2);
        read_checked(store.as_ref(), &info.id, &pattern(CHUNK_SIZE + 1, 15))
            .await
            .unwrap();
    }
);

// ------------------------------------------------------------ config keys

fn load(yaml: &str, env: &[(&str, &str)]) -> Result<scribe_domain::config::Config, String> {
    let yaml = format!("client_url: \"{CLIENT_URL}\"\nweb_server: {{no_https: true}}\n{yaml}");
    let env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<Vec<_>>();
    parse_str(&yaml, env)
        .map(|loaded| loaded.config)
        .map_err(|err| err.to_string())
}

#[test]
fn storage_and_limits_have_defaults() {
    let config = load("data_dir: /srv/scribe\n", &[]).unwrap();
    assert_eq!(config.storage.backend, StorageBackend::Database);
    assert_eq!(config.storage.directory, None);
    assert_eq!(config.blob_directory(), Path::new("/srv/scribe/blobs"));
    assert_eq!(config.limits.max_upload_bytes, GIB);
}

#[test]
fn storage_and_limits_come_from_file_and_environment() {
    let config = load(
        "storage:\n  backend: directory\n  directory: /mnt/blobs\nlimits:\n  max_upload_bytes: 5000\n",
        &[],
    )
    .unwrap();
    assert_eq!(config.storage.backend, StorageBackend::Directory);
    assert_eq!(config.blob_directory(), Path::new("/mnt/blobs"));
    assert_eq!(config.limits.max_upload_bytes, 5000);

    let config = load(
        "",
        &[
            ("SCRIBE_STORAGE__BACKEND", "directory"),
            ("SCRIBE_LIMITS__MAX_UPLOAD_BYTES", "2147483648"),
        ],
    )
    .unwrap();
    assert_eq!(config.storage.backend, StorageBackend::Directory);
    assert_eq!(config.limits.max_upload_bytes, 2 * GIB);
}

#[test]
fn bad_storage_and_limits_are_named() {
    let err = load("limits:\n  max_upload_bytes: 0\n", &[]).unwrap_err();
    assert!(err.contains("limits.max_upload_bytes"), "{err}");
    let err = load("storage:\n  backend: s3\n", &[]).unwrap_err();
    assert!(err.contains("storage.backend"), "{err}");
    let err = load("storage:\n  bucket: x\n", &[]).unwrap_err();
    assert!(err.contains("storage.bucket"), "{err}");
    let err = load("limits:\n  max_upload_bytes: -1\n", &[]).unwrap_err();
    assert!(err.contains("limits.max_upload_bytes"), "{err}");
}
