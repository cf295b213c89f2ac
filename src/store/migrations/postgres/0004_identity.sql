-- Identity and access for the admin API (the twin of sqlite/0004): four
-- roles, a per-user token version (bumped to revoke every session of the
-- user at once), the last login, and the client address of each audited
-- change. PostgreSQL changes the CHECK constraint in place.

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'operator', 'viewer', 'member'));
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN last_login_at BIGINT;

ALTER TABLE audit_log ADD COLUMN client_addr TEXT;
CREATE INDEX audit_log_created_at ON audit_log (created_at);
