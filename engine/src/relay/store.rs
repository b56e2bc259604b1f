//! Where a relay's position lives: `_tern_relay` in the *target*, one row per
//! relay name. The position is updated in the same transaction as the batch
//! it describes (see [`crate::apply`]), so it never
//! moves past a change that is not committed, and a restarted relay continues
//! from it.

use crate::changelog::Position;
use crate::connector::{Connector, Dialect, Statement, process_clock_micros};
use crate::error::{EngineError, Result};
use crate::value::Value;

/// The relay position table in the target.
pub const RELAY_TABLE: &str = "_tern_relay";

/// Creates the table if it is missing.
pub(crate) async fn ensure(target: &Connector) -> Result<()> {
    let d = target.dialect();
    let text = d.long_text();
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (name VARCHAR(255) NOT NULL PRIMARY KEY, \
         position {text} NOT NULL, updated_at BIGINT NOT NULL)",
        d.quote(RELAY_TABLE)
    );
    target
        .execute_ddl(&sql, "create the relay position table")
        .await
}

/// The persisted position of relay `name`, if it ran before.
pub(crate) async fn load(target: &Connector, name: &str) -> Result<Option<Position>> {
    let key = [("name", Value::Text(name.into()))];
    let context = format!("read the position of relay {name}");
    let rows = target
        .select_where("position", RELAY_TABLE, &key, "", &context)
        .await?;
    match rows.first().and_then(|r| r.first()) {
        Some(Value::Text(p)) => p.parse().map(Some).map_err(|m| {
            EngineError::schema(
                RELAY_TABLE,
                format!("relay {name}: stored position is unreadable: {m}"),
            )
        }),
        _ => Ok(None),
    }
}

/// The persisted position of relay `name`, `None` when it never ran or no
/// relay ever stored a position in this database.
pub(crate) async fn load_if_any(db: &Connector, name: &str) -> Result<Option<Position>> {
    if db.table_columns(RELAY_TABLE).await?.is_none() {
        return Ok(None);
    }
    load(db, name).await
}

/// The positions of every relay that ever ran against this target.
pub(crate) async fn load_all(target: &Connector) -> Result<Vec<(String, Position)>> {
    if target.table_columns(RELAY_TABLE).await?.is_none() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT name, position FROM {}",
        target.dialect().quote(RELAY_TABLE)
    );
    let (_, rows) = target.fetch(&sql, &[], "read the relay positions").await?;
    let mut out = Vec::new();
    for r in rows {
        if let (Some(Value::Text(n)), Some(Value::Text(p))) = (r.first(), r.get(1)) {
            let p = p.parse().map_err(|m| {
                EngineError::schema(RELAY_TABLE, format!("relay {n}: stored position: {m}"))
            })?;
            out.push((n.clone(), p));
        }
    }
    Ok(out)
}

/// Records the starting position of a relay that has none yet.
pub(crate) async fn insert(target: &Connector, name: &str, at: &Position) -> Result<()> {
    let d = target.dialect();
    let t = d.quote(RELAY_TABLE);
    let (p1, p2, p3) = (d.placeholder(1), d.placeholder(2), d.placeholder(3));
    let sql = match d {
        Dialect::MySql => {
            format!("INSERT IGNORE INTO {t} (name, position, updated_at) VALUES (?, ?, ?)")
        }
        _ => format!(
            "INSERT INTO {t} (name, position, updated_at) VALUES ({p1}, {p2}, {p3}) \
             ON CONFLICT (name) DO NOTHING"
        ),
    };
    target
        .execute(
            &sql,
            &[
                Value::Text(name.into()),
                Value::Text(at.to_string()),
                Value::Int(process_clock_micros()),
            ],
            &format!("record the start of relay {name}"),
        )
        .await
        .map(|_| ())
}

/// The statement moving relay `name` to `at`, run in a batch's transaction.
pub(crate) fn save(d: Dialect, name: &str, at: &Position) -> Statement {
    Statement {
        sql: format!(
            "UPDATE {} SET position = {}, updated_at = {} WHERE name = {}",
            d.quote(RELAY_TABLE),
            d.placeholder(1),
            d.placeholder(2),
            d.placeholder(3)
        ),
        params: vec![
            Value::Text(at.to_string()),
            Value::Int(process_clock_micros()),
            Value::Text(name.into()),
        ],
        expect_rows: None,
    }
}

/// Where a relay named `name` goes on from: its position stored in `store_in`
/// (the database it writes), or on its first run `start` (or else the head of
/// `changes`' changelog, the database it reads), stored there first. When two
/// relays of one name start at once, the one stored first wins.
pub(crate) async fn resume_or_start(
    changes: &Connector,
    store_in: &Connector,
    name: &str,
    start: Option<&Position>,
) -> Result<Position> {
    ensure(store_in).await?;
    if let Some(p) = load(store_in, name).await? {
        return Ok(p);
    }
    let p = match start {
        Some(p) => p.clone(),
        None => crate::capture::head_position(changes)
            .await?
            .unwrap_or_default(),
    };
    insert(store_in, name, &p).await?;
    Ok(load(store_in, name).await?.unwrap_or(p))
}
