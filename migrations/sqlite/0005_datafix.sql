-- Issue 8: data fixes. A fix is a job spec (filter + mapper) on a database;
-- each run of it is a job on the queue; failures are kept per run.

CREATE TABLE fixes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    spec        TEXT    NOT NULL,                 -- the job.toml as written
    db_url      TEXT    NOT NULL,                 -- the database, password removed (for lists and audit)
    mapper_kind TEXT    NOT NULL,
    target      TEXT    NOT NULL,                 -- the mapper's table
    -- Settings changeable while a run goes on (the rate lives on the run's job).
    rate        REAL,                             -- records/s for new runs; NULL = unthrottled
    concurrency INTEGER NOT NULL DEFAULT 4,
    batch_size  INTEGER NOT NULL DEFAULT 500,
    on_failure  TEXT    NOT NULL DEFAULT 'skip' CHECK (on_failure IN ('retry', 'skip', 'stop')),
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE fix_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    fix_id      INTEGER NOT NULL REFERENCES fixes (id) ON DELETE CASCADE,
    job_id      INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    started_by  TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    pass        INTEGER NOT NULL DEFAULT 1,
    checkpoint  TEXT,                             -- the engine's Checkpoint (JSON): where a taken-over run resumes
    changed     INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    stale       INTEGER NOT NULL DEFAULT 0,
    summary     TEXT
);
CREATE INDEX fix_runs_fix ON fix_runs (fix_id, id);

CREATE TABLE fix_failures (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES fix_runs (id) ON DELETE CASCADE,
    key_text    TEXT    NOT NULL,
    key_json    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    pass        INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    UNIQUE (run_id, key_text)
);
