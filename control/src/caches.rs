//! What a [`Store`](crate::store::Store) keeps in memory between requests, so
//! hot paths (the routing API per request, the overview's accuracy charts) do
//! not read the store each time. Owned by the store handle and shared by its
//! clones; two stores (two tests, two processes) never see each other's
//! entries.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::clients::{RampState, TokenGrant};

/// How long a token check or a ramp is cached. Changes made through this
/// store clear the caches at once; other processes of a fleet see them
/// within this time.
const ROUTING_TTL: Duration = Duration::from_secs(2);
/// Entries a routing cache holds before it starts over.
const ROUTING_MAX: usize = 10_000;

/// The store's in-memory state. The store holds it in an `Arc`.
#[derive(Debug)]
pub struct Caches {
    /// Every migration's accuracy history as last computed, with the state of
    /// the verification runs it was computed from (see
    /// [`Store::accuracy_histories`](crate::store::Store::accuracy_histories)).
    pub histories: Mutex<Option<HistoryCache>>,
    /// API token checks by token hash (`None`: a wrong or revoked token).
    pub tokens: TtlCache<String, Option<TokenGrant>>,
    /// Client ramps by (migration, client) name.
    pub ramps: TtlCache<(String, String), RampState>,
    /// Woken when a migration's write routing changes (a hold, a flip, a
    /// release), so clients' long polls answer at once.
    pub routing_changed: tokio::sync::Notify,
}

impl Default for Caches {
    fn default() -> Self {
        Caches {
            histories: Mutex::default(),
            tokens: TtlCache::new(ROUTING_TTL, ROUTING_MAX),
            ramps: TtlCache::new(ROUTING_TTL, ROUTING_MAX),
            routing_changed: tokio::sync::Notify::new(),
        }
    }
}

impl Caches {
    /// Forgets every token check and ramp: a ramp, a client or a token changed.
    pub fn clear_routing(&self) {
        self.tokens.clear();
        self.ramps.clear();
    }
}

/// Every migration's accuracy history and the stamp of the runs behind it.
#[derive(Debug, Clone)]
pub struct HistoryCache {
    /// The count and last id of the verification runs the histories came from.
    pub stamp: [i64; 2],
    pub histories: crate::accuracy::Histories,
}

/// A map whose entries are good for `ttl`; when full it starts over.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    max: usize,
    entries: RwLock<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, max: usize) -> Self {
        TtlCache {
            ttl,
            max,
            entries: RwLock::default(),
        }
    }

    /// The value under `key`, if it was put there less than `ttl` ago.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.read().ok()?;
        let (at, value) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn put(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= self.max {
                entries.clear();
            }
            entries.insert(key, (Instant::now(), value));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_good_for_its_time_and_a_full_cache_starts_over() {
        let cache = TtlCache::new(Duration::from_millis(50), 2);
        cache.put(1, "a");
        cache.put(2, "b");
        assert_eq!(cache.get(&1), Some("a"));
        cache.put(3, "c");
        assert_eq!(cache.get(&1), None, "a full cache starts over");
        assert_eq!(cache.get(&3), Some("c"));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&3), None, "an entry expires after its time");
    }
}
