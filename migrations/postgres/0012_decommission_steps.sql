-- Issue 17: the steps that end a migration, each done once, by whom, with what it did.
CREATE TABLE decommission_steps (
    id           BIGSERIAL PRIMARY KEY,
    migration_id BIGINT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    step         TEXT    NOT NULL,  -- stop-relays, remove-capture, drop-columns, read-only, complete
    actor        TEXT    NOT NULL,
    done_at      BIGINT NOT NULL,
    detail       TEXT    NOT NULL DEFAULT '',
    UNIQUE (migration_id, step)
);
