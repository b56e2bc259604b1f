-- Issue 8: data fixes. A fix is a job spec (filter + mapper) on a database;
-- each run of it is a job on the queue; failures are kept per run.

CREATE TABLE fixes (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    spec        TEXT    NOT NULL,                 -- the job.toml as written
    db_url      TEXT    NOT NULL,                 -- the database, password removed (for lists and audit)
    mapper_kind TEXT    NOT NULL,
    target      TEXT    NOT NULL,                 -- the mapper's table
    -- Settings changeable while a run goes on (the rate lives on the run's job).
    rate        DOUBLE PRECISION,                             -- records/s for new runs; NULL = unthrottled
    concurrency BIGINT NOT NULL DEFAULT 4,
    batch_size  BIGINT NOT NULL DEFAULT 500,
    on_failure  TEXT    NOT NULL DEFAULT 'skip' CHECK (on_failure IN ('retry', 'skip', 'stop')),
    created_by  TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE fix_runs (
    id          BIGSERIAL PRIMARY KEY,
    fix_id      BIGINT NOT NULL REFERENCES fixes (id) ON DELETE CASCADE,
    job_id      BIGINT REFERENCES jobs (id) ON DELETE SET NULL,
    started_by  TEXT    NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    pass        BIGINT NOT NULL DEFAULT 1,
    checkpoint  TEXT,                             -- the engine's Checkpoint (JSON): where a taken-over run resumes
    changed     BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0,
    stale       BIGINT NOT NULL DEFAULT 0,
    summary     TEXT
);
CREATE INDEX fix_runs_fix ON fix_runs (fix_id, id);

CREATE TABLE fix_failures (
    id          BIGSERIAL PRIMARY KEY,
    run_id      BIGINT NOT NULL REFERENCES fix_runs (id) ON DELETE CASCADE,
    key_text    TEXT    NOT NULL,
    key_json    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    pass        BIGINT NOT NULL,
    attempts    BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    UNIQUE (run_id, key_text)
);
