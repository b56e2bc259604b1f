-- Issue 6: migration settings, batches, throughput samples and verification summaries.

-- Per-migration settings an engineer edits while the migration runs.
ALTER TABLE migrations ADD COLUMN chunk_size INTEGER NOT NULL DEFAULT 5000;
ALTER TABLE migrations ADD COLUMN rate_limit REAL;                      -- rows/s for new jobs; NULL = unthrottled
ALTER TABLE migrations ADD COLUMN verify_min_accuracy REAL NOT NULL DEFAULT 100.0;  -- a bucket is verified at or above this
ALTER TABLE migrations ADD COLUMN schedule_every_hours REAL;           -- progressive schedule; NULL = off
ALTER TABLE migrations ADD COLUMN next_batch_at INTEGER;
-- A spec may load several target tables; each plans its own buckets. A
-- migration numbers all its buckets in one sequence (idx); these say which
-- table and which of that table's buckets a row is.
ALTER TABLE buckets ADD COLUMN table_name TEXT;
ALTER TABLE buckets ADD COLUMN table_bucket INTEGER;

ALTER TABLE migrations ADD COLUMN archived_at INTEGER;

-- Batches of buckets of about equal total size (the pipeline is bound by its largest batch).
CREATE TABLE batches (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    migration_id INTEGER NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    planned_rows INTEGER NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'planned' CHECK (state IN ('planned', 'running', 'done')),
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER,
    UNIQUE (migration_id, seq)
);
ALTER TABLE buckets ADD COLUMN batch_id INTEGER REFERENCES batches (id) ON DELETE SET NULL;

-- Rows moved so far, sampled over time: the measured throughput behind the ETA.
CREATE TABLE throughput_samples (
    migration_id INTEGER NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    at           INTEGER NOT NULL,
    rows_done    INTEGER NOT NULL,
    PRIMARY KEY (migration_id, at)
);

-- One row per verification run the control plane drove (the engine keeps the
-- mismatched rows themselves; this is what the charts and the gates read).
CREATE TABLE verify_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    migration_id  INTEGER NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    bucket_id     INTEGER REFERENCES buckets (id) ON DELETE CASCADE,
    job_id        INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    engine_run    TEXT,
    kind          TEXT    NOT NULL,
    rows_compared INTEGER NOT NULL,
    matched       INTEGER NOT NULL,
    missing       INTEGER NOT NULL,
    extra         INTEGER NOT NULL,
    different     INTEGER NOT NULL,
    accuracy      REAL    NOT NULL,
    tree          TEXT,
    finished_at   INTEGER NOT NULL
);
CREATE INDEX verify_runs_migration ON verify_runs (migration_id, finished_at);
CREATE INDEX verify_runs_bucket ON verify_runs (bucket_id, finished_at);
