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

/// One migration on the overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationCard {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub status: String,
    pub buckets: i64,
    pub phases: Vec<PhaseCount>,
    pub planned_rows: i64,
    pub rows_copied: i64,
}

/// A bucket row on the migration page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRow {
    pub idx: i64,
    pub lo: String,
    pub hi: String,
    pub planned_rows: i64,
    pub rows_copied: i64,
    pub phase: String,
    pub updated_at: String,
}

/// The migration page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationDetail {
    pub card: MigrationCard,
    pub created_by: String,
    pub created_at: String,
    pub spec: String,
    pub buckets: Vec<BucketRow>,
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
