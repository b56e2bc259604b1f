//! Change capture on the target: the same triggers and changelog as on the
//! source ([`crate::capture`]), installed on the target tables of the
//! reversible tables, each logging the columns its inverse mapping needs to
//! find a change's target key, source key and bucket. Writes Tern makes to
//! the target (bulk load, relay, catch-up, repair) carry the origin mark and
//! are not logged: only the applications' writes to the new store are.

use crate::capture::{self, CapturedTable, InstallReport, RemoveReport};
use crate::error::Result;
use crate::link::Link;

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

/// Removes every capture trigger, function and table from the target (the
/// decommission's step; the source's capture is removed with
/// [`crate::capture::remove`]).
pub async fn remove_capture(link: &Link) -> Result<RemoveReport> {
    capture::remove(link.target()).await
}
