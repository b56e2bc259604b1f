-- Issue 17: the steps that end a migration, and the switched set each relay filters by.
CREATE TABLE decommission_steps (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    migration_id INTEGER NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    step         TEXT    NOT NULL,  -- stop-relays, remove-capture, drop-columns, read-only, complete
    actor        TEXT    NOT NULL,
    done_at      INTEGER NOT NULL,
    detail       TEXT    NOT NULL DEFAULT '',
    UNIQUE (migration_id, step)
);

-- The routing version each relay job filters by (the switched buckets it
-- took): a switch releases held writes only once every running relay shows it.
CREATE TABLE relay_observed (
    job_id          INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    routing_version INTEGER NOT NULL,
    at              INTEGER NOT NULL
);
