-- Identity and access for the admin API: four roles, a per-user token
-- version (bumped to revoke every session of the user at once), the last
-- login, and the client address of each audited change.
--
-- SQLite cannot change a CHECK constraint in place, so `users` is rebuilt
-- (the documented create-copy-drop-rename procedure; the migration runner
-- turns foreign keys off around it and checks them before committing).

CREATE TABLE users_new (
    id            INTEGER PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'viewer', 'member')),
    disabled      INTEGER NOT NULL DEFAULT 0,
    token_version INTEGER NOT NULL DEFAULT 0,
    last_login_at INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
INSERT INTO users_new (id, email, password_hash, role, disabled, created_at, updated_at)
    SELECT id, email, password_hash, role, disabled, created_at, updated_at FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;

ALTER TABLE audit_log ADD COLUMN client_addr TEXT;
CREATE INDEX audit_log_created_at ON audit_log (created_at);
