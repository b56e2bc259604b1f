-- Issue 14: named connections. An admin registers a database once (kind,
-- host, port, database, user, options) with its secret; specs and data fixes
-- name it. The secret is stored encrypted (`encrypted`: nonce and ciphertext,
-- base64, under TERN_SECRET_KEY) or as a reference (`env`: a variable name,
-- `file`: a path) and is never shown.

CREATE TABLE connections (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL CHECK (kind IN ('postgres', 'mysql', 'sqlite')),
    host        TEXT    NOT NULL DEFAULT '',
    port        INTEGER,
    database    TEXT    NOT NULL DEFAULT '',
    username    TEXT    NOT NULL DEFAULT '',
    options     TEXT    NOT NULL DEFAULT '',        -- URL query, e.g. sslmode=require
    secret_kind TEXT    NOT NULL DEFAULT 'none' CHECK (secret_kind IN ('none', 'encrypted', 'env', 'file')),
    secret      TEXT    NOT NULL DEFAULT '',
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
