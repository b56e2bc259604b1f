//! The drain a running Tern uses: waits until the relay that carries the old
//! primary's writes has applied everything its source's changelog held when
//! the drain began. The relay keeps its position in the target, in the same
//! transaction as the batch it describes, so a position past the head means
//! those changes are committed in the other store.

use std::time::Duration;

use async_trait::async_trait;
use tern_engine::changelog::CHANGELOG_TABLE;
use tern_engine::relay::RELAY_TABLE;
use tern_engine::{Connector, Link, Position, Value};

use crate::error::{ControlError, Result};
use crate::migrations::Migration;
use crate::runners::RunnerContext;
use crate::store::Store;
use crate::switch::{Direction, Drain};

/// Drains the migration's relays through their source's changelog head.
pub struct RelayDrain {
    pub store: Store,
    pub ctx: RunnerContext,
}

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Int(i)) => *i,
        Some(Value::Decimal(d)) => i64::try_from(*d).unwrap_or(0),
        Some(Value::Text(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// The highest sequence number in a changelog (0 when empty).
async fn head(source: &Connector) -> Result<i64> {
    let sql = format!(
        "SELECT MAX(seq) FROM {}",
        source.dialect().quote(CHANGELOG_TABLE)
    );
    let (_, rows) = source
        .fetch(&sql, &[], "read the changelog head for a switch")
        .await?;
    Ok(int(rows.first().and_then(|r| r.first())))
}

/// The stored position of relay `name`.
async fn position(target: &Connector, name: &str) -> Result<Option<Position>> {
    let d = target.dialect();
    let sql = format!(
        "SELECT position FROM {} WHERE name = {}",
        d.quote(RELAY_TABLE),
        d.placeholder(1)
    );
    let (_, rows) = target
        .fetch(
            &sql,
            &[Value::Text(name.into())],
            "read the relay position for a switch",
        )
        .await?;
    Ok(match rows.first().and_then(|r| r.first()) {
        Some(Value::Text(p)) => p.parse().ok(),
        _ => None,
    })
}

/// Waits until relay `name`, reading `source`'s changelog and keeping its
/// position in `target`, has seen every change up to `source`'s head now.
pub async fn drain_through_head(
    source: &Connector,
    target: &Connector,
    name: &str,
    timeout: Duration,
) -> Result<String> {
    let head = head(source).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let at = position(target, name).await?;
        if let Some(p) = &at
            && p.low() >= head
        {
            return Ok(format!(
                "relay {name} drained through change {head} (at {p})"
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ControlError::Conflict(format!(
                "relay {name} is at {} but the changelog head is {head} after {} ms: check that the relay runs and is not failing",
                at.map_or_else(|| "no position".to_string(), |p| p.to_string()),
                timeout.as_millis()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[async_trait]
impl Drain for RelayDrain {
    async fn drain(
        &self,
        migration: &Migration,
        direction: Direction,
        _tables: &[String],
        timeout: Duration,
    ) -> Result<String> {
        let spec = self
            .store
            .spec_for(&migration.spec, &migration.name)
            .await?;
        let link = Link::inspect(spec, &self.ctx.registry).await?;
        match direction {
            Direction::Switch => {
                drain_through_head(
                    link.source(),
                    link.target(),
                    &format!("migration-{}", migration.id),
                    timeout,
                )
                .await
            }
            Direction::Rollback => Err(ControlError::Conflict(
                "the reverse relay's drain is not available in this build: roll back after upgrading Tern".into(),
            )),
        }
    }
}
