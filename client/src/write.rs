//! Where writes go: every bucket's write primary, polled from Tern (a long
//! poll that answers as soon as a switch changes it), decided per key
//! locally with the same bucket bounds as the engine's plan.
//!
//! A write takes a [`WritePermit`] for its key and keeps it until the write
//! has committed. Before this client tells Tern it applied a new routing, it
//! waits for every permit taken under the old one to drop: when Tern sees the
//! acknowledgement of a hold, no write to the held keys is in flight, which
//! is what lets a switch drain the relay and flip without losing a write.
//!
//! A client that has not heard from Tern for `stale_after` answers
//! [`Primary::Hold`] for every key: Tern stops waiting for a client it has
//! not heard from, so writing on from an old routing could write to a store
//! that is no longer the primary.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tern_ramp::buckets::{KeyKind, bucket_of};

/// Where a key's writes go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primary {
    /// The old store is the source of truth for this key.
    Old,
    /// The new store is.
    New,
    /// A switch holds this key's writes: retry in a moment.
    Hold,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RoutingAnswer {
    pub version: i64,
    pub tables: Vec<TableAnswer>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TableAnswer {
    pub table: String,
    pub key_kind: String,
    pub buckets: Vec<BucketAnswer>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BucketAnswer {
    pub hi: Option<String>,
    pub primary: String,
}

struct TableRouting {
    name: String,
    kind: KeyKind,
    uppers: Vec<String>,
    primaries: Vec<Primary>,
}

/// One version of the write routing, and the permits taken under it.
pub(crate) struct Routing {
    pub version: i64,
    tables: Vec<TableRouting>,
    inflight: AtomicUsize,
}

impl Routing {
    /// No routing read yet: every key holds.
    pub fn unknown() -> Routing {
        Routing {
            version: -1,
            tables: Vec::new(),
            inflight: AtomicUsize::new(0),
        }
    }

    pub fn from_answer(a: RoutingAnswer) -> Routing {
        let tables = a
            .tables
            .into_iter()
            .map(|t| TableRouting {
                name: t.table,
                kind: KeyKind::parse(&t.key_kind).unwrap_or(KeyKind::Text),
                uppers: t.buckets.iter().filter_map(|b| b.hi.clone()).collect(),
                primaries: t
                    .buckets
                    .iter()
                    .map(|b| match b.primary.as_str() {
                        "old" => Primary::Old,
                        "new" => Primary::New,
                        _ => Primary::Hold,
                    })
                    .collect(),
            })
            .collect();
        Routing {
            version: a.version,
            tables,
            inflight: AtomicUsize::new(0),
        }
    }

    /// The primary of `key` in `table` (the first table when `None`); an
    /// unknown table holds.
    pub fn primary(&self, table: Option<&str>, key: &str) -> Primary {
        let t = match table {
            Some(name) => self.tables.iter().find(|t| t.name == name),
            None => self.tables.first(),
        };
        let Some(t) = t else { return Primary::Hold };
        let i = bucket_of(t.kind, &t.uppers, key);
        t.primaries.get(i).copied().unwrap_or(Primary::Hold)
    }
}

/// The write routing a client holds.
pub(crate) struct WriteState {
    current: RwLock<Arc<Routing>>,
    /// Milliseconds since `epoch` when Tern last answered.
    heard_at: AtomicU64,
    epoch: Instant,
    /// The version whose permits have all dropped: what the next poll reports.
    applied: AtomicI64,
    pub changed: tokio::sync::Notify,
}

impl WriteState {
    pub fn new() -> WriteState {
        WriteState {
            current: RwLock::new(Arc::new(Routing::unknown())),
            heard_at: AtomicU64::new(0),
            epoch: Instant::now(),
            applied: AtomicI64::new(-1),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn current(&self) -> Arc<Routing> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    pub fn version(&self) -> i64 {
        self.current().version
    }

    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::SeqCst)
    }

    fn fresh(&self, stale_after: Duration) -> bool {
        let heard = self.heard_at.load(Ordering::Relaxed);
        heard > 0
            && (self.epoch.elapsed().as_millis() as u64).saturating_sub(heard)
                <= stale_after.as_millis() as u64
    }

    /// Where `key`'s writes go now, without taking a permit.
    pub fn primary(&self, table: Option<&str>, key: &str, stale_after: Duration) -> Primary {
        if !self.fresh(stale_after) {
            return Primary::Hold;
        }
        self.current().primary(table, key)
    }

    /// A permit for a write of `key`, or `None` while the key holds.
    pub fn begin(
        self: &Arc<Self>,
        table: Option<&str>,
        key: &str,
        stale_after: Duration,
    ) -> Option<WritePermit> {
        loop {
            let r = self.current();
            r.inflight.fetch_add(1, Ordering::SeqCst);
            // A routing swapped in meanwhile may not wait for this permit: take it again.
            if !Arc::ptr_eq(&r, &self.current()) {
                r.inflight.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let p = if self.fresh(stale_after) {
                r.primary(table, key)
            } else {
                Primary::Hold
            };
            if p == Primary::Hold {
                r.inflight.fetch_sub(1, Ordering::SeqCst);
                return None;
            }
            return Some(WritePermit {
                routing: r,
                primary: p,
            });
        }
    }

    /// Applies a routing Tern answered: swaps it in, then waits until every
    /// permit taken under the one before has dropped, so the version it
    /// reports next is true of every write in flight.
    pub async fn apply(&self, answer: RoutingAnswer) {
        self.heard_at.store(
            (self.epoch.elapsed().as_millis() as u64).max(1),
            Ordering::Relaxed,
        );
        if answer.version == self.version() {
            self.applied.store(answer.version, Ordering::SeqCst);
            return;
        }
        let version = answer.version;
        let next = Arc::new(Routing::from_answer(answer));
        let old = match self.current.write() {
            Ok(mut g) => std::mem::replace(&mut *g, next),
            Err(p) => std::mem::replace(&mut *p.into_inner(), next),
        };
        self.changed.notify_waiters();
        let waiting_since = Instant::now();
        while old.inflight.load(Ordering::SeqCst) > 0 {
            if waiting_since.elapsed() > Duration::from_secs(60) {
                tracing::warn!(
                    version,
                    "tern-client: writes taken under the last routing have not finished after 60 s"
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.applied.store(version, Ordering::SeqCst);
        tracing::info!(version, "tern-client: write routing applied");
    }
}

/// Leave to write one key to one store; hold it until the write committed.
pub struct WritePermit {
    routing: Arc<Routing>,
    primary: Primary,
}

impl WritePermit {
    /// The store to write first: [`Primary::Old`] or [`Primary::New`].
    pub fn primary(&self) -> Primary {
        self.primary
    }

    /// The routing version the permit was taken under.
    pub fn version(&self) -> i64 {
        self.routing.version
    }
}

impl std::fmt::Debug for WritePermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritePermit")
            .field("primary", &self.primary)
            .field("version", &self.routing.version)
            .finish()
    }
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        self.routing.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(version: i64, primaries: [&str; 3]) -> RoutingAnswer {
        let b = |hi: Option<&str>, p: &str| BucketAnswer {
            hi: hi.map(String::from),
            primary: p.into(),
        };
        RoutingAnswer {
            version,
            tables: vec![TableAnswer {
                table: "contacts".into(),
                key_kind: "integer".into(),
                buckets: vec![
                    b(Some("100"), primaries[0]),
                    b(Some("200"), primaries[1]),
                    b(None, primaries[2]),
                ],
            }],
        }
    }

    const FRESH: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn keys_write_where_their_bucket_says_and_unread_routing_holds() {
        let w = Arc::new(WriteState::new());
        assert_eq!(w.primary(None, "5", FRESH), Primary::Hold);
        w.apply(answer(1, ["old", "new", "hold"])).await;
        assert_eq!(w.primary(None, "99", FRESH), Primary::Old);
        assert_eq!(w.primary(Some("contacts"), "100", FRESH), Primary::New);
        assert_eq!(w.primary(None, "5000", FRESH), Primary::Hold);
        assert_eq!(w.primary(Some("other"), "5", FRESH), Primary::Hold);
        assert!(w.begin(None, "5000", FRESH).is_none());
        assert_eq!(w.applied(), 1);
    }

    #[tokio::test]
    async fn a_new_routing_is_applied_only_after_the_writes_under_the_old_one() {
        let w = Arc::new(WriteState::new());
        w.apply(answer(1, ["old", "old", "old"])).await;
        let permit = w.begin(None, "150", FRESH);
        assert_eq!(
            permit.as_ref().map(WritePermit::primary),
            Some(Primary::Old)
        );
        let w2 = Arc::clone(&w);
        let apply = tokio::spawn(async move { w2.apply(answer(2, ["old", "hold", "old"])).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(w.version(), 2, "new writes see the hold at once");
        assert!(w.begin(None, "150", FRESH).is_none());
        assert_eq!(
            w.applied(),
            1,
            "not acknowledged while a write under version 1 runs"
        );
        drop(permit);
        apply.await.ok();
        assert_eq!(w.applied(), 2);
    }

    #[tokio::test]
    async fn a_client_that_has_not_heard_from_tern_holds() {
        let w = Arc::new(WriteState::new());
        w.apply(answer(1, ["old", "new", "old"])).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            w.primary(None, "150", Duration::from_millis(5)),
            Primary::Hold
        );
        assert_eq!(w.primary(None, "150", FRESH), Primary::New);
    }
}
