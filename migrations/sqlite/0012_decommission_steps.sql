-- Issue 17: the steps that end a migration, each done once, by whom, with what it did.
CREATE TABLE decommission_steps (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    migration_id INTEGER NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    step         TEXT    NOT NULL,  -- stop-relays, remove-capture, drop-columns, read-only, complete
    actor        TEXT    NOT NULL,
    done_at      INTEGER NOT NULL,
    detail       TEXT    NOT NULL DEFAULT '',
    UNIQUE (migration_id, step)
);
