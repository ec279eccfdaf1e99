use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::config::Config;
use crate::secret_key::SecretKey;

/// Everything a domain service needs: the database, the validated configuration
/// and the instance's secret key. Cheap to clone; built once by the server.
#[derive(Clone)]
pub struct Domain {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub secret_key: SecretKey,
}
