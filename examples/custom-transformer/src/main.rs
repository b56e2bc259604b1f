//! A team's own `tern`: the shipped program plus two transformers that its
//! specs name (`transformers = ["initials", "redact_secrets"]`). Build it
//! with `cargo build -p tern-example-transformers` and use it exactly like
//! `tern` (`tern-with-transformers bulk-load --spec people.toml`, `serve`,
//! `worker`, …): every command and every worker knows the transformers.

use std::process::ExitCode;

use tern_server::Tern;
use tern_server::engine::{Emitted, Record, Value};

/// Fills the target's `initials` column from the record's first and last
/// names: `Ada Lovelace` → `A.L.`.
fn initials(record: &Record<'_>, out: &mut Emitted<'_>) -> Result<(), String> {
    let initial = |column: &str| match record.get(column) {
        Some(Value::Text(t)) => t.chars().next().map(|c| format!("{c}.")),
        _ => None,
    };
    let text: String = [initial("first_name"), initial("last_name")]
        .into_iter()
        .flatten()
        .collect();
    let row = out
        .first_mut("people")
        .ok_or("the spec's table is not `people`")?;
    row.set("initials", Value::Text(text))
}

/// Replaces a bio that gives a password away: secrets never reach the target.
fn redact_secrets(_: &Record<'_>, out: &mut Emitted<'_>) -> Result<(), String> {
    for row in &mut out.rows {
        if matches!(row.get("bio"), Some(Value::Text(b)) if b.to_lowercase().contains("password")) {
            row.set("bio", Value::Text("[redacted]".into()))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    Tern::new()
        .transformer("initials", initials)
        .transformer("redact_secrets", redact_secrets)
        .run()
}
