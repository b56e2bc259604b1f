//! The forecast's unit tests: every number the overview shows.

use super::*;

fn bucket(phase: Phase, planned: i64, copied: i64) -> BucketWork {
    BucketWork::one(phase, planned, copied)
}

/// A job that moved `rate` rows in one second.
fn rate(stage: Stage, running: bool, rate: f64) -> Measured {
    Measured {
        stage,
        running,
        work: rate,
        ms: 1000.0,
    }
}

/// A finished job that moved `work` rows (catch-up: 1 bucket) in `ms`.
fn took(stage: Stage, work: f64, ms: f64) -> Measured {
    Measured {
        stage,
        running: false,
        work,
        ms,
    }
}

#[test]
fn rows_done_never_pass_100_percent_and_say_when_the_source_grew() {
    // The card: 402,618 of 400,733 read 100.5%.
    let r = rows_done(400_733, 402_618);
    assert_eq!(r.percent, 100.0);
    assert_eq!((r.done, r.of), (402_618, 402_618));
    assert_eq!(r.recounted, Some(1_885));
    let half = rows_done(1_000, 500);
    assert_eq!(half.percent, 50.0);
    assert_eq!(half.recounted, None);
    assert_eq!(rows_done(0, 0).percent, 0.0);
}

#[test]
fn a_running_load_gives_the_pace_now_and_an_eta_from_it() {
    // Two buckets loading at ~2,800 rows/s together, two planned.
    let buckets = [
        bucket(Phase::BulkLoading, 10_000, 4_000),
        bucket(Phase::BulkLoading, 10_000, 6_000),
        bucket(Phase::Planned, 10_000, 0),
        bucket(Phase::Planned, 10_000, 0),
    ];
    let rates = [
        rate(Stage::Load, true, 1_400.0),
        rate(Stage::Load, true, 1_400.0),
    ];
    let f = forecast(&buckets, &rates);
    assert_eq!(f.pace_now, Some(2_800.0));
    let load = &f.stages[0];
    assert_eq!(load.stage, Stage::Load);
    assert_eq!(load.work_left, 30_000);
    assert_eq!(load.pace, Some(2_800.0));
    let eta = load.eta.expect("measured");
    assert!((eta.seconds - 30_000.0 / 2_800.0).abs() < 1e-9);
    // Catch-up and verify have not run yet: no ETA for the whole, and
    // the card says which phases are unmeasured.
    assert_eq!(f.eta, None);
    assert_eq!(f.unmeasured, vec![Stage::CatchUp, Stage::Verify]);
}

#[test]
fn a_throttled_job_paces_at_its_own_measured_rate() {
    // The job throttled to 1,500 rows/s read 33,541 rows/s.
    let buckets = [bucket(Phase::BulkLoading, 100_000, 16_000)];
    let f = forecast(&buckets, &[rate(Stage::Load, true, 1_480.0)]);
    assert_eq!(f.pace_now, Some(1_480.0));
    let eta = f.stages[0].eta.expect("measured");
    assert!((eta.seconds - 84_000.0 / 1_480.0).abs() < 1e-6);
}

#[test]
fn after_the_load_the_eta_counts_the_verification_still_ahead() {
    // The card after the run: loaded everywhere, 8 of 16
    // buckets verified, "ETA 0s". Verification still has 8 buckets.
    let mut buckets: Vec<BucketWork> = (0..8)
        .map(|_| bucket(Phase::Verified, 25_000, 25_100))
        .collect();
    buckets.extend((0..8).map(|_| bucket(Phase::CaughtUp, 25_000, 25_200)));
    let rates = [
        rate(Stage::Verify, false, 8_000.0),
        rate(Stage::Verify, false, 10_000.0),
        rate(Stage::Verify, false, 12_000.0),
    ];
    let f = forecast(&buckets, &rates);
    assert_eq!(f.stages.len(), 1);
    let verify = &f.stages[0];
    assert_eq!(verify.stage, Stage::Verify);
    assert_eq!(verify.buckets_left, 8);
    assert_eq!(verify.work_left, 8 * 25_200);
    let eta = f.eta.expect("every phase left is measured");
    assert!((eta.seconds - 201_600.0 / 10_000.0).abs() < 1e-9);
    assert!(eta.fast < eta.seconds && eta.seconds < eta.slow);
    assert!(eta.seconds > 0.0, "not 0s while buckets are unverified");
    assert_eq!(f.pace_now, None, "nothing runs now");
}

#[test]
fn phases_add_up_and_catch_up_counts_buckets() {
    let buckets = [
        bucket(Phase::Loaded, 1_000, 1_000),
        bucket(Phase::Planned, 1_000, 0),
    ];
    let rates = [
        rate(Stage::Load, false, 100.0),
        rate(Stage::CatchUp, false, 0.5),
        rate(Stage::Verify, false, 1_000.0),
    ];
    let f = forecast(&buckets, &rates);
    let stages: Vec<(Stage, i64)> = f.stages.iter().map(|s| (s.stage, s.work_left)).collect();
    assert_eq!(
        stages,
        vec![
            (Stage::Load, 1_000),
            (Stage::CatchUp, 2),
            (Stage::Verify, 2_000)
        ]
    );
    let eta = f.eta.expect("measured");
    assert!((eta.seconds - (10.0 + 4.0 + 2.0)).abs() < 1e-9);
}

#[test]
fn sub_second_jobs_give_every_remaining_phase_an_eta_with_a_range() {
    // The demo: buckets of ~25,000 rows load, catch up and verify in
    // well under a second each. 8 planned, 4 loaded, 4 caught up.
    let mut buckets: Vec<BucketWork> = (0..8).map(|_| bucket(Phase::Planned, 25_000, 0)).collect();
    buckets.extend((0..4).map(|_| bucket(Phase::Loaded, 25_000, 25_000)));
    buckets.extend((0..4).map(|_| bucket(Phase::CaughtUp, 25_000, 25_000)));
    let mut rates: Vec<Measured> = [200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0]
        .iter()
        .map(|ms| took(Stage::Load, 25_000.0, *ms))
        .collect();
    rates.extend([120.0, 80.0, 100.0, 100.0].map(|ms| took(Stage::CatchUp, 1.0, ms)));
    rates.extend([400.0, 600.0].map(|ms| took(Stage::Verify, 25_000.0, ms)));
    let f = forecast(&buckets, &rates);
    assert!(f.unmeasured.is_empty(), "{:?}", f.unmeasured);
    let by = |st: Stage| f.stages.iter().find(|s| s.stage == st).expect("stage left");

    // Load: 200,000 rows over 4.4 s of jobs.
    let load = by(Stage::Load);
    let pace = 200_000.0 / 4.4;
    assert!((load.pace.expect("measured") - pace).abs() < 1e-6);
    let eta = load.eta.expect("measured");
    assert!((eta.seconds - 200_000.0 / pace).abs() < 1e-9);
    assert!(eta.fast < eta.seconds && eta.seconds < eta.slow, "{eta:?}");
    // The slow end is the slowest decile of the time: 25,000 rows in
    // 0.9 s or 0.8 s; the fast end 0.3 s or 0.2 s.
    assert!(
        (200_000.0 / 31_250.0..=200_000.0 / 27_777.0).contains(&eta.slow),
        "{eta:?}"
    );
    assert!(
        (200_000.0 / 125_001.0..=200_000.0 / 83_332.0).contains(&eta.fast),
        "{eta:?}"
    );

    // Catch-up: 4 buckets in 0.4 s, 12 left.
    let catch_up = by(Stage::CatchUp);
    assert_eq!(catch_up.work_left, 12);
    assert!((catch_up.pace.expect("measured") - 10.0).abs() < 1e-9);
    assert!((catch_up.eta.expect("measured").seconds - 1.2).abs() < 1e-9);

    // Verify: 50,000 rows in 1 s; 16 buckets, 400,000 rows left.
    let verify = by(Stage::Verify);
    assert!((verify.eta.expect("measured").seconds - 8.0).abs() < 1e-9);

    let total = f.eta.expect("every phase measured");
    assert!(
        (total.seconds - (4.4 + 1.2 + 8.0)).abs() < 1e-9,
        "{total:?}"
    );
    assert!(total.fast <= total.seconds && total.seconds <= total.slow);
}

#[test]
fn a_phase_rate_sums_rows_and_time_so_short_jobs_weigh_by_their_time() {
    // One 10 s job at 1,000 rows/s and ten 0.1 s jobs at 10,000 rows/s:
    // 20,000 rows in 11 s, not the median job's rate.
    let mut rates = vec![took(Stage::Load, 10_000.0, 10_000.0)];
    rates.extend((0..10).map(|_| took(Stage::Load, 1_000.0, 100.0)));
    let f = forecast(&[bucket(Phase::Planned, 20_000, 0)], &rates);
    let load = &f.stages[0];
    assert!((load.pace.expect("measured") - 20_000.0 / 11.0).abs() < 1e-6);
    let eta = load.eta.expect("measured");
    assert!((eta.seconds - 11.0).abs() < 1e-9);
    assert!(
        (eta.slow - 20.0).abs() < 1e-9,
        "the slow job's rate: {eta:?}"
    );
    assert!(eta.fast <= eta.seconds);
}

#[test]
fn everything_verified_is_done_with_no_time_left() {
    let f = forecast(&[bucket(Phase::Verified, 10, 10)], &[]);
    assert!(f.stages.is_empty());
    assert_eq!(f.eta, Some(Span::ZERO));
    assert_eq!(f.rows.percent, 100.0);
}

#[test]
fn a_failed_bucket_counts_where_it_stopped() {
    let f = forecast(
        &[
            bucket(Phase::Failed, 1_000, 300),
            bucket(Phase::Failed, 1_000, 1_000),
        ],
        &[],
    );
    assert_eq!(f.stages[0].stage, Stage::Load);
    assert_eq!(f.stages[0].buckets_left, 1);
    assert_eq!(f.stages[1].stage, Stage::CatchUp);
    assert_eq!(f.stages[1].buckets_left, 2);
}

#[test]
fn what_a_job_measured() {
    let job = |kind, state, started: Option<i64>, finished: Option<i64>, rows, rate| Job {
        id: 1,
        migration_id: Some(1),
        bucket_id: Some(1),
        kind,
        params: serde_json::Value::Null,
        state,
        requested: None,
        rate_limit: None,
        worker: None,
        lease_expires_at: None,
        attempts: 1,
        lease_token: 1,
        rows_done: rows,
        rows_total: None,
        rate,
        eta_seconds: None,
        message: None,
        created_by: "t".into(),
        created_at: 0,
        started_at: started,
        updated_at: 0,
        finished_at: finished,
    };
    let now = 100_000_000;
    let running = job(
        JobKind::BulkLoad,
        JobState::Running,
        Some(now - 10_000),
        None,
        30_000,
        Some(2_900.0),
    );
    assert_eq!(measured(&running, now).map(|m| m.rate()), Some(2_900.0));

    // Jobs too short to report while running still give a pace: two
    // 25,000-row loads that finished in the last 10 s, nothing older.
    let quick = |start, end| {
        job(
            JobKind::BulkLoad,
            JobState::Succeeded,
            Some(start),
            Some(end),
            25_000,
            None,
        )
    };
    let pace = recent_pace(
        &[
            quick(now - 10_000, now - 6_000),
            quick(now - 5_000, now - 1_000),
        ],
        now,
    );
    assert_eq!(pace, Some(5_000.0));
    let old = quick(now - 200_000, now - 100_000);
    assert_eq!(recent_pace(&[old], now), None, "older than the window");
    assert_eq!(recent_pace(&[], now), None);
    let finished = job(
        JobKind::Verify,
        JobState::Succeeded,
        Some(now - 20_000),
        Some(now - 10_000),
        50_000,
        None,
    );
    assert_eq!(measured(&finished, now).map(|m| m.rate()), Some(5_000.0));
    // A load shorter than a second still measures: 25,000 rows in 0.4 s.
    let quick_load = job(
        JobKind::BulkLoad,
        JobState::Succeeded,
        Some(now - 1_000),
        Some(now - 600),
        25_000,
        None,
    );
    let m = measured(&quick_load, now).expect("a short job counts");
    assert_eq!((m.work, m.ms), (25_000.0, 400.0));
    assert_eq!(m.rate(), 62_500.0);
    // A running job that has reported nothing for under a second does not.
    let just_started = job(
        JobKind::BulkLoad,
        JobState::Running,
        Some(now - 300),
        None,
        1_000,
        None,
    );
    assert_eq!(measured(&just_started, now), None);
    let old = job(
        JobKind::Verify,
        JobState::Succeeded,
        Some(0),
        Some(10_000),
        50_000,
        None,
    );
    assert_eq!(measured(&old, now), None, "older than an hour");
    let caught = job(
        JobKind::CatchUp,
        JobState::Succeeded,
        Some(now - 4_000),
        Some(now - 2_000),
        7,
        None,
    );
    assert_eq!(measured(&caught, now).map(|m| m.rate()), Some(0.5));
    let relay = job(
        JobKind::Relay,
        JobState::Running,
        Some(now - 4_000),
        None,
        7,
        Some(3.0),
    );
    assert_eq!(measured(&relay, now), None);
}
