-- Which endpoint a request-log row is for: count_tokens requests are logged too.
ALTER TABLE request_logs ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'messages'
    CHECK (endpoint IN ('messages', 'count_tokens'));
