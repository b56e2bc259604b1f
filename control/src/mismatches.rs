//! Every mismatched row of a verification run, page by page, for the bucket
//! page. The rows stay with the engine's run in the target database; this
//! reads them from there through the migration's spec.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::store::Store;

/// One field that differs, with both values in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDiffView {
    pub path: String,
    pub source: String,
    pub target: String,
    pub note: Option<String>,
}

/// One mismatched row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MismatchView {
    pub key: String,
    /// `missing`, `extra` or `different`.
    pub kind: String,
    pub diffs: Vec<FieldDiffView>,
    /// The expected row and the target row, every column in full (JSON).
    pub source_row: Option<String>,
    pub target_row: Option<String>,
    pub resolved: bool,
}

impl Store {
    /// Mismatched rows `offset..offset + limit` of engine run `engine_run` of
    /// the migration, in key order.
    pub async fn run_mismatches(
        &self,
        migration_id: i64,
        engine_run: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<MismatchView>> {
        let migration = self.migration(migration_id).await?;
        let spec = self.spec_for(&migration.spec, &migration.name).await?;
        let run = engine_run.to_string();
        let rows = crate::own_runtime::on_own_runtime("reading mismatches", move || async move {
            let target = tern_engine::Connector::connect(&spec.target.url, "target").await?;
            Ok(tern_engine::verify::list_mismatches(
                &target,
                &run,
                offset,
                limit.clamp(1, 500),
                false,
            )
            .await?)
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|m| MismatchView {
                key: m.key_text(),
                kind: m.kind.as_str().to_string(),
                diffs: m
                    .diffs
                    .iter()
                    .map(|d| FieldDiffView {
                        path: d.path.clone(),
                        source: d.source.to_string(),
                        target: d.target.to_string(),
                        note: d.note.clone(),
                    })
                    .collect(),
                source_row: m.source_row.as_ref().map(shown_row),
                target_row: m.target_row.as_ref().map(shown_row),
                resolved: m.resolved,
            })
            .collect())
    }
}

/// A row as a person reads it: one field a line, without Tern's own
/// `_tern_*` columns (the hidden source key, the version), which say
/// nothing about the data.
fn shown_row(row: &serde_json::Value) -> String {
    let mut row = row.clone();
    if let Some(fields) = row.as_object_mut() {
        fields.retain(|name, _| !name.starts_with("_tern_"));
    }
    serde_json::to_string_pretty(&row).unwrap_or_else(|_| row.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_row_hides_terns_own_columns() {
        let row = serde_json::json!({"id": 1, "body": "hi", "_tern_source_key": "7\u{1f}1"});
        let shown = shown_row(&row);
        assert!(shown.contains("\"body\": \"hi\""), "{shown}");
        assert!(!shown.contains("_tern_source_key"), "{shown}");
    }
}
