//! What the pages show: plain serializable types, converted on the server from
//! `tern-control`'s domain types (which do not compile to wasm).

use serde::{Deserialize, Serialize};

/// The signed-in user, with what their role allows already decided on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub can_operate: bool,
    pub can_administer: bool,
    pub can_read_audit: bool,
    pub clients: Vec<String>,
}

/// A bucket phase and how many buckets are in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCount {
    pub phase: String,
    pub count: i64,
}

/// One table's accuracy over time: (time ms, accuracy %), oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSeries {
    pub table: String,
    pub points: Vec<(i64, f64)>,
}

/// One migration on the overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationCard {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub status: String,
    pub buckets: i64,
    pub phases: Vec<PhaseCount>,
    pub planned_rows: i64,
    pub rows_copied: i64,
    /// Rows done, pace and ETA per phase.
    pub forecast: Option<ForecastView>,
    /// What blocks the migration, by kind.
    pub blockers: Vec<BlockerGroupView>,
    /// Accuracy over time (program overview only).
    pub accuracy: Vec<(i64, f64)>,
    /// The same, one line per table (program overview only).
    pub accuracy_by_table: Vec<TableSeries>,
    pub running_jobs: i64,
    /// Whether the viewer may open the migration's page (client owners may
    /// not: their card links to the guide).
    pub can_open: bool,
}

/// An audit event as the audit page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub change: String,
    pub reason: String,
}

/// A user as the admin's user list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub clients: Vec<String>,
    pub disabled: bool,
    pub created_at: String,
}

/// Every bucket phase in playbook order, for legends and bars.
pub const PHASES: [&str; 12] = [
    "planned",
    "bulk-loading",
    "loaded",
    "catching-up",
    "caught-up",
    "verifying",
    "verified",
    "reads-switching",
    "switched",
    "done",
    "paused",
    "failed",
];

/// `1234567` → `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(-1234567), "-1,234,567");
    }
}

/// A job as the pages show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub requested: Option<String>,
    pub bucket_idx: Option<i64>,
    pub rows_done: i64,
    pub rows_total: Option<i64>,
    pub rate: Option<f64>,
    pub rate_limit: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub message: String,
    pub attempts: i64,
    pub worker: String,
    pub created_by: String,
    pub updated_at: String,
}

/// A bucket on the migration page's grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketLine {
    pub id: i64,
    pub idx: i64,
    pub table: String,
    pub range: String,
    pub planned_rows: i64,
    pub rows_copied: i64,
    pub phase: String,
    pub phase_since: String,
    pub snapshot_at: String,
    pub loaded_at: String,
    pub dual_write_at: String,
    pub caught_up_at: String,
    pub verified_at: String,
    pub accuracy: Option<f64>,
    pub lag_changes: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub last_error: String,
    pub batch: Option<i64>,
    pub job: Option<JobRow>,
}

/// A migration's settings as the settings form shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsView {
    pub chunk_size: i64,
    pub rate_limit: Option<f64>,
    pub verify_min_accuracy: f64,
    pub schedule_every_hours: Option<f64>,
    pub next_batch_at: String,
}

/// Where a migration stands and when it will be done (see
/// `tern_control::forecast`): rows done never over 100%, the pace of the
/// jobs running now, the ETA of every phase ahead with its range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastView {
    pub done: i64,
    pub of: i64,
    pub percent: f64,
    /// Rows the source grew by since the plan (the total was re-counted).
    pub recounted: Option<i64>,
    pub pace_now: Option<f64>,
    pub stages: Vec<StageView>,
    /// (median, fast, slow) seconds until every bucket is verified.
    pub eta: Option<(f64, f64, f64)>,
    /// Phases with work left that no job has measured yet.
    pub unmeasured: Vec<String>,
}

/// One phase still ahead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageView {
    /// `load`, `catch-up`, `verify`.
    pub name: String,
    pub buckets_left: i64,
    pub work_left: i64,
    /// `rows` or `buckets`.
    pub unit: String,
    pub running: i64,
    pub pace: Option<f64>,
    pub eta: Option<(f64, f64, f64)>,
}

/// Blockers of one kind: how many, and the first few.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockerGroupView {
    /// `stuck bucket`, `gated ramp`, …
    pub kind: String,
    pub count: usize,
    pub first: Vec<BlockerView>,
}

/// One thing that blocks, with where to go about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockerView {
    pub text: String,
    pub href: Option<String>,
}

/// A batch of buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRow {
    pub id: i64,
    pub seq: i64,
    pub planned_rows: i64,
    pub state: String,
    pub started_at: String,
    pub finished_at: String,
    /// (bucket index, phase, rows copied, accuracy) — the batch's checkpoint.
    pub buckets: Vec<(i64, String, i64, Option<f64>)>,
}

/// Everything the migration page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationBoardView {
    /// Whether the viewer may act (engineer or admin); the server checks again.
    pub can_operate: bool,
    pub card: MigrationCard,
    pub created_by: String,
    pub created_at: String,
    /// One page of buckets …
    pub buckets: Vec<BucketLine>,
    /// … out of this many matching the phase filter.
    pub buckets_matching: i64,
    pub offset: i64,
    pub page_size: i64,
    pub jobs: Vec<JobRow>,
    /// (time ms, accuracy %), oldest first.
    pub accuracy: Vec<(i64, f64)>,
    /// Accuracy over time, one line per table, as inline SVG drawn at the
    /// width the page asked for.
    pub accuracy_svg: String,
    pub batches: Vec<BatchRow>,
    pub relay: RelayView,
}

/// The migration's dual-write relay: its ramp and what its job reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayView {
    /// `off`, `25%`, `3 bucket(s)`.
    pub ramp: String,
    pub job_id: Option<i64>,
    pub state: Option<String>,
    pub message: Option<String>,
}

/// The migration's settings and spec, for the settings panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationSettingsView {
    pub id: i64,
    pub status: String,
    pub can_operate: bool,
    pub settings: SettingsView,
    pub spec: String,
}

/// One mismatched row of a verification run, both sides in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MismatchLine {
    pub key: String,
    pub kind: String,
    /// (path, source value, target value, note).
    pub diffs: Vec<(String, String, String, Option<String>)>,
    pub source_row: Option<String>,
    pub target_row: Option<String>,
    pub resolved: bool,
}

/// A verification run as the bucket page lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyRunRow {
    pub id: i64,
    pub kind: String,
    pub engine_run: String,
    pub rows_compared: i64,
    pub matched: i64,
    pub missing: i64,
    pub extra: i64,
    pub different: i64,
    pub accuracy: f64,
    pub tree: String,
    pub finished_at: String,
}

/// Everything the bucket page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketBoardView {
    pub can_operate: bool,
    /// Admins may override a move's missing evidence.
    pub is_admin: bool,
    /// The phases the bucket may move to by hand.
    pub next_phases: Vec<String>,
    pub migration_id: i64,
    pub migration_name: String,
    pub bucket: BucketLine,
    pub jobs: Vec<JobRow>,
    pub runs: Vec<VerifyRunRow>,
    pub history: Vec<AuditRow>,
}

/// `3725.0` seconds → `1h 2m`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "—".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `12345.6` rows/s → `12,346 rows/s`.
pub fn rate(r: f64) -> String {
    format!("{} rows/s", thousands(r.round() as i64))
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(42.0), "42s");
        assert_eq!(duration(125.0), "2m 5s");
        assert_eq!(duration(3725.0), "1h 2m");
        assert_eq!(duration(90_000.0), "1d 1h");
        assert_eq!(duration(f64::NAN), "—");
        assert_eq!(rate(12_345.6), "12,346 rows/s");
    }
}

/// One table's planned buckets, shown before a migration is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TablePlanView {
    pub table: String,
    pub bucket_column: String,
    pub total_rows: i64,
    pub skew: f64,
    /// (index, key range, planned rows)
    pub buckets: Vec<(i64, String, i64)>,
}
