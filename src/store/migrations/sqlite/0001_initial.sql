-- Initial schema. Times are UTC Unix milliseconds everywhere.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL,
    key_hash     BLOB    NOT NULL UNIQUE,
    prefix       TEXT    NOT NULL,
    owner_id     INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER,
    expires_at   INTEGER
);

CREATE TABLE providers (
    id               INTEGER PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    api_format       TEXT    NOT NULL CHECK (api_format IN ('openai', 'anthropic')),
    base_url         TEXT    NOT NULL,
    api_keys_sealed  BLOB,
    priority         INTEGER NOT NULL DEFAULT 1,
    weight           INTEGER NOT NULL DEFAULT 1,
    enabled          INTEGER NOT NULL DEFAULT 1,
    timeout_ms       INTEGER NOT NULL DEFAULT 180000,
    max_retries      INTEGER NOT NULL DEFAULT 2,
    custom_headers   TEXT    NOT NULL DEFAULT '{}',
    model_big        TEXT    NOT NULL DEFAULT '[]',
    model_middle     TEXT    NOT NULL DEFAULT '[]',
    model_small      TEXT    NOT NULL DEFAULT '[]',
    max_tokens_limit INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE request_logs (
    id                    INTEGER PRIMARY KEY,
    created_at            INTEGER NOT NULL,
    api_key_id            INTEGER REFERENCES api_keys (id) ON DELETE SET NULL,
    provider              TEXT,
    upstream_model        TEXT,
    alias                 TEXT    NOT NULL,
    stream                INTEGER NOT NULL,
    status                INTEGER NOT NULL,
    latency_ms            INTEGER NOT NULL,
    ttfb_ms               INTEGER,
    input_tokens          INTEGER NOT NULL DEFAULT 0,
    output_tokens         INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens     INTEGER NOT NULL DEFAULT 0,
    cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
    error_kind            TEXT
);
CREATE INDEX request_logs_created_at ON request_logs (created_at);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT,
    detail     TEXT
);
