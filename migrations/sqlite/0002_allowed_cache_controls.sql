-- LiteLLM's per-key `allowed_cache_controls`: the cache controls a key's
-- requests may use (JSON list; empty: no restriction).
ALTER TABLE tollgate_keys ADD COLUMN allowed_cache_controls TEXT NOT NULL DEFAULT '[]';
