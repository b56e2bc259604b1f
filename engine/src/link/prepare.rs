//! Making a spec ready to run: describe the sources, compile the mappings,
//! create or check the target tables (and Tern's checkpoint and tombstone
//! tables beside them).

use std::sync::Arc;

use super::{Link, LinkTable};
use crate::apply::groups::SharedRows;
use crate::apply::tombstones;
use crate::checkpoint;
use crate::chunk::SourceQuery;
use crate::connector::{Connector, Dialect, SOURCE_KEY_COLUMN, VERSION_COLUMN};
use crate::error::{EngineError, Result};
use crate::spec::{Spec, TableSpec, Transform};
use crate::transform::{Pipeline, SourceColumn, TableShape, TransformerRegistry};
use crate::value::ColumnType;

/// Describes, compiles and (when `writable`) prepares the target: see
/// [`Link::connect`] and [`Link::inspect`].
pub(super) async fn build(
    spec: Spec,
    source: Connector,
    target: Connector,
    registry: &TransformerRegistry,
    writable: bool,
) -> Result<Link> {
    // 1. Describe every source and compile against provisional shapes.
    let mut described: Vec<(usize, Arc<SourceQuery>)> = Vec::new();
    let mut inferred: Vec<Vec<Option<ColumnType>>> = Vec::new();
    for (i, t) in spec.tables.iter().enumerate() {
        if t.source.is_some() {
            let q = Arc::new(SourceQuery::prepare(&source, t).await?);
            inferred.push(Pipeline::inferred_types(&spec, t, &q.columns)?);
            described.push((i, q));
        } else {
            inferred.push(
                t.columns
                    .iter()
                    .map(|c| c.cast.or_else(|| constant_type(&c.transform)))
                    .collect(),
            );
        }
    }
    let provisional: Vec<Arc<TableShape>> = spec
        .tables
        .iter()
        .zip(&inferred)
        .map(|(t, ty)| Arc::new(TableShape::new(t, ty.clone())))
        .collect();
    for (i, q) in &described {
        Pipeline::compile(
            &spec,
            &spec.tables[*i],
            &q.columns,
            provisional.clone(),
            registry,
        )?;
    }

    // 2. Target tables: create missing ones, check existing ones.
    let mut shapes = provisional;
    if writable {
        shapes = Vec::new();
        for (t, ty) in spec.tables.iter().zip(&inferred) {
            let (types, keeps) = ensure_target_table(&spec, &target, t, ty).await?;
            shapes.push(Arc::new(TableShape::with_source_key_column(
                t, types, keeps,
            )));
        }
        checkpoint::ensure_table(&target).await?;
        tombstones::ensure(&target).await?;
    }

    // 3. Final pipelines, casting to the target's real column types.
    let mut tables = Vec::new();
    for (i, query) in described {
        let t = &spec.tables[i];
        let pipeline = Arc::new(
            Pipeline::compile(&spec, t, &query.columns, shapes.clone(), registry)?
                .with_source(&source),
        );
        let shared = SharedRows::of(t, &query)?.map(Arc::new);
        tables.push(LinkTable {
            spec: t.clone(),
            query,
            pipeline,
            shared,
        });
    }
    Ok(Link {
        spec: Arc::new(spec),
        source,
        target,
        tables,
        writable,
        tracked: tokio::sync::OnceCell::new(),
        reverse: tokio::sync::OnceCell::new(),
    })
}

fn constant_type(t: &Transform) -> Option<ColumnType> {
    match t {
        Transform::Constant(v) => v.column_type(),
        _ => None,
    }
}

/// Creates `t` in the target when missing (its key as primary key, plus the
/// version column, plus the hidden source key column and its index unless
/// the key is a plain copy of the source key) and returns the target's
/// column types and whether the table has the source key column; an
/// existing table must have every spec column and the version column.
async fn ensure_target_table(
    spec: &Spec,
    target: &Connector,
    t: &TableSpec,
    inferred: &[Option<ColumnType>],
) -> Result<(Vec<Option<ColumnType>>, bool)> {
    let d = target.dialect();
    // The key says which record wrote a row: no source key column needed.
    let plain_key = t.key_from_source_key().is_some();
    if let Some(existing) = target.table_columns(&t.name).await? {
        let find = |name: &str| {
            existing
                .iter()
                .find(|c: &&SourceColumn| c.name.eq_ignore_ascii_case(name))
        };
        // A table created before plain-copy keys went without the column
        // keeps it, and Tern keeps filling and using it.
        let keeps = t.source.is_some() && find(SOURCE_KEY_COLUMN).is_some();
        if t.source.is_some() && !keeps && !plain_key {
            let ty = if d == Dialect::MySql {
                "VARCHAR(512)"
            } else {
                "TEXT"
            };
            return Err(EngineError::schema(
                &t.name,
                format!(
                    "the target table has no {SOURCE_KEY_COLUMN} column, with which the relay finds the rows \
                     of a record deleted in the source; add it: ALTER TABLE {q} ADD COLUMN {SOURCE_KEY_COLUMN} {ty}; \
                     CREATE INDEX {idx} ON {q} ({SOURCE_KEY_COLUMN})",
                    q = d.quote(&t.name),
                    idx = d.quote(&source_key_index(&t.name)),
                ),
            ));
        }
        if find(VERSION_COLUMN).is_none() {
            return Err(EngineError::schema(
                &t.name,
                format!(
                    "the target table has no {VERSION_COLUMN} column, which guards newer rows from older copies; \
                     add it: ALTER TABLE {} ADD COLUMN {VERSION_COLUMN} BIGINT NOT NULL DEFAULT 0",
                    d.quote(&t.name)
                ),
            ));
        }
        let types = t
            .columns
            .iter()
            .map(|c| {
                find(&c.name).map(|e| e.ty).ok_or_else(|| {
                    EngineError::schema(
                        &t.name,
                        format!(
                            "the target table has no column {} (spec line {})",
                            c.name, c.line
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok((types, keeps));
    }
    let keeps = t.source.is_some() && !plain_key;
    let mut defs = Vec::new();
    for (c, ty) in t.columns.iter().zip(inferred) {
        let Some(ty) = ty else {
            return Err(spec.error_at(
                c.line,
                &format!("{}.columns.{}", t.field(), c.name),
                "the type of this column cannot be told from the source; give it with `cast = \"…\"` or create the target table yourself",
            ));
        };
        let in_key = t.key.contains(&c.name);
        let not_null = if in_key { " NOT NULL" } else { "" };
        defs.push(format!(
            "{} {}{not_null}",
            d.quote(&c.name),
            target.sql_type(*ty, in_key)
        ));
    }
    if keeps {
        let ty = if d == Dialect::MySql {
            "VARCHAR(512)"
        } else {
            "TEXT"
        };
        defs.push(format!("{} {ty}", d.quote(SOURCE_KEY_COLUMN)));
    }
    defs.push(format!("{} BIGINT NOT NULL", d.quote(VERSION_COLUMN)));
    let key: Vec<String> = t.key.iter().map(|k| d.quote(k)).collect();
    defs.push(format!("PRIMARY KEY ({})", key.join(", ")));
    // MySQL has no CREATE INDEX IF NOT EXISTS: the index is part of the table.
    let inline_index = d == Dialect::MySql && keeps;
    if inline_index {
        defs.push(format!(
            "INDEX {} ({})",
            d.quote(&source_key_index(&t.name)),
            d.quote(SOURCE_KEY_COLUMN)
        ));
    }
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        d.quote(&t.name),
        defs.join(", "),
    );
    target
        .execute_ddl(&sql, &format!("create target table {}", t.name))
        .await?;
    if keeps && !inline_index {
        let sql = format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
            d.quote(&source_key_index(&t.name)),
            d.quote(&t.name),
            d.quote(SOURCE_KEY_COLUMN)
        );
        // Retried like the table: concurrent preparers race on the catalog.
        target
            .execute_ddl(
                &sql,
                &format!("index the source keys of target table {}", t.name),
            )
            .await?;
    }
    tracing::info!(table = %t.name, source_key_column = keeps, "created target table");
    Ok((inferred.to_vec(), keeps))
}

/// The name of the index on a target table's source keys (unqualified; an
/// index lives in its table's schema). At most 60 characters.
pub(crate) fn source_key_index(table: &str) -> String {
    let base = table.rsplit('.').next().unwrap_or(table);
    let name = format!("{base}{SOURCE_KEY_COLUMN}");
    if name.len() <= 60 {
        name
    } else {
        let cut: String = name.chars().take(40).collect();
        format!("{cut}_{:016x}", crate::connector::stable_hash(table))
    }
}
