-- Bucket lifecycle details and the job queue.

-- Where a paused or failed bucket goes back to; when it entered its phase; the
-- moments seed 000 tracked per bucket to know what data could be missing.
ALTER TABLE buckets ADD COLUMN resume_phase TEXT;
ALTER TABLE buckets ADD COLUMN phase_since INTEGER;
ALTER TABLE buckets ADD COLUMN snapshot_at INTEGER;      -- bulk load: capture start fixed, first row read
ALTER TABLE buckets ADD COLUMN watermark TEXT;           -- changelog position at that moment
ALTER TABLE buckets ADD COLUMN loaded_at INTEGER;        -- bulk load finished
ALTER TABLE buckets ADD COLUMN dual_write_at INTEGER;    -- the relay began writing this bucket's keys
ALTER TABLE buckets ADD COLUMN catch_up_from TEXT;       -- catch-up window: from this position
ALTER TABLE buckets ADD COLUMN catch_up_to TEXT;         -- ... to this one
ALTER TABLE buckets ADD COLUMN caught_up_at INTEGER;
ALTER TABLE buckets ADD COLUMN verified_at INTEGER;
ALTER TABLE buckets ADD COLUMN switched_at INTEGER;
ALTER TABLE buckets ADD COLUMN accuracy REAL;            -- latest verification, percent
ALTER TABLE buckets ADD COLUMN lag_changes INTEGER;
ALTER TABLE buckets ADD COLUMN lag_seconds REAL;
ALTER TABLE buckets ADD COLUMN last_error TEXT;

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    migration_id     INTEGER REFERENCES migrations (id) ON DELETE CASCADE,
    bucket_id        INTEGER REFERENCES buckets (id) ON DELETE CASCADE,
    kind             TEXT    NOT NULL,
    params           TEXT    NOT NULL DEFAULT '{}',
    state            TEXT    NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')),
    requested        TEXT    CHECK (requested IN ('pause', 'cancel')),
    rate_limit       REAL,
    worker           TEXT,
    lease_expires_at INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    rows_done        INTEGER NOT NULL DEFAULT 0,
    rows_total       INTEGER,
    rate             REAL,
    eta_seconds      REAL,
    message          TEXT,
    created_by       TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_bucket ON jobs (bucket_id, id);
CREATE INDEX jobs_migration ON jobs (migration_id, id);
