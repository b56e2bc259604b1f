//! `tern plan --spec S`: the buckets each table splits into and their sizes,
//! before anything is copied. Touches nothing in the target.

use anyhow::Context;
use tern_engine::{Link, Plan};

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: super::SpecTables,
    /// Number of buckets (default: the spec's `buckets`, else 8).
    #[arg(long)]
    pub buckets: Option<usize>,
}

pub async fn run(args: PlanArgs) -> anyhow::Result<()> {
    let link = Link::inspect(args.target.load()?, &crate::transformers()).await?;
    let tables = args.target.tables(&link);
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
