-- The `reasoning_effort` values an OpenAI-format provider accepts, as a
-- JSON list (`["low", "medium", "high"]`); empty: it gets none.

ALTER TABLE providers ADD COLUMN reasoning_efforts TEXT NOT NULL DEFAULT '[]';
