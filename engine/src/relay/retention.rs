//! Changelog retention: pruning rows every reader has passed, and the
//! relay's warning when a bucket's backlog is older than the retention.
//!
//! A changelog row may be pruned when it is older than the retention *and*
//! every relay of the target has passed it *and* every bucket still waiting
//! for its catch-up (watermark taken, not caught up) has passed it. So pruning
//! never takes a change someone still needs; a bucket that waits longer than
//! the retention holds the changelog back, and the relay says so.

use std::time::Duration;

use super::store;
use crate::apply::tombstones;
use crate::capture;
use crate::changelog::Lag;
use crate::error::Result;
use crate::link::Link;

/// What [`prune_changelog`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneReport {
    /// Changelog rows with a sequence number up to this were deleted.
    pub through: i64,
    pub deleted: u64,
    /// Tombstones older than the retention deleted from the target.
    pub tombstones_deleted: u64,
    /// What kept pruning from going further, for people: `relay default at
    /// 1520`, `items bucket 3 waiting for catch-up from 1200`, or `retention`.
    pub held_by: String,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Deletes changelog rows older than `retention` that every relay and every
/// pending catch-up of this spec's target has passed, and tombstones older
/// than the retention. Safe to run at any time, from any process.
pub async fn prune_changelog(link: &Link, retention: Duration) -> Result<PruneReport> {
    let source = link.source();
    if !capture::is_installed(source).await? {
        return Ok(PruneReport {
            through: 0,
            deleted: 0,
            tombstones_deleted: 0,
            held_by: "change capture is not installed".into(),
        });
    }
    let now = source.clock_micros().await?;
    let cutoff = now.saturating_sub(micros(retention));
    let mut through = capture::position_before(source, cutoff).await?;
    let mut held_by = "retention".to_string();
    for (name, p) in store::load_all(link.target()).await? {
        if p.low() < through {
            through = p.low();
            held_by = format!("relay {name} at {p}");
        }
    }
    for cp in link.all_checkpoints().await? {
        if cp.caught_up_at.is_some() {
            continue;
        }
        if let Some(w) = &cp.watermark
            && w.low() < through
        {
            through = w.low();
            held_by = format!(
                "{} bucket {} waiting for catch-up from {w}",
                cp.table, cp.bucket
            );
        }
    }
    let deleted = capture::prune(source, through).await?;
    let tombstones_deleted = tombstones::prune(link.target(), cutoff).await?;
    Ok(PruneReport {
        through,
        deleted,
        tombstones_deleted,
        held_by,
    })
}

/// Warnings about backlogs older than the retention, logged and returned
/// for the relay's progress; prunes too when the relay is set to.
pub(super) async fn check(
    link: &Link,
    relay: &str,
    retention: Duration,
    prune: bool,
    relay_lag: &Lag,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let now = link.source().clock_micros().await?;
    for cp in link.all_checkpoints().await? {
        let (Some(_), Some(at), None) = (&cp.watermark, cp.snapshot_at, cp.caught_up_at) else {
            continue;
        };
        let age = Duration::from_micros(u64::try_from(now.saturating_sub(at)).unwrap_or(0));
        if age > retention {
            warnings.push(format!(
                "{} bucket {}: its backlog since the watermark is {} old, older than the changelog \
                 retention ({}); it holds the changelog from being pruned: catch the bucket up",
                cp.table,
                cp.bucket,
                human(age),
                human(retention)
            ));
        }
    }
    if relay_lag.seconds > retention.as_secs_f64() {
        warnings.push(format!(
            "relay {} is {} behind, more than the changelog retention ({})",
            relay,
            human(Duration::from_secs_f64(relay_lag.seconds)),
            human(retention)
        ));
    }
    for w in &warnings {
        tracing::warn!(relay = %relay, "{w}");
    }
    if prune {
        let r = prune_changelog(link, retention).await?;
        if r.deleted > 0 {
            tracing::info!(relay = %relay, through = r.through, deleted = r.deleted, held_by = %r.held_by, "changelog pruned");
        }
    }
    Ok(warnings)
}

/// `3d 4h`, `5m 2s`, `800ms`.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(Duration::from_millis(800)), "800ms");
        assert_eq!(human(Duration::from_secs(302)), "5m 2s");
        assert_eq!(human(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d 4h");
    }
}
