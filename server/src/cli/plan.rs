//! `tern plan --spec S`: the buckets each table splits into and their sizes,
//! before anything is copied. Touches nothing in the target.

use std::path::PathBuf;

use anyhow::Context;
use tern_engine::{Link, Plan, TransformerRegistry};

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The migration spec (TOML).
    #[arg(long)]
    pub spec: PathBuf,
    /// Only this target table (default: every table with a source).
    #[arg(long)]
    pub table: Option<String>,
    /// Number of buckets (default: the spec's `buckets`, else 8).
    #[arg(long)]
    pub buckets: Option<usize>,
}

pub async fn run(args: PlanArgs) -> anyhow::Result<()> {
    let spec = crate::cli::load_spec(&args.spec)?;
    let link = Link::inspect(spec, &TransformerRegistry::new()).await?;
    let tables: Vec<String> = match &args.table {
        Some(t) => vec![t.clone()],
        None => link.tables().iter().map(|s| s.to_string()).collect(),
    };
    for table in tables {
        let plan = link
            .plan(&table, args.buckets)
            .await
            .with_context(|| format!("planning {table}"))?;
        print!("{}", render(&plan));
        if let Some(stored) = link.stored_plan(&table).await? {
            println!(
                "  note: the target holds a stored plan of {} buckets for {table}; bulk-load resumes it (--replan starts over)",
                stored.buckets.len()
            );
        }
    }
    Ok(())
}

/// The plan as a table for people.
pub fn render(plan: &Plan) -> String {
    let mut out = format!(
        "{}: {} rows in {} buckets by {} (largest bucket {:.2}x the mean)\n",
        plan.table,
        plan.total_rows(),
        plan.buckets.len(),
        plan.bucket_column,
        plan.skew()
    );
    out.push_str(&format!(
        "  {:>6}  {:<40}  {:>12}\n",
        "bucket", "range", "rows"
    ));
    for b in &plan.buckets {
        out.push_str(&format!(
            "  {:>6}  {:<40}  {:>12}\n",
            b.index,
            b.range.to_string(),
            b.rows
        ));
    }
    out
}
