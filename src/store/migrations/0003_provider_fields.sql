-- Provider fields that the store did not keep, and sealed custom headers
-- (their values often carry credentials). Rows written before this keep
-- their plaintext `custom_headers` until the provider is written again.

ALTER TABLE providers ADD COLUMN first_byte_timeout_ms INTEGER;
ALTER TABLE providers ADD COLUMN allow_any_model INTEGER NOT NULL DEFAULT 0;
ALTER TABLE providers ADD COLUMN custom_headers_sealed BLOB;
