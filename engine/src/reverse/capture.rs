//! Change capture on the target: the same triggers and changelog as on the
//! source ([`crate::capture`]), installed on the target tables of the
//! reversible tables, each logging the columns its inverse mapping needs to
//! find a change's target key, source key and bucket. Writes Tern makes to
//! the target (bulk load, relay, catch-up, repair) carry the origin mark and
//! are not logged: only the applications' writes to the new store are.

use std::time::Duration;

use crate::capture::{self, CapturedTable, InstallReport, RemoveReport};
use crate::error::Result;
use crate::link::Link;
use crate::relay::{RELAY_TABLE, store};

/// What [`install_capture`] did: the tables captured, and those left out
/// because they are not reversible (with the reason).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetCapture {
    pub installed: InstallReport,
    pub not_reversible: Vec<(String, String)>,
}

/// Installs (or re-installs) change capture on the target tables of every
/// reversible table of the link. Safe to run again.
pub async fn install_capture(link: &Link) -> Result<TargetCapture> {
    link.check_writable()?;
    let mut tables = Vec::new();
    let mut not_reversible = Vec::new();
    for (name, entry) in link.reverse_entries().await? {
        match entry {
            Ok(rt) => tables.push(CapturedTable {
                table: name.clone(),
                columns: rt.captured.clone(),
            }),
            Err(why) => not_reversible.push((name.clone(), why.clone())),
        }
    }
    let installed = capture::install_tables(link.target(), tables).await?;
    Ok(TargetCapture {
        installed,
        not_reversible,
    })
}

/// Removes the capture of the link's target tables, and the changelog when
/// nothing else in the target is captured (the decommission's step; the
/// source's capture is removed with [`crate::capture::remove_tables`]).
pub async fn remove_capture(link: &Link) -> Result<RemoveReport> {
    let tables: Vec<String> = link.tables().into_iter().map(String::from).collect();
    capture::remove_tables(link.target(), &tables).await
}

/// Removes what reverse replication keeps in the *source*: the table of
/// reverse relay positions (`_tern_relay`). With [`remove_capture`] and
/// [`crate::capture::remove`] the decommission leaves no Tern object in the
/// old store. Safe to run when there is nothing to remove.
pub async fn remove_source_state(link: &Link) -> Result<RemoveReport> {
    let source = link.source();
    if source.table_columns(RELAY_TABLE).await?.is_none() {
        return Ok(RemoveReport {
            dropped: Vec::new(),
        });
    }
    let d = source.dialect();
    let sql = format!("DROP TABLE {}", d.quote(RELAY_TABLE));
    source
        .run_ddl(&[sql], "remove the reverse relay positions")
        .await?;
    Ok(RemoveReport {
        dropped: vec![format!("table {RELAY_TABLE}")],
    })
}

/// Deletes target changelog rows older than `retention` that every reverse
/// relay (positions in the source) has passed; the number deleted. The
/// reverse relay runs it every minute.
pub async fn prune_target_changelog(link: &Link, retention: Duration) -> Result<u64> {
    let target = link.target();
    if !capture::is_installed(target).await? {
        return Ok(0);
    }
    let now = target.clock_micros().await?;
    let cutoff = now.saturating_sub(i64::try_from(retention.as_micros()).unwrap_or(i64::MAX));
    let mut through = capture::position_before(target, cutoff).await?;
    for (_, p) in store::load_all(link.source()).await? {
        through = through.min(p.low());
    }
    capture::prune(target, through).await
}
