-- Tern control store, SQLite dialect: users, sessions, audit, migrations, buckets.
-- Times are Unix milliseconds (INTEGER) in both dialects, so the same queries serve both.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'engineer', 'client-owner', 'admin')),
    password_hash TEXT    NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

-- The clients a client-owner owns (by client name).
CREATE TABLE user_clients (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client  TEXT    NOT NULL,
    PRIMARY KEY (user_id, client)
);

CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    data       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    entity_kind TEXT    NOT NULL,
    entity_id   TEXT    NOT NULL,
    from_state  TEXT,
    to_state    TEXT,
    reason      TEXT,
    details     TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_entity ON audit_events (entity_kind, entity_id);

CREATE TABLE migrations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    description TEXT    NOT NULL DEFAULT '',
    spec        TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE buckets (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    migration_id INTEGER NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    lo           TEXT,
    hi           TEXT,
    planned_rows INTEGER NOT NULL DEFAULT 0,
    rows_copied  INTEGER NOT NULL DEFAULT 0,
    phase        TEXT    NOT NULL DEFAULT 'planned',
    updated_at   INTEGER NOT NULL,
    UNIQUE (migration_id, idx)
);
