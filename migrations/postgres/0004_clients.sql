-- Issue 7: clients and their read ramps, gates, API tokens, traffic, shadow
-- results, guides and checklists; offline jobs, datasets and their access log.

-- Per-migration gate and decommission settings (one row per migration, made on first use).
CREATE TABLE client_gates (
    migration_id       BIGINT PRIMARY KEY REFERENCES migrations (id) ON DELETE CASCADE,
    ramp_threshold     BIGINT NOT NULL DEFAULT 10000,  -- millipercent; ramps above need the gates
    min_accuracy       DOUBLE PRECISION    NOT NULL DEFAULT 99.9,   -- latest verification accuracy, percent
    max_mismatch_rate  DOUBLE PRECISION    NOT NULL DEFAULT 0.1,    -- client's shadow mismatch rate, percent
    mismatch_window_ms BIGINT NOT NULL DEFAULT 86400000,
    quiet_days         BIGINT NOT NULL DEFAULT 7,      -- decommission: days of zero old traffic
    lock_days          BIGINT NOT NULL DEFAULT 30,     -- a dataset is locked this long before deletion
    guide              TEXT    NOT NULL DEFAULT '',     -- the migration guide (Markdown)
    guide_updated_at   BIGINT,
    guide_updated_by   TEXT
);

CREATE TABLE clients (
    id            BIGSERIAL PRIMARY KEY,
    migration_id  BIGINT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    owner_team    TEXT    NOT NULL DEFAULT '',
    owner_contact TEXT    NOT NULL DEFAULT '',
    kind          TEXT    NOT NULL DEFAULT 'online' CHECK (kind IN ('online', 'offline')),
    status        TEXT    NOT NULL DEFAULT 'not-started'
                  CHECK (status IN ('discovered', 'not-started', 'in-progress', 'migrated')),
    ramp          BIGINT NOT NULL DEFAULT 0,           -- millipercent of keys read from the new system
    shadow_rate   DOUBLE PRECISION    NOT NULL DEFAULT 0.01,        -- share of requests sent as shadow pairs
    shadow_rules  TEXT    NOT NULL DEFAULT '{}',
    notes         TEXT    NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (migration_id, name)
);

-- Every ramp change, for the chart's step marks.
CREATE TABLE client_ramp_steps (
    id         BIGSERIAL PRIMARY KEY,
    client_id  BIGINT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    at         BIGINT NOT NULL,
    from_ramp  BIGINT NOT NULL,
    to_ramp    BIGINT NOT NULL,
    actor      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    overridden BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX client_ramp_steps_client ON client_ramp_steps (client_id, at);

CREATE TABLE client_checklist (
    id        BIGSERIAL PRIMARY KEY,
    client_id BIGINT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    position  BIGINT NOT NULL,
    label     TEXT    NOT NULL,
    done      BIGINT NOT NULL DEFAULT 0,
    done_by   TEXT,
    done_at   BIGINT
);

-- API tokens: bound to one client, or to the migration (a collector that may
-- report traffic for any client name). Only the SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    migration_id BIGINT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    client_id    BIGINT REFERENCES clients (id) ON DELETE CASCADE,
    label        TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    prefix       TEXT    NOT NULL,
    created_by   TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

CREATE TABLE client_traffic (
    id          BIGSERIAL PRIMARY KEY,
    client_id   BIGINT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,   -- interval start
    interval_ms BIGINT NOT NULL,
    old_count   BIGINT NOT NULL,
    new_count   BIGINT NOT NULL
);
CREATE INDEX client_traffic_client ON client_traffic (client_id, at);

CREATE TABLE shadow_results (
    id         BIGSERIAL PRIMARY KEY,
    client_id  BIGINT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    at         BIGINT NOT NULL,
    key        TEXT    NOT NULL,
    matched    BIGINT NOT NULL,
    paths      BIGINT NOT NULL,  -- how many paths differ
    tree       TEXT               -- the mismatch tree as text (mismatches only)
);
CREATE INDEX shadow_results_client ON shadow_results (client_id, at);

CREATE TABLE offline_jobs (
    id           BIGSERIAL PRIMARY KEY,
    migration_id BIGINT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    owner        TEXT    NOT NULL DEFAULT '',
    schedule     TEXT    NOT NULL DEFAULT '',
    status       TEXT    NOT NULL DEFAULT 'not-started'
                 CHECK (status IN ('not-started', 'in-progress', 'migrated')),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (migration_id, name)
);

CREATE TABLE datasets (
    id           BIGSERIAL PRIMARY KEY,
    migration_id BIGINT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    replacement  TEXT    NOT NULL DEFAULT '',
    status       TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'locked', 'deleted')),
    locked_at    BIGINT,
    deleted_at   BIGINT,
    created_at   BIGINT NOT NULL,
    UNIQUE (migration_id, name)
);

-- Which old datasets a job reads.
CREATE TABLE job_datasets (
    job_id     BIGINT NOT NULL REFERENCES offline_jobs (id) ON DELETE CASCADE,
    dataset_id BIGINT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, dataset_id)
);

-- "job J read dataset D at T".
CREATE TABLE dataset_access (
    id         BIGSERIAL PRIMARY KEY,
    dataset_id BIGINT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    job_name   TEXT    NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX dataset_access_dataset ON dataset_access (dataset_id, at);
