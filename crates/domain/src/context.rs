use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::banners::BannerCache;
use crate::config::Config;
use crate::error::{DomainError, DomainResult};
use crate::events::{InProcessNotifier, Notifier};
use crate::mail::MailQueue;
use crate::passwords::PasswordHasher;
use crate::secret_key::SecretKey;
use crate::session_cache::SessionCache;
use crate::storage::{self, BlobId, BlobInfo, BlobStore, BlobStream, BlobWriter};

/// Everything a domain service needs: the database, the validated configuration,
/// the instance's secret key, the mail queue and the password hasher. Cheap to
/// clone; built once by the server.
#[derive(Clone)]
pub struct Domain {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub secret_key: SecretKey,
    pub mail: MailQueue,
    pub passwords: PasswordHasher,
    pub banners: BannerCache,
    /// Job events and cross-replica wake-ups (in-process unless replaced with
    /// [`Domain::with_events`], as the server does on PostgreSQL).
    pub events: Arc<dyn Notifier>,
    /// Audio and transcripts, encrypted at rest (`storage`, `limits`).
    pub blobs: Arc<dyn BlobStore>,
    /// Authenticated sessions, invalidated through `events`.
    pub sessions: Arc<SessionCache>,
}

impl Domain {
    /// Like [`Domain::try_new`], but a blob store that can't be opened (the
    /// blob directory can't be created) is logged and every blob operation then
    /// fails; start-up code should prefer `try_new` and stop instead.
    pub fn new(db: DatabaseConnection, config: Arc<Config>, secret_key: SecretKey) -> Self {
        let blobs = storage::from_config(db.clone(), &config, &secret_key).unwrap_or_else(|err| {
            tracing::error!(error = %err, "blob storage is unavailable");
            Arc::new(UnavailableStore(err.to_string()))
        });
        Self::with_parts(db, config, secret_key, blobs)
    }

    /// Builds the domain, failing when the configured blob store can't be opened.
    pub fn try_new(
        db: DatabaseConnection,
        config: Arc<Config>,
        secret_key: SecretKey,
    ) -> DomainResult<Self> {
        let blobs = storage::from_config(db.clone(), &config, &secret_key)?;
        Ok(Self::with_parts(db, config, secret_key, blobs))
    }

    fn with_parts(
        db: DatabaseConnection,
        config: Arc<Config>,
        secret_key: SecretKey,
        blobs: Arc<dyn BlobStore>,
    ) -> Self {
        // Two concurrent hashes per core keep the CPU busy without queueing
        // unbounded 19 MiB allocations.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let events: Arc<dyn Notifier> = Arc::new(InProcessNotifier::new());
        let sessions = session_cache(&config, events.as_ref());
        Domain {
            db,
            config,
            secret_key,
            mail: MailQueue::new(),
            passwords: PasswordHasher::new(cores * 2),
            banners: BannerCache::default(),
            sessions,
            events,
            blobs,
        }
    }

    pub fn with_events(mut self, events: Arc<dyn Notifier>) -> Self {
        // The cache must hear of changes from the notifier that carries them.
        self.sessions = session_cache(&self.config, events.as_ref());
        self.events = events;
        self
    }
}

/// Stands in for a blob store that could not be opened, so that `Domain::new`
/// keeps its infallible signature; every call fails with the original cause.
fn session_cache(config: &Config, events: &dyn Notifier) -> Arc<SessionCache> {
    let seconds = config.security.tokens.session_cache_seconds;
    Arc::new(SessionCache::new(
        events.subscribe_credentials(),
        std::time::Duration::from_secs(u64::from(seconds)),
    ))
}

struct UnavailableStore(String);

impl UnavailableStore {
    fn error(&self) -> DomainError {
        DomainError::internal("blob storage unavailable", &self.0)
    }
}

#[async_trait::async_trait]
impl BlobStore for UnavailableStore {
    async fn create(&self) -> DomainResult<Box<dyn BlobWriter>> {
        Err(self.error())
    }
    async fn read(&self, _id: &BlobId) -> DomainResult<BlobStream> {
        Err(self.error())
    }
    async fn info(&self, _id: &BlobId) -> DomainResult<Option<BlobInfo>> {
        Err(self.error())
    }
    async fn delete(&self, _id: &BlobId) -> DomainResult<bool> {
        Err(self.error())
    }
    async fn purge_orphans(&self, _older_than: std::time::Duration) -> DomainResult<u64> {
        Err(self.error())
    }
}
