//! Reverse replication: keeping the old store complete after the source of
//! truth of a bucket is switched to the new store, so that the bucket can be
//! switched back at any time before decommission (InMail kept "the
//! dual-write to Oracle and Espresso … throughout the migration"; Vitess
//! creates a reverse workflow at SwitchTraffic for the same reason).
//!
//! # The API the switch calls
//!
//! | step | call |
//! |---|---|
//! | can a table be switched, and if not why | [`reversibility`] (spec only) or [`check`] (against the databases) |
//! | before the first switch: capture on the target | [`install_capture`] (again is harmless); [`remove_capture`] at decommission |
//! | the set of switched buckets, changed live | [`SwitchedBuckets`] sent through a `tokio::sync::watch` channel to both relays |
//! | the forward relay skips switched buckets | [`crate::RelayOptions::switched`] (the mirror option) |
//! | the reverse relay (new → old, switched buckets only) | [`run_reverse_relay`] with [`ReverseOptions`] |
//! | where each changelog ends now | [`head`]`(link, Side::Source / Side::Target)` |
//! | how far a relay has applied (persisted) | [`applied_through`]`(link, Direction, name)` |
//! | wait until a relay has applied through a position | [`drain`]`(link, Direction, name, &position, timeout)` → [`Drain`] |
//!
//! A switch of buckets B, as the control plane runs it: hold writes to B's
//! keys → `p = head(Source)` → `drain(Forward, "default", &p, timeout)` →
//! add B to the switched set (the forward relay stops applying B, the
//! reverse relay starts) → release, writes to B now go to the new store. A
//! rollback is the mirror image: hold → `p = head(Target)` →
//! `drain(Reverse, "reverse", &p, timeout)` → remove B from the set →
//! release. The reverse relay's first start position should be the target's
//! head taken before the first switch ([`ReverseOptions::start`]); with
//! none it starts at the head when it first runs, which is the same thing
//! when it is started before any bucket is switched.
//!
//! # How a mapping inverts
//!
//! Copies, renames and casts invert on their own ([`Reversibility::Derived`]).
//! UUIDv5 keys, JSON documents, deduplicated rows, constants, expressions,
//! plug-in transformers and query sources do not: such a table needs a
//! `[tables.reverse]` section ([`Reversibility::Declared`]) giving, for the
//! source table to write, each source column as a value computed from the
//! target's columns, with the same forms as the forward mapping:
//!
//! ```toml
//! [tables.reverse]            # optional: table (default source.table), key (default source.key)
//! [tables.reverse.columns]
//! member_id = "member"                                  # a target column
//! name      = { expr = "doc.name" }                     # an expression of target columns
//! age       = { from = "age_text", cast = "int" }
//! ```
//!
//! Without one, the table is [`Reversibility::No`] with a sentence saying
//! why; the reverse relay refuses to run with such a table switched
//! ([`crate::EngineError::NotReversible`]).
//!
//! # No ping-pong
//!
//! Every transaction Tern's writer runs opens with an origin mark
//! ([`crate::connector::origin`]: PostgreSQL `tern.origin`, MariaDB
//! `@tern_origin`, SQLite a row of `_tern_origin` that is never committed),
//! and the capture triggers on both stores log nothing while it is set. So a
//! write the forward relay makes to the target is never captured for the
//! reverse relay, nor a reverse write to the source for the forward one. The
//! bucket filters add a second guard: the forward relay (with `switched`)
//! skips switched buckets, the reverse relay applies switched buckets only.
//!
//! # What a target row needs
//!
//! Applications writing to the new store after a switch write the target
//! tables as Tern created them: `_tern_version` is `NOT NULL` (write 0, or
//! give the column a default), `_tern_source_key` may stay NULL.

pub(crate) mod apply;
mod capture;
pub(crate) mod compiled;
mod drain;
pub(crate) mod keys;
mod mapping;
mod relay;
mod switched;

pub use apply::ReverseApplyReport;
pub use capture::{TargetCapture, install_capture, remove_capture};
pub use drain::{Direction, Drain, applied_through, covers, drain};
pub use mapping::{InverseMapping, Reversibility, reversibility, table_reversibility};
pub use relay::{DEFAULT_REVERSE_RELAY, ReverseOptions, ReverseSummary, run_reverse_relay};
pub use switched::SwitchedBuckets;

use crate::changelog::Position;
use crate::error::Result;
use crate::link::{Link, Side};

/// The changelog position now on `side` (with the changes handed out but not
/// committed as gaps), `None` when capture is not installed there. Take it
/// once writes are held, then [`drain`] to it.
pub async fn head(link: &Link, side: Side) -> Result<Option<Position>> {
    crate::capture::head_position(link.connector(side)).await
}

/// Whether each table of the link can be replicated back, checked against
/// both databases (the columns the inverse reads and writes exist): `None`
/// when it can, or the reason it cannot. In spec order.
pub async fn check(link: &Link) -> Result<Vec<(String, Option<String>)>> {
    Ok(link
        .reverse_entries()
        .await?
        .iter()
        .map(|(t, e)| (t.clone(), e.as_ref().err().cloned()))
        .collect())
}
