//! Catching up every bucket of every table at once, and the relay's warning
//! at start about buckets whose changes before its start position no
//! catch-up has applied.

use std::sync::{Arc, Mutex};

use tern_engine::{
    CatchUpOptions, CatchUpStatus, Link, Progress, RelayOptions, RelayRamp, RunControl, Spec,
    TransformerRegistry, catch_up_all, run_relay,
};
use tern_testkit::DbKind;
use tokio::sync::watch;

use crate::shared_rows::{filled_inbox, spec};
use crate::support::{Side, connect_captured, load_table, spec_text};

/// Runs the relay from the head to the head once; its progress reports.
async fn relay_reports(link: &Link) -> anyhow::Result<Vec<Progress>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let control = {
        let seen = seen.clone();
        RunControl::new().on_progress(move |p| {
            if let Ok(mut s) = seen.lock() {
                s.push(p.clone());
            }
        })
    };
    let (_tx, rx) = watch::channel(RelayRamp::full());
    let mut opts = RelayOptions::new(rx);
    opts.stop_at_head = true;
    opts.name = format!("r{}", rand::random::<u32>());
    run_relay(link, opts, &control).await?;
    let out = seen.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(out)
}

#[tokio::test]
async fn every_bucket_of_every_table_is_caught_up_and_the_relay_says_when_one_is_not()
-> anyhow::Result<()> {
    // Arrange: both tables loaded with capture on, then changes made.
    let (source_db, target_db, source, _) = filled_inbox(DbKind::Postgres).await?;
    let (link, _, _) = connect_captured(&spec_text(&source_db, &target_db, &spec())).await?;
    let mut planned = 0;
    for table in ["personal", "messages"] {
        planned += load_table(&link, table).await?.buckets.len();
    }
    source
        .exec("UPDATE inbox SET body = 'changed' WHERE thread_id <= 10; DELETE FROM inbox WHERE thread_id = 11")
        .await?;
    let target = Side::open(&target_db).await?;

    // Act + Assert: a relay started now warns that the buckets miss changes.
    let before = relay_reports(&link).await?;
    let warned: Vec<&String> = before.iter().flat_map(|p| &p.warnings).collect();
    assert!(
        warned.iter().any(|w| w.contains(&format!(
            "{planned} bucket(s) have changes from before this relay's start position"
        )) && w.contains("tern catch-up --spec test.toml")),
        "{warned:?}"
    );
    assert!(
        !target
            .strings("SELECT body FROM messages WHERE thread_id <= 10")
            .await?
            .contains(&"changed".to_string()),
        "the relay does not replay changes from before its start"
    );

    // Act: catch up everything, two buckets at a time.
    let all = catch_up_all(&link, &CatchUpOptions::default(), 2, &RunControl::new()).await?;

    // Assert
    assert_eq!(all.buckets.len(), planned);
    assert!(all.skipped.is_empty(), "{:?}", all.skipped);
    assert!(
        all.buckets
            .iter()
            .all(|s| s.status == CatchUpStatus::CaughtUp)
    );
    assert!(all.buckets.iter().map(|s| s.changes).sum::<u64>() > 0);
    assert_eq!(
        target
            .strings("SELECT DISTINCT body FROM messages WHERE thread_id <= 10")
            .await?,
        vec!["changed".to_string()]
    );
    assert_eq!(target.count("messages WHERE thread_id = 11").await?, 0);
    assert_eq!(
        target.count("personal").await?,
        source.count("inbox").await?
    );
    let after = relay_reports(&link).await?;
    assert!(
        after.iter().all(|p| p.warnings.is_empty()),
        "no warning once every bucket is caught up: {:?}",
        after.iter().map(|p| &p.warnings).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn buckets_that_cannot_be_caught_up_are_listed_with_what_to_do() -> anyhow::Result<()> {
    // Arrange: only one table loaded, without capture.
    let (source_db, target_db, _source, _) = filled_inbox(DbKind::Postgres).await?;
    let spec = Spec::parse(&spec_text(&source_db, &target_db, &spec()), "test.toml")?;
    let link = Link::connect(spec, &TransformerRegistry::new()).await?;
    let plan = load_table(&link, "personal").await?;

    // Act
    let all = catch_up_all(&link, &CatchUpOptions::default(), 4, &RunControl::new()).await?;

    // Assert
    assert!(all.buckets.is_empty());
    assert_eq!(all.skipped.len(), plan.buckets.len() + 1);
    assert!(
        all.skipped
            .iter()
            .filter(|s| s.table == "personal")
            .all(|s| s.reason.contains("loaded without change capture"))
    );
    assert!(
        all.skipped.iter().any(|s| s.table == "messages"
            && s.reason == "the table has no stored plan: bulk-load it first")
    );
    Ok(())
}
