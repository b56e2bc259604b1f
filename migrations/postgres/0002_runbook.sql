-- Bucket lifecycle details and the job queue.

-- Where a paused or failed bucket goes back to; when it entered its phase; the
-- moments seed 000 tracked per bucket to know what data could be missing.
ALTER TABLE buckets ADD COLUMN resume_phase TEXT;
ALTER TABLE buckets ADD COLUMN phase_since BIGINT;
ALTER TABLE buckets ADD COLUMN snapshot_at BIGINT;      -- bulk load: capture start fixed, first row read
ALTER TABLE buckets ADD COLUMN watermark TEXT;           -- changelog position at that moment
ALTER TABLE buckets ADD COLUMN loaded_at BIGINT;        -- bulk load finished
ALTER TABLE buckets ADD COLUMN dual_write_at BIGINT;    -- the relay began writing this bucket's keys
ALTER TABLE buckets ADD COLUMN catch_up_from TEXT;       -- catch-up window: from this position
ALTER TABLE buckets ADD COLUMN catch_up_to TEXT;         -- ... to this one
ALTER TABLE buckets ADD COLUMN caught_up_at BIGINT;
ALTER TABLE buckets ADD COLUMN verified_at BIGINT;
ALTER TABLE buckets ADD COLUMN switched_at BIGINT;
ALTER TABLE buckets ADD COLUMN accuracy DOUBLE PRECISION;            -- latest verification, percent
ALTER TABLE buckets ADD COLUMN lag_changes BIGINT;
ALTER TABLE buckets ADD COLUMN lag_seconds DOUBLE PRECISION;
ALTER TABLE buckets ADD COLUMN last_error TEXT;

CREATE TABLE jobs (
    id               BIGSERIAL PRIMARY KEY,
    migration_id     BIGINT REFERENCES migrations (id) ON DELETE CASCADE,
    bucket_id        BIGINT REFERENCES buckets (id) ON DELETE CASCADE,
    kind             TEXT    NOT NULL,
    params           TEXT    NOT NULL DEFAULT '{}',
    state            TEXT    NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')),
    requested        TEXT    CHECK (requested IN ('pause', 'cancel')),
    rate_limit       DOUBLE PRECISION,
    worker           TEXT,
    lease_expires_at BIGINT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    rows_done        BIGINT NOT NULL DEFAULT 0,
    rows_total       BIGINT,
    rate             DOUBLE PRECISION,
    eta_seconds      DOUBLE PRECISION,
    message          TEXT,
    created_by       TEXT    NOT NULL,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_bucket ON jobs (bucket_id, id);
CREATE INDEX jobs_migration ON jobs (migration_id, id);
