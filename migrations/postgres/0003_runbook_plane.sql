-- Issue 6: migration settings, batches, throughput samples and verification summaries.

-- Per-migration settings an engineer edits while the migration runs.
ALTER TABLE migrations ADD COLUMN chunk_size BIGINT NOT NULL DEFAULT 5000;
ALTER TABLE migrations ADD COLUMN rate_limit DOUBLE PRECISION;                      -- rows/s for new jobs; NULL = unthrottled
ALTER TABLE migrations ADD COLUMN verify_min_accuracy DOUBLE PRECISION NOT NULL DEFAULT 100.0;  -- a bucket is verified at or above this
ALTER TABLE migrations ADD COLUMN schedule_every_hours DOUBLE PRECISION;           -- progressive schedule; NULL = off
ALTER TABLE migrations ADD COLUMN next_batch_at BIGINT;
-- A spec may load several target tables; each plans its own buckets. A
-- migration numbers all its buckets in one sequence (idx); these say which
-- table and which of that table's buckets a row is.
ALTER TABLE buckets ADD COLUMN table_name TEXT;
ALTER TABLE buckets ADD COLUMN table_bucket BIGINT;

ALTER TABLE migrations ADD COLUMN archived_at BIGINT;

-- Batches of buckets of about equal total size (the pipeline is bound by its largest batch).
CREATE TABLE batches (
    id           BIGSERIAL PRIMARY KEY,
    migration_id BIGINT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    planned_rows BIGINT NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'planned' CHECK (state IN ('planned', 'running', 'done')),
    created_at   BIGINT NOT NULL,
    started_at   BIGINT,
    finished_at  BIGINT,
    UNIQUE (migration_id, seq)
);
ALTER TABLE buckets ADD COLUMN batch_id BIGINT REFERENCES batches (id) ON DELETE SET NULL;

-- Rows moved so far, sampled over time: the measured throughput behind the ETA.
CREATE TABLE throughput_samples (
    migration_id BIGINT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    at           BIGINT NOT NULL,
    rows_done    BIGINT NOT NULL,
    PRIMARY KEY (migration_id, at)
);

-- One row per verification run the control plane drove (the engine keeps the
-- mismatched rows themselves; this is what the charts and the gates read).
CREATE TABLE verify_runs (
    id            BIGSERIAL PRIMARY KEY,
    migration_id  BIGINT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    bucket_id     BIGINT REFERENCES buckets (id) ON DELETE CASCADE,
    job_id        BIGINT REFERENCES jobs (id) ON DELETE SET NULL,
    engine_run    TEXT,
    kind          TEXT    NOT NULL,
    rows_compared BIGINT NOT NULL,
    matched       BIGINT NOT NULL,
    missing       BIGINT NOT NULL,
    extra         BIGINT NOT NULL,
    different     BIGINT NOT NULL,
    accuracy      DOUBLE PRECISION    NOT NULL,
    tree          TEXT,
    finished_at   BIGINT NOT NULL
);
CREATE INDEX verify_runs_migration ON verify_runs (migration_id, finished_at);
CREATE INDEX verify_runs_bucket ON verify_runs (bucket_id, finished_at);
