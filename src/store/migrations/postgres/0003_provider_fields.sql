-- Provider fields that the store did not keep, and sealed custom headers
-- (their values often carry credentials); the twin of sqlite/0003.

ALTER TABLE providers ADD COLUMN first_byte_timeout_ms BIGINT;
ALTER TABLE providers ADD COLUMN allow_any_model BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE providers ADD COLUMN custom_headers_sealed BYTEA;
