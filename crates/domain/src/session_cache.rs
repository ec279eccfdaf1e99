//! A cache of authenticated sessions, so that a request with a known token
//! costs no database round trip for authentication.
//!
//! Correctness rests on invalidation, not on the time to live: every change to
//! a user's tokens or account publishes a [`CredentialChange`] through the
//! notifier (PostgreSQL NOTIFY reaches every replica), and each lookup first
//! applies the changes received since the last one. The time to live only
//! bounds what a change made without a notifier (another process on SQLite,
//! e.g. a CLI command) can leave behind.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::events::CredentialChange;
use crate::tokens::Session;

/// Entries kept at most; a full cache starts over rather than tracking use.
const CAPACITY: usize = 16_384;

/// An authenticated session as cached under the hash of the presented value.
#[derive(Debug, Clone)]
pub struct CachedSession {
    pub session: Session,
    /// When this value stops authenticating on its own: the token's expiry,
    /// or the end of the grace period for a rotated-out value.
    pub valid_until: Option<DateTime<Utc>>,
    /// The token's `last_usage` as last written.
    pub last_usage: DateTime<Utc>,
}

struct Entry {
    cached: CachedSession,
    stored_at: Instant,
}

struct Inner {
    entries: HashMap<String, Entry>,
    changes: broadcast::Receiver<CredentialChange>,
    /// Counts the changes applied, so that a session read from the database
    /// before a change isn't cached after it.
    generation: u64,
}

pub struct SessionCache {
    inner: Mutex<Inner>,
    /// Bounds staleness where no invalidation can arrive (see the module
    /// docs); zero turns the cache off.
    time_to_live: Duration,
}

/// Where a lookup started: see [`SessionCache::insert`].
#[derive(Debug, Clone, Copy)]
pub struct Generation(u64);

impl SessionCache {
    pub fn new(changes: broadcast::Receiver<CredentialChange>, time_to_live: Duration) -> Self {
        SessionCache {
            time_to_live,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                changes,
                generation: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the map consistent.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.apply_changes();
        inner
    }

    /// The cached session for a presented token's hash, if it is still fresh,
    /// and the generation to hand to [`SessionCache::insert`] after a miss.
    pub fn get(&self, token_hash: &str) -> (Option<CachedSession>, Generation) {
        let mut inner = self.lock();
        let generation = Generation(inner.generation);
        let fresh = match inner.entries.get(token_hash) {
            Some(entry) if entry.stored_at.elapsed() < self.time_to_live => {
                Some(entry.cached.clone())
            }
            Some(_) => {
                inner.entries.remove(token_hash);
                None
            }
            None => None,
        };
        (fresh, generation)
    }

    /// Caches a session read from the database, unless a credential change
    /// arrived since `read_at` (the read may predate it).
    pub fn insert(&self, token_hash: String, cached: CachedSession, read_at: Generation) {
        let mut inner = self.lock();
        if inner.generation != read_at.0 || self.time_to_live.is_zero() {
            return;
        }
        if inner.entries.len() >= CAPACITY {
            inner.entries.clear();
        }
        inner.entries.insert(
            token_hash,
            Entry {
                cached,
                stored_at: Instant::now(),
            },
        );
    }

    /// Applies a change made by this process at once: a notifier may deliver
    /// it back later (PostgreSQL NOTIFY goes through the server), and the
    /// caller's next request must not find the old session meanwhile.
    pub fn forget(&self, change: CredentialChange) {
        self.lock().apply(change);
    }

    /// Records a `last_usage` written for the token with this hash.
    pub fn touch(&self, token_hash: &str, last_usage: DateTime<Utc>) {
        if let Some(entry) = self.lock().entries.get_mut(token_hash) {
            entry.cached.last_usage = last_usage;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Inner {
    fn apply_changes(&mut self) {
        loop {
            match self.changes.try_recv() {
                Ok(change) => self.apply(change),
                Err(TryRecvError::Lagged(_)) => self.apply(CredentialChange::All),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => return,
            }
        }
    }

    fn apply(&mut self, change: CredentialChange) {
        self.generation += 1;
        match change {
            CredentialChange::User(user_id) => self
                .entries
                .retain(|_, entry| entry.cached.session.user.id != user_id),
            CredentialChange::All => self.entries.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;
    use crate::accounts::{User, UserType};

    fn session(user_id: i64, token_id: i64) -> CachedSession {
        CachedSession {
            session: Session::for_tests(
                User {
                    id: user_id,
                    email: format!("{user_id}@example.org"),
                    user_type: UserType::Local,
                    provider_name: "project-W".into(),
                    is_verified: true,
                    is_admin: false,
                    is_provisioned: false,
                    accepted_tos: BTreeMap::new(),
                },
                token_id,
            ),
            valid_until: None,
            last_usage: Utc::now(),
        }
    }

    #[test]
    fn a_change_for_a_user_forgets_only_that_users_sessions() {
        let (sender, receiver) = broadcast::channel(16);
        let cache = SessionCache::new(receiver, Duration::from_secs(60));
        let (_, at) = cache.get("a");
        cache.insert("a".into(), session(1, 10), at);
        cache.insert("b".into(), session(2, 20), at);
        sender.send(CredentialChange::User(1)).unwrap();
        assert!(cache.get("a").0.is_none());
        assert_eq!(cache.get("b").0.map(|c| c.session.token_id), Some(20));
    }

    #[test]
    fn a_read_that_started_before_a_change_is_not_cached() {
        let (sender, receiver) = broadcast::channel(16);
        let cache = SessionCache::new(receiver, Duration::from_secs(60));
        let (_, before) = cache.get("a");
        sender.send(CredentialChange::User(7)).unwrap();
        cache.insert("a".into(), session(1, 10), before);
        assert!(cache.get("a").0.is_none());
    }

    #[test]
    fn a_local_change_applies_before_any_notification() {
        let (_sender, receiver) = broadcast::channel(16);
        let cache = SessionCache::new(receiver, Duration::from_secs(60));
        let (_, at) = cache.get("a");
        cache.insert("a".into(), session(1, 10), at);
        cache.forget(CredentialChange::User(1));
        assert!(cache.get("a").0.is_none());
    }

    #[test]
    fn falling_behind_forgets_everything() {
        let (sender, receiver) = broadcast::channel(2);
        let cache = SessionCache::new(receiver, Duration::from_secs(60));
        let (_, at) = cache.get("a");
        cache.insert("a".into(), session(1, 10), at);
        for user in 100..110 {
            sender.send(CredentialChange::User(user)).unwrap();
        }
        assert_eq!(cache.len(), 0);
        sender.send(CredentialChange::All).unwrap();
        let (_, at) = cache.get("a");
        cache.insert("a".into(), session(1, 10), at);
        sender.send(CredentialChange::All).unwrap();
        assert!(cache.get("a").0.is_none());
    }
}
