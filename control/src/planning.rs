//! From a spec to a migration: parse and check the spec (the engine's errors
//! name the line and field), connect read-only to its databases, and cut each
//! source table into buckets of about equal row count — shown before anything
//! is copied, then stored with the migration.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tern_engine::{Link, Spec, TransformerRegistry, Value};

use crate::buckets::BucketPlan;
use crate::error::Result;
use crate::migrations::{Migration, NewMigration};
use crate::store::Store;
use crate::users::Actor;

/// One target table's planned buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TablePlan {
    pub table: String,
    pub bucket_column: String,
    pub total_rows: i64,
    /// Largest bucket over the mean (1.0 = perfectly even).
    pub skew: f64,
    pub buckets: Vec<BucketPlan>,
}

/// Checks `spec` (TOML) without touching any database; a spec whose source
/// or target is Tern's own control store is refused.
pub fn parse_spec(text: &str, name: &str) -> Result<Spec> {
    let spec = Spec::parse(text, &format!("{name}.toml"))?;
    crate::own_store::refuse(&spec.source.url, &format!("{name}.toml: source"))?;
    crate::own_store::refuse(&spec.target.url, &format!("{name}.toml: target"))?;
    Ok(spec)
}

/// Plans every sourced table of the spec, reading the source only. Bucket
/// indexes run across tables in spec order.
pub async fn plan_spec(
    text: &str,
    name: &str,
    registry: &TransformerRegistry,
) -> Result<Vec<TablePlan>> {
    let spec = parse_spec(text, name)?;
    let link = Link::inspect(spec, registry).await?;
    let mut plans = Vec::new();
    let mut next_idx = 0i64;
    for table in link.tables() {
        let plan = link.plan(table, None).await?;
        let buckets = plan
            .buckets
            .iter()
            .map(|b| {
                let p = BucketPlan {
                    idx: next_idx,
                    // Exact text (not the quoted, shortened preview): the
                    // engine reads these bounds back when it adopts the plan.
                    lo: b.range.lo.as_ref().map(Value::canonical_text),
                    hi: b.range.hi.as_ref().map(Value::canonical_text),
                    planned_rows: i64::try_from(b.rows).unwrap_or(i64::MAX),
                    table_name: Some(plan.table.clone()),
                    table_bucket: Some(b.index as i64),
                };
                next_idx += 1;
                p
            })
            .collect();
        plans.push(TablePlan {
            table: plan.table.clone(),
            bucket_column: plan.bucket_column.clone(),
            total_rows: i64::try_from(plan.total_rows()).unwrap_or(i64::MAX),
            skew: plan.skew(),
            buckets,
        });
    }
    Ok(plans)
}

impl Store {
    /// Creates a migration from a spec: checks it, plans its buckets (source
    /// read only), stores both (audited).
    /// Plans a spec whose connections are named, resolving them first.
    pub async fn preview_spec(
        &self,
        spec: &str,
        name: &str,
        registry: &TransformerRegistry,
    ) -> Result<Vec<TablePlan>> {
        plan_spec(&self.resolve_spec_text(spec).await?, name, registry).await
    }

    pub async fn create_migration_from_spec(
        &self,
        actor: &Actor,
        name: &str,
        description: &str,
        spec: &str,
        registry: &Arc<TransformerRegistry>,
    ) -> Result<Migration> {
        actor.require_operate("creating a migration")?;
        Store::refuse_spec_passwords(spec, name)?;
        let plans = self.preview_spec(spec, name, registry).await?;
        self.create_migration(
            actor,
            NewMigration {
                name: name.to_string(),
                description: description.to_string(),
                spec: spec.to_string(),
                buckets: plans.into_iter().flat_map(|p| p.buckets).collect(),
            },
        )
        .await
    }
}
