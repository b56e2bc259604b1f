//! Reverse replication against real databases: a table loaded, change
//! capture on both stores, half the buckets switched; an application writes
//! the source for keys of unswitched buckets and the target for keys of
//! switched ones, at the same time, while the forward relay (mirror option:
//! switched buckets skipped) and the reverse relay run. At the end both
//! stores hold the same rows, and each changelog holds exactly the
//! application's own writes to its store: no write a relay made was
//! captured for the other direction (no ping-pong). Also: a table whose
//! mapping does not invert is refused with its reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tern_engine::reverse::{self, Direction, Drain, SwitchedBuckets};
use tern_engine::{
    EngineError, Link, Plan, RelayOptions, RelayRamp, RelaySummary, ReverseOptions, ReverseSummary,
    Reversibility, RunControl, Side as EngineSide, Spec, TransformerRegistry, Value, capture,
    run_relay, run_reverse_relay,
};
use tern_testkit::{DbKind, TestDb};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::capture::schema_dump;
use crate::support::{Side, connect_captured, load_table, spec_text};

pub const ROWS: i64 = 400;
pub const MEMBERS: i64 = 40;

/// `items` → `items`: a copy, a rename (member_id → member) and a cast
/// (n INT → TEXT); all of it inverts on its own.
pub const SPEC: &str = "chunk_rows = 100\n[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 4\n\
     [tables.source]\ntable = \"items\"\nbucket = \"member_id\"\n\
     [tables.columns]\nid = \"id\"\nmember = \"member_id\"\nbody = \"body\"\n\
     n = { from = \"n\", cast = \"text\" }\n";

pub async fn create_items(side: &Side, kind: DbKind) -> anyhow::Result<()> {
    side.exec(match kind {
        DbKind::Sqlite => {
            "CREATE TABLE items (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL, \
             body TEXT NOT NULL, n INTEGER NOT NULL)"
        }
        _ => {
            "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, \
             body VARCHAR(200) NOT NULL, n BIGINT NOT NULL)"
        }
    })
    .await?;
    let mut values = Vec::new();
    for id in 1..=ROWS {
        values.push(format!("({id}, {}, 'body {id}', {id})", id % MEMBERS));
    }
    side.exec(&format!("INSERT INTO items VALUES {}", values.join(", ")))
        .await
}

/// `id → "member|body|n"` of a store (the target's columns renamed back).
pub async fn rows(
    side: &Side,
    kind: DbKind,
    member: &str,
) -> anyhow::Result<BTreeMap<i64, String>> {
    let sql = match kind {
        DbKind::MariaDb => {
            format!("SELECT CONCAT(id, '|', {member}, '|', body, '|', n) FROM items")
        }
        _ => format!(
            "SELECT CAST(id AS TEXT) || '|' || CAST({member} AS TEXT) || '|' || body || '|' || CAST(n AS TEXT) FROM items"
        ),
    };
    let mut out = BTreeMap::new();
    for line in side.strings(&sql).await? {
        let (id, rest) = line.split_once('|').context("a row")?;
        out.insert(id.parse()?, rest.to_string());
    }
    Ok(out)
}

/// Asserts both stores hold the same rows (as [`rows`] reads them).
pub fn assert_same_rows(old: &BTreeMap<i64, String>, new: &BTreeMap<i64, String>) {
    let diffs: Vec<String> = old
        .iter()
        .filter(|(id, v)| new.get(id) != Some(v))
        .map(|(id, v)| format!("{id}: old {v} new {:?}", new.get(id)))
        .chain(
            new.keys()
                .filter(|id| !old.contains_key(id))
                .map(|id| format!("{id}: only in the new store")),
        )
        .collect();
    assert!(
        diffs.is_empty(),
        "{} differences: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(20)]
    );
}

/// Drains the forward and the reverse relay to their changelog's head, as a
/// switch drains them (a minute at most each).
pub async fn drain_both(link: &Link) -> anyhow::Result<()> {
    for (direction, side, name) in [
        (Direction::Forward, EngineSide::Source, "default"),
        (Direction::Reverse, EngineSide::Target, "reverse"),
    ] {
        let head = reverse::head(link, side)
            .await?
            .context("capture installed")?;
        let drained = reverse::drain(link, direction, name, &head, Duration::from_secs(60)).await?;
        assert!(
            matches!(drained, Drain::Reached { .. }),
            "{direction:?} did not drain: {drained:?}"
        );
    }
    Ok(())
}

/// The forward and the reverse relay running on `link` until `cancel`.
pub fn spawn_relays(
    link: &Arc<Link>,
    fwd: RelayOptions,
    rev: ReverseOptions,
    cancel: &CancellationToken,
) -> (
    JoinHandle<Result<RelaySummary, EngineError>>,
    JoinHandle<Result<ReverseSummary, EngineError>>,
) {
    let control = RunControl::new().with_cancel(cancel.clone());
    let forward = {
        let (link, control) = (link.clone(), control.clone());
        tokio::spawn(async move { run_relay(&link, fwd, &control).await })
    };
    let link = link.clone();
    let backward = tokio::spawn(async move { run_reverse_relay(&link, rev, &control).await });
    (forward, backward)
}

/// Changelog rows in a store.
pub async fn changelog_rows(side: &Side) -> anyhow::Result<i64> {
    side.count("_tern_changelog").await
}

/// Which bucket a member id falls in, by the stored plan.
pub fn bucket_of(plan: &Plan, member: i64) -> usize {
    plan.buckets
        .iter()
        .find(|b| b.range.contains(&Value::Int(member)))
        .map_or(usize::MAX, |b| b.index)
}

/// A random write of an application: the kind of statement (0..10), which
/// of `ids` ids it touches, the member of `members` it writes and a word.
pub fn random_write(ids: usize, members: &[i64]) -> (u32, usize, i64, u32) {
    let mut rng = rand::thread_rng();
    (
        rng.gen_range(0..10),
        rng.gen_range(0..ids.max(1)),
        members[rng.gen_range(0..members.len())],
        rng.gen_range(0..1_000_000),
    )
}

/// An application writing one store: inserts, updates (body, n, and member
/// within the same class of buckets) and deletes of rows whose member is in
/// `members`, each statement touching exactly one row. Returns the number
/// of statements.
#[allow(clippy::too_many_arguments)]
fn spawn_app(
    store: Arc<Side>,
    target: bool,
    mut ids: Vec<i64>,
    members: Vec<i64>,
    first_new_id: i64,
    running: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<u64>> {
    tokio::spawn(async move {
        let mut next_id = first_new_id;
        let mut n = 0u64;
        while running.load(Ordering::Relaxed) {
            let (op, pick, member, word) = random_write(ids.len(), &members);
            let member_col = if target { "member" } else { "member_id" };
            let sql = match op {
                // An application on the new store fills Tern's version column.
                0..=2 if target => {
                    next_id += 1;
                    ids.push(next_id - 1);
                    format!(
                        "INSERT INTO items (id, member, body, n, _tern_version) VALUES ({}, {member}, 'new {word}', '{word}', 0)",
                        next_id - 1
                    )
                }
                0..=2 => {
                    next_id += 1;
                    ids.push(next_id - 1);
                    format!(
                        "INSERT INTO items VALUES ({}, {member}, 'new {word}', {word})",
                        next_id - 1
                    )
                }
                _ if ids.is_empty() => continue,
                3..=5 => {
                    let n_value = if target {
                        format!("'{word}'")
                    } else {
                        word.to_string()
                    };
                    format!(
                        "UPDATE items SET body = 'changed {word}', n = {n_value} WHERE id = {}",
                        ids[pick]
                    )
                }
                6 => format!(
                    "UPDATE items SET {member_col} = {member}, body = 'moved {word}' WHERE id = {}",
                    ids[pick]
                ),
                _ => format!("DELETE FROM items WHERE id = {}", ids.swap_remove(pick)),
            };
            store.run(&sql).await?;
            n += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(n)
    })
}

async fn both_directions_under_load(
    source_kind: DbKind,
    target_kind: DbKind,
) -> anyhow::Result<()> {
    // Arrange: loaded, capture on the source, forward relay's start fixed.
    let source_db = TestDb::new(source_kind).await?;
    let target_db = TestDb::new(target_kind).await?;
    let source = Arc::new(Side::open(&source_db).await?);
    create_items(&source, source_kind).await?;
    let schema_before = schema_dump(&source, source_kind).await?;
    let (link, _, _) = connect_captured(&spec_text(&source_db, &target_db, SPEC)).await?;
    let link = Arc::new(link);
    let plan = load_table(&link, "items").await?;
    let target = Arc::new(Side::open(&target_db).await?);
    assert_eq!(
        reverse::check(&link).await?,
        vec![("items".to_string(), None)]
    );
    let installed = reverse::install_capture(&link).await?;
    assert_eq!(installed.installed.tables[0].columns, ["id", "member"]);
    let (source_log0, target_log0) = (
        changelog_rows(&source).await?,
        changelog_rows(&target).await?,
    );

    // Half the buckets switched: the forward relay skips them, the reverse
    // relay carries them back.
    let switched = SwitchedBuckets::of("items", [2, 3]);
    let (switched_tx, switched_rx) = watch::channel(switched.clone());
    let cancel = CancellationToken::new();
    // Both relays start at their changelog's head now, whenever they run.
    let mut fwd = RelayOptions::fixed(RelayRamp::full());
    fwd.start = reverse::head(&link, EngineSide::Source).await?;
    fwd.switched = Some(switched_rx.clone());
    fwd.stream.batch_changes = 200;
    let mut rev = ReverseOptions::new(switched_rx);
    let (observed_tx, mut observed_rx) = watch::channel(SwitchedBuckets::none());
    rev.observed = Some(Arc::new(observed_tx));
    rev.start = reverse::head(&link, EngineSide::Target).await?;
    rev.stream.batch_changes = 200;
    let (forward, backward) = spawn_relays(&link, fwd, rev, &cancel);

    // The switch releases writes once the reverse relay filters by the set.
    assert!(reverse::wait_observed(&mut observed_rx, &switched, Duration::from_secs(30)).await);

    // Act: the application writes both stores at once, each for its keys.
    let (mut source_ids, mut target_ids) = (Vec::new(), Vec::new());
    let (mut source_members, mut target_members) = (Vec::new(), Vec::new());
    for m in 0..MEMBERS {
        if switched.contains("items", bucket_of(&plan, m)) {
            target_members.push(m);
        } else {
            source_members.push(m);
        }
    }
    anyhow::ensure!(!source_members.is_empty() && !target_members.is_empty());
    for id in 1..=ROWS {
        if target_members.contains(&(id % MEMBERS)) {
            target_ids.push(id);
        } else {
            source_ids.push(id);
        }
    }
    let running = Arc::new(AtomicBool::new(true));
    let on_source = spawn_app(
        source.clone(),
        false,
        source_ids,
        source_members,
        100_000,
        running.clone(),
    );
    let on_target = spawn_app(
        target.clone(),
        true,
        target_ids,
        target_members,
        200_000,
        running.clone(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.store(false, Ordering::Relaxed);
    let (source_writes, target_writes) = (on_source.await??, on_target.await??);

    // Both directions drained to their heads, as a switch drains them.
    drain_both(&link).await?;
    cancel.cancel();
    let fwd_summary = forward.await??;
    let rev_summary = backward.await??;
    drop(switched_tx);

    // Assert: row for row equal.
    assert_same_rows(
        &rows(&source, source_kind, "member_id").await?,
        &rows(&target, target_kind, "member").await?,
    );
    assert!(
        source_writes > 50 && target_writes > 50,
        "{source_writes} {target_writes}"
    );
    // No ping-pong: each changelog holds the application's writes to its
    // store, one row each, and nothing a relay wrote.
    assert_eq!(
        changelog_rows(&source).await? - source_log0,
        source_writes as i64,
        "source changelog rows vs application writes to the source"
    );
    assert_eq!(
        changelog_rows(&target).await? - target_log0,
        target_writes as i64,
        "target changelog rows vs application writes to the target"
    );
    // Nothing applied twice: each relay applied at most one key per write.
    let rev_applied = rev_summary.applied.rows_written + rev_summary.applied.rows_deleted;
    assert!(
        rev_applied > 0 && rev_applied <= target_writes,
        "reverse relay applied {rev_applied} rows for {target_writes} writes: {rev_summary:?}"
    );
    assert_eq!(rev_summary.changes, target_writes, "{rev_summary:?}");
    assert!(
        fwd_summary.keys_applied > 0 && fwd_summary.keys_applied <= source_writes,
        "forward relay applied {} keys for {source_writes} writes",
        fwd_summary.keys_applied
    );
    assert_eq!(fwd_summary.changes, source_writes, "{fwd_summary:?}");

    // The target's changelog is pruned up to what the reverse relay passed
    // (the newest row always stays, so numbering goes on).
    let logged = changelog_rows(&target).await?;
    let pruned = reverse::prune_target_changelog(&link, Duration::ZERO).await?;
    assert_eq!(
        (pruned as i64, changelog_rows(&target).await?),
        (logged - 1, 1)
    );

    // Decommission: no Tern object is left in the old store, and the new
    // store keeps only the forward path's tables.
    reverse::remove_capture(&link).await?;
    capture::remove(link.source()).await?;
    reverse::remove_source_state(&link).await?;
    assert_eq!(schema_dump(&source, source_kind).await?, schema_before);
    assert!(
        !schema_dump(&target, target_kind)
            .await?
            .iter()
            .any(|l| l.contains("_tern_changelog")),
        "target capture removed"
    );
    Ok(())
}

#[tokio::test]
async fn mariadb_to_postgres_both_directions_equal_and_no_ping_pong() -> anyhow::Result<()> {
    both_directions_under_load(DbKind::MariaDb, DbKind::Postgres).await
}

#[tokio::test]
async fn postgres_to_postgres_both_directions_equal_and_no_ping_pong() -> anyhow::Result<()> {
    both_directions_under_load(DbKind::Postgres, DbKind::Postgres).await
}

#[tokio::test]
async fn mariadb_to_mariadb_both_directions_equal_and_no_ping_pong() -> anyhow::Result<()> {
    both_directions_under_load(DbKind::MariaDb, DbKind::MariaDb).await
}

#[tokio::test]
async fn sqlite_to_sqlite_both_directions_equal_and_no_ping_pong() -> anyhow::Result<()> {
    both_directions_under_load(DbKind::Sqlite, DbKind::Sqlite).await
}

#[tokio::test]
async fn a_table_that_does_not_invert_is_refused_with_its_reason() -> anyhow::Result<()> {
    // Arrange: a UUIDv5 key and a JSON document, no reverse section.
    let source_db = TestDb::new(DbKind::Sqlite).await?;
    let target_db = TestDb::new(DbKind::Sqlite).await?;
    let source = Side::open(&source_db).await?;
    create_items(&source, DbKind::Sqlite).await?;
    let body = "[[tables]]\nname = \"docs\"\nkey = [\"uid\"]\nbuckets = 2\n\
         [tables.source]\ntable = \"items\"\nkey = [\"id\"]\nbucket = \"member_id\"\n\
         [tables.columns]\nuid = { uuid5 = [\"id\"], namespace = \"items\" }\n\
         member_id = \"member_id\"\ndoc = { json = [\"body\", \"n\"] }\n";
    let spec = Spec::parse(&spec_text(&source_db, &target_db, body), "test.toml")?;
    let why = match reverse::table_reversibility(spec.table("docs")?) {
        Reversibility::No(why) => why,
        other => anyhow::bail!("expected not reversible, got {other:?}"),
    };
    assert!(why.contains("`uid` (a UUIDv5 of id"), "{why}");
    assert!(
        why.contains("`doc` (a JSON document assembled from body, n)"),
        "{why}"
    );
    assert!(why.contains("add a [tables.reverse] section"), "{why}");
    let (link, _, _) = connect_captured(&spec_text(&source_db, &target_db, body)).await?;
    load_table(&link, "docs").await?;
    assert_eq!(
        reverse::check(&link).await?,
        vec![("docs".into(), Some(why.clone()))]
    );
    let installed = reverse::install_capture(&link).await?;
    assert!(installed.installed.tables.is_empty());
    assert_eq!(installed.not_reversible, vec![("docs".into(), why.clone())]);

    // Act: a reverse relay with a bucket of it switched.
    let (_tx, rx) = watch::channel(SwitchedBuckets::of("docs", [0]));
    let mut opts = ReverseOptions::new(rx);
    opts.stop_at_head = true;
    let err = run_reverse_relay(&link, opts, &RunControl::new())
        .await
        .err()
        .context("the reverse relay must refuse the table")?;

    // Assert: refused with the reason, nothing written to the source.
    assert!(
        matches!(&err, EngineError::NotReversible { table, reason } if table == "docs" && *reason == why),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("table docs cannot be replicated back to the source: ")
    );
    assert_eq!(source.count("items").await?, ROWS);
    Ok(())
}

#[tokio::test]
async fn a_reverse_section_maps_a_lossy_table_back() -> anyhow::Result<()> {
    // Arrange: the body lower-cased and the member in a JSON document; the
    // reverse section says how to get them back.
    let source_db = TestDb::new(DbKind::Sqlite).await?;
    let target_db = TestDb::new(DbKind::Postgres).await?;
    let source = Side::open(&source_db).await?;
    create_items(&source, DbKind::Sqlite).await?;
    let body = "[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 2\n\
         [tables.source]\ntable = \"items\"\nbucket = \"member_id\"\n\
         [tables.columns]\nid = \"id\"\nbody = { from = \"body\", lower = true }\n\
         doc = { json = { member = \"member_id\", n = \"n\" } }\n\
         [tables.reverse.columns]\nid = \"id\"\nbody = \"body\"\n\
         member_id = { expr = \"doc.member\" }\nn = { expr = \"doc.n\" }\n";
    let (link, _, _) = connect_captured(&spec_text(&source_db, &target_db, body)).await?;
    let plan = load_table(&link, "items").await?;
    assert_eq!(reverse::check(&link).await?, vec![("items".into(), None)]);
    reverse::install_capture(&link).await?;
    let target = Side::open(&target_db).await?;
    let member = |id: i64| id % MEMBERS;
    let in_bucket = |id: i64, b: usize| bucket_of(&plan, member(id)) == b;
    let (a, b) = (
        (1..=ROWS)
            .find(|id| in_bucket(*id, 1))
            .context("a key in bucket 1")?,
        (1..=ROWS)
            .find(|id| in_bucket(*id, 0))
            .context("a key in bucket 0")?,
    );

    // Act: the application updates a row of the switched bucket 1 and of
    // the unswitched bucket 0, and deletes another of bucket 1.
    let gone = (a + 1..=ROWS)
        .find(|id| in_bucket(*id, 1))
        .context("a second key")?;
    target
        .exec(&format!(
            "UPDATE items SET body = 'switched', doc = jsonb_build_object('member', {}, 'n', 7) WHERE id = {a};\
             UPDATE items SET body = 'not switched' WHERE id = {b};\
             DELETE FROM items WHERE id = {gone}",
            member(a)
        ))
        .await?;
    let (_tx, rx) = watch::channel(SwitchedBuckets::of("items", [1]));
    let mut opts = ReverseOptions::new(rx);
    opts.stop_at_head = true;
    opts.start = Some(tern_engine::Position::start());
    let s = run_reverse_relay(&link, opts, &RunControl::new()).await?;

    // Assert
    let got: HashMap<String, String> = source
        .strings(&format!(
            "SELECT id || '|' || body || '|' || n FROM items WHERE id IN ({a}, {b})"
        ))
        .await?
        .into_iter()
        .filter_map(|l| {
            l.split_once('|')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(
        got.get(&a.to_string()).map(String::as_str),
        Some("switched|7")
    );
    assert_eq!(
        got.get(&b.to_string()).map(String::as_str),
        Some(format!("body {b}|{b}").as_str()),
        "bucket 0 is not switched: its change stays in the new store"
    );
    assert_eq!(source.count("items").await?, ROWS - 1, "{s:?}");
    assert_eq!(
        (s.applied.rows_written, s.applied.rows_deleted),
        (1, 1),
        "{s:?}"
    );
    Ok(())
}

/// The reverse relay writes old rows by the reverse key: a source table
/// with no primary key nor unique index on exactly that key is refused with
/// its reason, on each database's catalog; a unique index on it makes the
/// table reversible.
async fn the_reverse_key_must_be_unique_in_the_old_table(kind: DbKind) -> anyhow::Result<()> {
    // Arrange: `items` with no primary key; (member_id, id) unique, id only indexed.
    let source_db = TestDb::new(kind).await?;
    let target_db = TestDb::new(DbKind::Sqlite).await?;
    let source = Side::open(&source_db).await?;
    source
        .exec(
            "CREATE TABLE items (id BIGINT NOT NULL, member_id BIGINT NOT NULL, \
             body VARCHAR(200) NOT NULL, n BIGINT NOT NULL)",
        )
        .await?;
    source
        .exec("CREATE UNIQUE INDEX items_by_member ON items (member_id, id)")
        .await?;
    source
        .exec("CREATE INDEX items_by_id ON items (id)")
        .await?;
    source
        .exec("INSERT INTO items VALUES (1, 1, 'a', 1), (2, 2, 'b', 2)")
        .await?;
    let spec = Spec::parse(&spec_text(&source_db, &target_db, SPEC), "test.toml")?;

    // Act: the check against the databases.
    let link = Link::connect(spec.clone(), &TransformerRegistry::new()).await?;
    let checked = reverse::check(&link).await?;

    // Assert: refused, saying which key and what the table has.
    let why = checked[0]
        .1
        .clone()
        .context("a reverse key that is not unique")?;
    assert!(
        why.contains("the reverse key (id) is not unique in source table items"),
        "{kind:?}: {why}"
    );
    assert!(why.contains("(member_id, id)"), "{kind:?}: {why}");
    assert!(
        reverse::install_capture(&link)
            .await?
            .not_reversible
            .iter()
            .any(|(t, w)| t == "items" && *w == why)
    );
    source
        .exec("CREATE UNIQUE INDEX items_id ON items (id)")
        .await?;
    let link = Link::connect(spec, &TransformerRegistry::new()).await?;
    assert_eq!(
        reverse::check(&link).await?,
        vec![("items".into(), None)],
        "{kind:?}: a unique index on the key makes it reversible"
    );
    Ok(())
}

#[tokio::test]
async fn a_reverse_key_not_unique_in_sqlite_is_refused() -> anyhow::Result<()> {
    the_reverse_key_must_be_unique_in_the_old_table(DbKind::Sqlite).await
}

#[tokio::test]
async fn a_reverse_key_not_unique_in_postgres_is_refused() -> anyhow::Result<()> {
    the_reverse_key_must_be_unique_in_the_old_table(DbKind::Postgres).await
}

#[tokio::test]
async fn a_reverse_key_not_unique_in_mariadb_is_refused() -> anyhow::Result<()> {
    the_reverse_key_must_be_unique_in_the_old_table(DbKind::MariaDb).await
}
