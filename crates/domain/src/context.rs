use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::config::Config;
use crate::mail::MailQueue;
use crate::passwords::PasswordHasher;
use crate::secret_key::SecretKey;

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
}

impl Domain {
    pub fn new(db: DatabaseConnection, config: Arc<Config>, secret_key: SecretKey) -> Self {
        // Two concurrent hashes per core keep the CPU busy without queueing
        // unbounded 19 MiB allocations.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Domain {
            db,
            config,
            secret_key,
            mail: MailQueue::new(),
            passwords: PasswordHasher::new(cores * 2),
        }
    }
}
