//! The link: the engine's handle on one migration, a spec joined to its two
//! databases. Every engine (bulk load, catch-up, relay, verification,
//! repair) takes a `&Link` and asks it for what it needs; none opens its own
//! connections or describes tables again.
//!
//! Why one handle: the spec alone says nothing runnable. Its source queries
//! must be described against the source, its mappings compiled against the
//! target's real column types, the target tables and Tern's own tables there
//! created or checked. That work is done once, here ([`Link::connect`]), and
//! everything derived from it (described queries, compiled pipelines, the
//! stored plan and checkpoints) is read through the link, so two engines of
//! the same migration can never disagree about a table's shape.
//!
//! A link is made one of two ways: [`Link::connect`] prepares the target and
//! can write; [`Link::inspect`] touches nothing in the target and can only
//! plan and read (the control plane plans with it before anything runs).
//!
//! The two databases are named by [`Side`]. Today data flows source → target;
//! reverse replication (the old store kept complete after a switch) will read
//! the target's changelog and write the source, so code that only needs "a
//! database of this link" asks for [`Link::connector`] by side.

mod prepare;

use std::collections::HashMap;
use std::sync::Arc;

use crate::apply::groups::SharedRows;
use crate::buckets::{self, Bucket, Plan};
use crate::checkpoint::{self, Checkpoint};
use crate::chunk::{ChunkReader, KeyRange, SourceQuery, Window};
use crate::connector::Connector;
use crate::error::{EngineError, Result};
use crate::reverse::compiled::ReverseTable;
use crate::spec::{Spec, TableSpec};
use crate::transform::{Pipeline, SourceColumn, TransformerRegistry};
use crate::value::Value;

/// One of the two databases of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The old store, where data comes from.
    Source,
    /// The new store, where data goes.
    Target,
}

impl Side {
    /// `source` or `target`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }

    /// The other database.
    pub fn other(self) -> Side {
        match self {
            Side::Source => Side::Target,
            Side::Target => Side::Source,
        }
    }
}

/// A spec table with a source, made ready to read: its described source
/// query and its compiled transform.
pub(crate) struct LinkTable {
    pub spec: TableSpec,
    pub query: Arc<SourceQuery>,
    pub pipeline: Arc<Pipeline>,
    /// For a deduplicated table: how to find the records sharing a row.
    pub shared: Option<Arc<SharedRows>>,
}

/// A spec made ready to run: source described, mapping compiled, target
/// tables and the checkpoint table present. One per migration.
pub struct Link {
    spec: Arc<Spec>,
    source: Connector,
    target: Connector,
    tables: Vec<LinkTable>,
    /// False for a link made by [`Link::inspect`], which touched nothing in
    /// the target and cannot write.
    writable: bool,
    /// Columns of the source tables named in `tracks`, read once.
    tracked: tokio::sync::OnceCell<HashMap<String, Vec<SourceColumn>>>,
    /// Every sourced table's inverse mapping, compiled on first use, or the
    /// reason it has none.
    reverse: tokio::sync::OnceCell<Vec<(String, ReverseEntry)>>,
}

/// A table's compiled inverse mapping, or why it has none.
pub(crate) type ReverseEntry = std::result::Result<Arc<ReverseTable>, String>;

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("source", &self.source.url())
            .field("target", &self.target.url())
            .field(
                "tables",
                &self.tables.iter().map(|t| &t.spec.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Link {
    /// Connects to the spec's source and target and prepares the target.
    pub async fn connect(spec: Spec, registry: &TransformerRegistry) -> Result<Link> {
        let source = Connector::connect(&spec.source.url, "source").await?;
        let target = Connector::connect(&spec.target.url, "target").await?;
        Link::prepare(spec, source, target, registry).await
    }

    /// Prepares a link on existing connectors. Everything the spec says is
    /// checked against the source before anything is created in the target:
    /// an unknown column or transformer leaves the target untouched.
    pub async fn prepare(
        spec: Spec,
        source: Connector,
        target: Connector,
        registry: &TransformerRegistry,
    ) -> Result<Link> {
        prepare::build(spec, source, target, registry, true).await
    }

    /// Connects and checks the spec against the source without creating or
    /// changing anything in the target: for planning. The link it gives can
    /// plan and read, not write.
    pub async fn inspect(spec: Spec, registry: &TransformerRegistry) -> Result<Link> {
        let source = Connector::connect(&spec.source.url, "source").await?;
        let target = Connector::connect(&spec.target.url, "target").await?;
        prepare::build(spec, source, target, registry, false).await
    }

    /// Refuses to go on when the link was made for inspection only.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(EngineError::Spec {
                at: self.spec.file.clone(),
                message: "this link was made for inspection and cannot write; use Link::connect"
                    .into(),
            })
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn source(&self) -> &Connector {
        &self.source
    }

    pub fn target(&self) -> &Connector {
        &self.target
    }

    /// The database on `side`.
    pub fn connector(&self, side: Side) -> &Connector {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }

    /// Names of the tables that have a source, in spec order.
    pub fn tables(&self) -> Vec<&str> {
        self.tables.iter().map(|t| t.spec.name.as_str()).collect()
    }

    /// A table with a source, or an error listing those there are.
    pub(crate) fn table(&self, name: &str) -> Result<&LinkTable> {
        self.tables
            .iter()
            .find(|t| t.spec.name == name)
            .ok_or_else(|| EngineError::Spec {
                at: self.spec.file.clone(),
                message: format!(
                    "no table `{name}` with a source (loadable: {})",
                    self.tables().join(", ")
                ),
            })
    }

    /// The described source query of a table (verification reads by it).
    pub(crate) fn source_query(&self, table: &str) -> Result<Arc<SourceQuery>> {
        Ok(self.table(table)?.query.clone())
    }

    /// The compiled transform of a table, to run on chunks outside a load.
    pub fn pipeline(&self, table: &str) -> Result<Arc<Pipeline>> {
        Ok(self.table(table)?.pipeline.clone())
    }

    /// The columns of a source table named in some table's `tracks`
    /// (described once, then cached); empty for a table no track names.
    pub(crate) async fn tracked_columns(&self, table: &str) -> Result<Vec<SourceColumn>> {
        let all = self
            .tracked
            .get_or_try_init(|| async {
                let mut m = HashMap::new();
                for t in self.spec.sourced_tables() {
                    for tr in t.source.iter().flat_map(|s| &s.tracks) {
                        if !m.contains_key(&tr.table)
                            && let Some(cols) = self.source.table_columns(&tr.table).await?
                        {
                            m.insert(tr.table.clone(), cols);
                        }
                    }
                }
                Ok::<_, EngineError>(m)
            })
            .await?;
        Ok(all.get(table).cloned().unwrap_or_default())
    }

    /// Every table with a source and its compiled inverse mapping (new →
    /// old) or the reason it has none, in spec order; compiled once.
    pub(crate) async fn reverse_entries(&self) -> Result<&[(String, ReverseEntry)]> {
        let all = self
            .reverse
            .get_or_try_init(|| async {
                let mut out = Vec::new();
                for t in &self.tables {
                    let entry = ReverseTable::compile(&t.spec, &self.source, &self.target)
                        .await?
                        .map(Arc::new);
                    out.push((t.spec.name.clone(), entry));
                }
                Ok::<_, EngineError>(out)
            })
            .await?;
        Ok(all.as_slice())
    }

    /// A table's compiled inverse mapping, or an error that says why the
    /// table cannot be written back to the source.
    pub(crate) async fn reverse_table(&self, name: &str) -> Result<Arc<ReverseTable>> {
        self.table(name)?;
        match self
            .reverse_entries()
            .await?
            .iter()
            .find(|(t, _)| t == name)
        {
            Some((_, Ok(r))) => Ok(r.clone()),
            Some((_, Err(why))) => Err(EngineError::NotReversible {
                table: name.to_string(),
                reason: why.clone(),
            }),
            None => Err(EngineError::NotReversible {
                table: name.to_string(),
                reason: "it has no source".into(),
            }),
        }
    }

    /// A key-ordered chunk reader over a range of a table's source.
    pub fn chunk_reader(
        &self,
        table: &str,
        range: KeyRange,
        after: Option<Vec<Value>>,
    ) -> Result<ChunkReader> {
        let t = self.table(table)?;
        Ok(ChunkReader::new(
            self.source.clone(),
            t.query.clone(),
            range,
            after,
            self.spec.chunk_rows,
            0,
        ))
    }

    /// A reader of a bucket's rows whose `window.column` is in the window,
    /// for a window catch-up. The window's bounds are cast to the column's type.
    pub fn window_reader(
        &self,
        bucket: &Bucket,
        window: &Window,
        chunk_rows: usize,
    ) -> Result<ChunkReader> {
        let t = self.table(&bucket.table)?;
        let Some(col) = t.query.columns.iter().find(|c| c.name == window.column) else {
            return Err(EngineError::schema(
                &bucket.table,
                format!(
                    "the source has no column {} to take the catch-up window from (its columns: {})",
                    window.column,
                    SourceColumn::list(&t.query.columns)
                ),
            ));
        };
        let cast = |v: &Value| match col.ty {
            Some(ty) => v.clone().cast(ty).map_err(|m| {
                EngineError::schema(
                    &bucket.table,
                    format!("catch-up window on {}: {m}", col.name),
                )
            }),
            None => Ok(v.clone()),
        };
        Ok(ChunkReader::new(
            self.source.clone(),
            t.query.clone(),
            bucket.range.clone(),
            None,
            chunk_rows,
            bucket.index,
        )
        .with_window(&window.column, cast(&window.from)?, cast(&window.to)?))
    }

    /// Plans a table's buckets from the source as it is now (nothing is stored).
    pub async fn plan(&self, table: &str, buckets: Option<usize>) -> Result<Plan> {
        let t = self.table(table)?;
        buckets::plan(&self.source, &t.query, buckets.unwrap_or(t.spec.buckets)).await
    }

    /// The plan stored in the target by an earlier load, if any.
    pub async fn stored_plan(&self, table: &str) -> Result<Option<Plan>> {
        let t = self.table(table)?;
        checkpoint::load_plan(&self.target, table, &t.query.bucket).await
    }

    /// The stored plan, or a fresh one that is stored before anything is
    /// copied, so that a restarted load keeps its bucket ranges.
    pub async fn plan_or_resume(&self, table: &str, buckets: Option<usize>) -> Result<Plan> {
        self.check_writable()?;
        if let Some(p) = self.stored_plan(table).await? {
            return Ok(p);
        }
        let plan = self.plan(table, buckets).await?;
        match checkpoint::store_plan(&self.target, &plan).await {
            Ok(()) => Ok(plan),
            // Another process stored its plan first: every process must copy
            // by the same plan, so use the stored one.
            Err(e) => match self.stored_plan(table).await? {
                Some(stored) => Ok(stored),
                None => Err(e),
            },
        }
    }

    /// The stored plan, or else `planned` — the plan a control plane made
    /// when the migration was created, bounds as text — stored before
    /// anything is copied. There is one plan: a load never plans again on
    /// its own, so the buckets a user sees are the ones copied.
    pub async fn adopt_plan(
        &self,
        table: &str,
        planned: &[buckets::PlannedBucket],
    ) -> Result<Plan> {
        self.check_writable()?;
        if let Some(p) = self.stored_plan(table).await? {
            return Ok(p);
        }
        let t = self.table(table)?;
        let ty = t
            .query
            .columns
            .iter()
            .find(|c| c.name == t.query.bucket)
            .and_then(|c| c.ty);
        let plan = Plan::from_planned(table, &t.query.bucket, ty, planned)?;
        match checkpoint::store_plan(&self.target, &plan).await {
            Ok(()) => Ok(plan),
            // Another process stored the same plan first.
            Err(e) => match self.stored_plan(table).await? {
                Some(stored) => Ok(stored),
                None => Err(e),
            },
        }
    }

    /// Every table's stored plan (tables without one are left out), for a
    /// ramp by buckets.
    pub async fn stored_plans(&self) -> Result<HashMap<String, Plan>> {
        let mut plans = HashMap::new();
        for t in self.tables() {
            if let Some(p) = self.stored_plan(t).await? {
                plans.insert(t.to_string(), p);
            }
        }
        Ok(plans)
    }

    /// Checkpoints of a table's buckets.
    pub async fn checkpoints(&self, table: &str) -> Result<Vec<Checkpoint>> {
        checkpoint::load_all(&self.target, table).await
    }

    /// Checkpoints of every table's buckets (retention and pruning look at
    /// every bucket still waiting for its catch-up).
    pub async fn all_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        checkpoint::load_every_table(&self.target, &self.tables()).await
    }

    /// Forgets a table's plan and checkpoints; the next load starts over.
    pub async fn forget(&self, table: &str) -> Result<u64> {
        checkpoint::forget(&self.target, table).await
    }
}
