-- Indexes for the admin API's stats and log filters: each leads with the
-- column filtered on and ends with created_at, the time window every stats
-- query has. Retention deletes by created_at (0001's index).
CREATE INDEX request_logs_api_key ON request_logs (api_key_id, created_at);
CREATE INDEX request_logs_provider ON request_logs (provider, created_at);
CREATE INDEX request_logs_model ON request_logs (upstream_model, created_at);
