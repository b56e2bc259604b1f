-- Issue 17: the write primary per bucket, write holds, the routing version
-- clients acknowledge, switch history, and whether each table has a reverse path.

-- Which store takes a bucket's writes first: 'old' until the bucket is switched.
ALTER TABLE buckets ADD COLUMN write_primary TEXT NOT NULL DEFAULT 'old' CHECK (write_primary IN ('old', 'new'));
-- The switch (or rollback) holding this bucket's writes; NULL when writes flow.
ALTER TABLE buckets ADD COLUMN held_by BIGINT;

-- Drift watch: rows the last re-verification of a switched bucket found
-- different between the stores, and when it ran.
ALTER TABLE buckets ADD COLUMN drift_rows BIGINT;
ALTER TABLE buckets ADD COLUMN drift_checked_at BIGINT;

-- Decommission: when the migration was marked complete.
ALTER TABLE migrations ADD COLUMN completed_at BIGINT;

-- Bumped on every change clients must apply (a hold, a flip, a release).
ALTER TABLE migrations ADD COLUMN routing_version BIGINT NOT NULL DEFAULT 0;

-- The routing version a client last reported it applied, and when.
ALTER TABLE clients ADD COLUMN routing_version BIGINT;
ALTER TABLE clients ADD COLUMN routing_seen_at BIGINT;

-- Every switch of the source of truth and every rollback, with its hold time.
CREATE TABLE switches (
    id               BIGSERIAL PRIMARY KEY,
    migration_id     BIGINT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    direction        TEXT    NOT NULL CHECK (direction IN ('switch', 'rollback')),
    buckets          TEXT    NOT NULL,              -- bucket indexes, comma-separated
    state            TEXT    NOT NULL CHECK (state IN ('holding', 'draining', 'done', 'aborted')),
    actor            TEXT    NOT NULL,
    reason           TEXT    NOT NULL DEFAULT '',
    hold_version     BIGINT,                       -- the routing version that holds the writes
    clients_expected BIGINT NOT NULL DEFAULT 0,     -- active clients that had to acknowledge it
    clients_acked    BIGINT NOT NULL DEFAULT 0,
    started_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    hold_ms          BIGINT,                       -- from the hold to the release
    error            TEXT
);
CREATE INDEX switches_migration ON switches (migration_id, id);
-- One switch or rollback at a time per migration.
CREATE UNIQUE INDEX switches_one_running ON switches (migration_id) WHERE state IN ('holding', 'draining');

-- Whether a target table's mapping inverts (its buckets can be switched), and why not.
CREATE TABLE reverse_paths (
    migration_id BIGINT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    table_name   TEXT    NOT NULL,
    reversible   BIGINT NOT NULL,
    reason       TEXT    NOT NULL DEFAULT '',
    checked_at   BIGINT NOT NULL,
    PRIMARY KEY (migration_id, table_name)
);
