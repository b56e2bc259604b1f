//! The migration spec: which source tables or queries become which target
//! tables, the key, the bucket column, the column mapping, the transformer
//! chain and the deduper. Written in TOML (see `examples/messages.toml`);
//! [`Spec::parse`] reads it and checks everything that can be checked without a
//! database, with errors that name the line and the field. Checks that need the
//! source (does the column exist?) run when a [`crate::Link`] is prepared
//! and name the spec line too.

mod parse;
mod reverse;
mod validate;

#[cfg(test)]
pub(crate) mod fixture;

pub(crate) use reverse::reads;

use uuid::Uuid;

use crate::error::{EngineError, Result};
use crate::value::{ColumnType, Value};

/// Default number of source rows per chunk.
pub const DEFAULT_CHUNK_ROWS: usize = 5_000;
/// Default number of buckets per table.
pub const DEFAULT_BUCKETS: usize = 8;

/// A parsed, statically valid migration spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// How errors name the spec (its file name, or `spec`).
    pub file: String,
    pub source: Endpoint,
    pub target: Endpoint,
    /// Source rows read, transformed and written per chunk (default 5000).
    pub chunk_rows: usize,
    pub tables: Vec<TableSpec>,
    /// When the engines back off by themselves (`[throttle]`): none by default.
    pub throttle: LoadLimits,
}

/// How busy the source and the target may get before the engines of this
/// migration pause (`[throttle]` in the spec). The live site comes first:
/// a bulk load, relay, catch-up or verification that would push a database
/// over these limits waits until it is back under them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadLimits {
    pub source: SideLimits,
    pub target: SideLimits,
    /// How often the databases are asked (default 1000 ms).
    pub check_every_ms: u64,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            source: SideLimits::default(),
            target: SideLimits::default(),
            check_every_ms: 1000,
        }
    }
}

impl LoadLimits {
    /// True when no limit is set: nothing to watch.
    pub fn is_empty(&self) -> bool {
        self.source.is_empty() && self.target.is_empty()
    }
}

/// The limits of one database.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SideLimits {
    /// Statements running at once: MariaDB/MySQL `Threads_running`,
    /// PostgreSQL active client backends (every client's, Tern's included).
    pub active: Option<u64>,
    /// Replication lag in seconds (a replica's delay, or on a primary the
    /// largest replay lag of its replicas).
    pub lag_s: Option<f64>,
}

impl SideLimits {
    pub fn is_empty(&self) -> bool {
        self.active.is_none() && self.lag_s.is_none()
    }
}

/// A database the migration reads or writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `postgres://…`, `mysql://…` (also MariaDB) or `sqlite://…`.
    pub url: String,
}

/// One target table and how it is filled.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// Target table name (may be `schema.table`).
    pub name: String,
    /// Target key columns: the table's primary key, the upsert key.
    pub key: Vec<String>,
    /// How many buckets `plan` cuts the source into (default 8).
    pub buckets: usize,
    /// Where rows come from; `None` for a table that only transformers of
    /// another table fill (e.g. deduplicated shared content).
    pub source: Option<SourceSpec>,
    /// Target columns in declaration order (the version column is implicit).
    pub columns: Vec<ColumnSpec>,
    /// Plug-in transformers run in this order after the built-in mapping.
    pub transformers: Vec<String>,
    /// Collapses rows with the same dedupe key within a chunk.
    pub dedupe: Option<DedupeSpec>,
    /// `[tables.reverse]`: the inverse mapping, new → old, for a table whose
    /// mapping does not invert on its own (see [`crate::reverse`]).
    pub reverse: Option<ReverseSpec>,
    /// Spec line of the `[[tables]]` entry.
    pub line: usize,
}

/// The source of a table: a table or a SELECT producing composite records.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub relation: Relation,
    /// Source columns that identify a source row; rows are read in this order.
    pub key: Vec<String>,
    /// The source column that places a row in a bucket (default: first key column).
    pub bucket: String,
    /// For a query source: which source tables it reads and how a change in
    /// each maps to this source's keys (used by change capture and the relay).
    pub tracks: Vec<Track>,
    pub line: usize,
}

impl SourceSpec {
    /// The columns rows are ordered and paginated by: the bucket column, then
    /// the key (the bucket column once, if it leads the key). The source should
    /// have an index on them.
    pub fn order_columns(&self) -> Vec<String> {
        let mut cols = Vec::with_capacity(self.key.len() + 1);
        if self.key.first() != Some(&self.bucket) {
            cols.push(self.bucket.clone());
        }
        cols.extend(self.key.iter().cloned());
        cols
    }
}

/// A source relation.
#[derive(Debug, Clone, PartialEq)]
pub enum Relation {
    Table(String),
    /// A SELECT; it is wrapped as a derived table, so its output column names
    /// are what `key`, `bucket` and the mapping refer to.
    Query(String),
}

/// How a change in one source table maps to keys of a table's source.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub table: String,
    pub map: TrackMap,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrackMap {
    /// Columns of the changed row that are the source key, in key order.
    Columns(Vec<String>),
    /// A query returning source keys; `:column` placeholders take values from
    /// the changed row.
    Query(String),
}

/// One target column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub transform: Transform,
    /// Cast the value to this type (also the column type when the engine
    /// creates the target table).
    pub cast: Option<ColumnType>,
    pub trim: bool,
    pub lower: bool,
    pub line: usize,
}

/// Where a target column's value comes from (before trim, lower and cast).
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Copy a source column (a rename when the names differ).
    Copy(String),
    Constant(Value),
    /// A JSON object: field name → source column.
    Json(Vec<(String, String)>),
    /// A deterministic UUIDv5 of source fields; see [`crate::transform::uuid5`].
    Uuid5 {
        namespace: Uuid,
        from: Vec<String>,
    },
    /// An expression of the record's columns (see [`crate::expr`]):
    /// conditionals, string building, `uuid5(…)` for custom keys.
    Expr(String),
    /// Filled by a plug-in transformer (NULL until one sets it).
    Slot,
}

/// `[tables.reverse]`: how a target row maps back to a source row, for
/// reverse replication after the source of truth of a bucket is switched.
/// Each entry of `columns` computes a *source* column from the *target*
/// table's columns, with the same forms as the forward mapping (`"column"`,
/// `{ expr = … }`, `{ from = …, cast = … }`, `{ constant = … }`…).
#[derive(Debug, Clone, PartialEq)]
pub struct ReverseSpec {
    /// The source table written; default the table of `source.table`
    /// (required when the source is a query).
    pub table: Option<String>,
    /// The source key of that table; default `source.key`.
    pub key: Option<Vec<String>>,
    /// Source column ← expression of target columns, in declaration order.
    pub columns: Vec<ColumnSpec>,
    pub line: usize,
}

/// Collapses rows that a denormalized source repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupeSpec {
    /// Target columns whose equal values make rows duplicates (default: the key).
    pub key: Vec<String>,
    pub keep: Keep,
    /// For a table with a source: the source columns whose values decide
    /// the dedupe key (the records that share one target row). Declared as
    /// `group = [...]` or traced from the key columns' mappings.
    pub group: Vec<String>,
    pub line: usize,
}

/// Which of the source records sharing a deduplicated target row writes
/// it: the first or the last in the source's read order (bucket column,
/// then source key), in the bulk load, the relay and the catch-up alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    First,
    Last,
}

impl Spec {
    /// Parses and statically validates a spec. `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Spec> {
        let spec = parse::parse(text, file)?;
        validate::validate(&spec)?;
        for t in &spec.tables {
            reverse::validate_reverse(&spec, t)?;
        }
        Ok(spec)
    }

    /// Reads and parses a spec file.
    pub fn from_file(path: &std::path::Path) -> Result<Spec> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::Spec {
            at: path.display().to_string(),
            message: format!("cannot read the spec: {e}"),
        })?;
        let file = path.file_name().map_or_else(
            || path.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        );
        Spec::parse(&text, &file)
    }

    pub fn table(&self, name: &str) -> Result<&TableSpec> {
        self.tables
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| EngineError::Spec {
                at: self.file.clone(),
                message: format!(
                    "no table `{name}` (tables: {})",
                    self.tables
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// Tables that have a source (the ones that are bulk loaded).
    pub fn sourced_tables(&self) -> impl Iterator<Item = &TableSpec> {
        self.tables.iter().filter(|t| t.source.is_some())
    }

    /// An error located at a spec line and field.
    pub fn error_at(&self, line: usize, field: &str, message: impl Into<String>) -> EngineError {
        EngineError::Spec {
            at: format!("{} line {line}, {field}", self.file),
            message: message.into(),
        }
    }
}

impl TableSpec {
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// `tables[name]`, the field prefix errors use.
    pub fn field(&self) -> String {
        format!("tables[{}]", self.name)
    }

    /// Where each target key column (in `key` order) takes its value in the
    /// source key (an index into `source.key`), when the target key is a
    /// plain copy of the whole source key: every key column is `col =
    /// "src"` of a source key column (no trim, lower, cast), together they
    /// are the source key, and no transformer or deduper can change or merge
    /// rows. Then a target row *is* found by its record's source key, and
    /// Tern's hidden `_tern_source_key` column would say nothing: the target
    /// is created without it and rows are found by the target key. `None`
    /// for every other table (UUIDv5 or expression keys, dedupe…).
    pub fn key_from_source_key(&self) -> Option<Vec<usize>> {
        let src = self.source.as_ref()?;
        if !self.transformers.is_empty() || self.dedupe.is_some() || self.key.len() != src.key.len()
        {
            return None;
        }
        let mut from = Vec::with_capacity(self.key.len());
        for k in &self.key {
            let c = self.column(k)?;
            let Transform::Copy(s) = &c.transform else {
                return None;
            };
            if c.trim || c.lower || c.cast.is_some() {
                return None;
            }
            let j = src.key.iter().position(|x| x == s)?;
            if from.contains(&j) {
                return None;
            }
            from.push(j);
        }
        Some(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worked_example_parses() -> Result<()> {
        let spec = Spec::parse(
            include_str!("../../../examples/messages.toml"),
            "messages.toml",
        )?;
        let t = spec.table("mailbox_messages")?;
        assert_eq!(t.source.as_ref().map(|s| s.tracks.len()), Some(2));
        assert_eq!(t.columns.len(), 11);
        Ok(())
    }

    const MINIMAL: &str = "[source]\nurl = \"sqlite://a.db\"\n[target]\nurl = \"sqlite://b.db\"\n\
        [[tables]]\nname = \"t\"\nkey = [\"id\"]\n[tables.source]\ntable = \"t\"\n\
        [tables.columns]\nid = \"id\"\n";

    #[test]
    fn a_key_copied_from_the_source_key_is_told_from_a_transformed_one() -> Result<()> {
        let text = |key: &str, id: &str| {
            format!(
                "[source]\nurl = \"sqlite://a.db\"\n[target]\nurl = \"sqlite://b.db\"\n\
                 [[tables]]\nname = \"t\"\nkey = [{key}]\n\
                 [tables.source]\ntable = \"s\"\nkey = [\"a\", \"b\"]\n\
                 [tables.columns]\nid = {id}\nb = \"b\"\nn = \"n\"\n"
            )
        };
        let plain = Spec::parse(&text("\"b\", \"id\"", "\"a\""), "s.toml")?;
        assert_eq!(plain.tables[0].key_from_source_key(), Some(vec![1, 0]));
        let partial = Spec::parse(&text("\"id\"", "\"a\""), "s.toml")?;
        assert_eq!(partial.tables[0].key_from_source_key(), None);
        let uuid = Spec::parse(
            &text("\"id\", \"b\"", "{ uuid5 = [\"a\"], namespace = \"t\" }"),
            "s.toml",
        )?;
        assert_eq!(uuid.tables[0].key_from_source_key(), None);
        Ok(())
    }

    #[test]
    fn throttle_limits_are_read_and_checked() -> Result<()> {
        assert!(Spec::parse(MINIMAL, "s.toml")?.throttle.is_empty());
        let text = format!("[throttle]\nsource_active = 25\ntarget_lag_s = 10\n{MINIMAL}");
        let limits = Spec::parse(&text, "s.toml")?.throttle;
        assert_eq!(limits.source.active, Some(25));
        assert_eq!(limits.target.lag_s, Some(10.0));
        assert_eq!(limits.check_every_ms, 1000);

        let bad = format!("[throttle]\ntarget_active = 0\n{MINIMAL}");
        let err = Spec::parse(&bad, "s.toml")
            .expect_err("0 statements")
            .to_string();
        assert!(err.contains("line 2, throttle.target_active"), "{err}");
        assert!(err.contains("at least 1"), "{err}");
        let unknown = format!("[throttle]\nthreads = 3\n{MINIMAL}");
        assert!(Spec::parse(&unknown, "s.toml").is_err());
        Ok(())
    }
}
