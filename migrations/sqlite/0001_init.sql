-- tollgate control plane: virtual keys, teams, internal users, end users
-- (customers), spend logs and daily rollups.
--
-- Money is stored as whole picodollars (10^-12 USD) in 64-bit integers, so sums
-- are exact; budgets are the floats the management API receives. Times are
-- Unix seconds (`*_at`, `expires`, `budget_start`) or milliseconds (`*_ms`).
-- JSON values are stored as text. The SQLite and PostgreSQL schemas differ
-- only in type names.

CREATE TABLE tollgate_keys (
    token                 TEXT PRIMARY KEY,          -- lowercase hex SHA-256 of the key
    key_id                TEXT NOT NULL UNIQUE,      -- stable id: survives /key/regenerate
    key_name              TEXT NOT NULL,             -- display form: sk-...abcd
    key_alias             TEXT UNIQUE,
    user_id               TEXT,
    team_id               TEXT,
    models                TEXT NOT NULL DEFAULT '[]',
    aliases               TEXT NOT NULL DEFAULT '{}',
    metadata              TEXT NOT NULL DEFAULT '{}',
    tags                  TEXT NOT NULL DEFAULT '[]',
    max_budget            REAL,
    soft_budget           REAL,
    budget_duration       TEXT,
    budget_start          INTEGER NOT NULL,             -- budget window anchor / last spend reset
    tpm_limit             INTEGER,
    rpm_limit             INTEGER,
    max_parallel_requests INTEGER,
    model_max_budget      TEXT NOT NULL DEFAULT '{}',
    model_rpm_limit       TEXT NOT NULL DEFAULT '{}',
    model_tpm_limit       TEXT NOT NULL DEFAULT '{}',
    spend_pico            INTEGER NOT NULL DEFAULT 0,   -- since budget_start
    blocked               BOOLEAN NOT NULL DEFAULT FALSE,
    expires               INTEGER,
    created_at            INTEGER NOT NULL,
    created_by            TEXT,
    updated_at            INTEGER NOT NULL,
    updated_by            TEXT,
    version               INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tollgate_keys_user ON tollgate_keys (user_id);
CREATE INDEX tollgate_keys_team ON tollgate_keys (team_id);

CREATE TABLE tollgate_teams (
    team_id               TEXT PRIMARY KEY,
    team_alias            TEXT,
    models                TEXT NOT NULL DEFAULT '[]',
    metadata              TEXT NOT NULL DEFAULT '{}',
    tags                  TEXT NOT NULL DEFAULT '[]',
    max_budget            REAL,
    soft_budget           REAL,
    budget_duration       TEXT,
    budget_start          INTEGER NOT NULL,
    tpm_limit             INTEGER,
    rpm_limit             INTEGER,
    max_parallel_requests INTEGER,
    model_max_budget      TEXT NOT NULL DEFAULT '{}',
    model_rpm_limit       TEXT NOT NULL DEFAULT '{}',
    model_tpm_limit       TEXT NOT NULL DEFAULT '{}',
    spend_pico            INTEGER NOT NULL DEFAULT 0,
    blocked               BOOLEAN NOT NULL DEFAULT FALSE,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    version               INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE tollgate_team_members (
    team_id   TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    role      TEXT NOT NULL,                          -- admin | user
    added_at  INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX tollgate_team_members_user ON tollgate_team_members (user_id);

CREATE TABLE tollgate_users (
    user_id               TEXT PRIMARY KEY,
    user_alias            TEXT,
    user_email            TEXT,
    user_role             TEXT NOT NULL,              -- proxy_admin | proxy_admin_viewer | internal_user | internal_user_viewer
    models                TEXT NOT NULL DEFAULT '[]',
    metadata              TEXT NOT NULL DEFAULT '{}',
    max_budget            REAL,
    soft_budget           REAL,
    budget_duration       TEXT,
    budget_start          INTEGER NOT NULL,
    tpm_limit             INTEGER,
    rpm_limit             INTEGER,
    max_parallel_requests INTEGER,
    model_max_budget      TEXT NOT NULL DEFAULT '{}',
    model_rpm_limit       TEXT NOT NULL DEFAULT '{}',
    model_tpm_limit       TEXT NOT NULL DEFAULT '{}',
    spend_pico            INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    version               INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE tollgate_end_users (
    user_id               TEXT PRIMARY KEY,           -- the request's `user` field
    alias                 TEXT,
    blocked               BOOLEAN NOT NULL DEFAULT FALSE,
    max_budget            REAL,
    soft_budget           REAL,
    budget_duration       TEXT,
    budget_start          INTEGER NOT NULL,
    tpm_limit             INTEGER,
    rpm_limit             INTEGER,
    max_parallel_requests INTEGER,
    model_max_budget      TEXT NOT NULL DEFAULT '{}',
    allowed_model_region  TEXT,
    default_model         TEXT,
    spend_pico            INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    version               INTEGER NOT NULL DEFAULT 0
);

-- One row per request. `id` is the writer's own id (a retried batch never
-- counts twice); `request_id` is the gateway's request id (x-litellm-call-id).
CREATE TABLE tollgate_spend_logs (
    id                TEXT PRIMARY KEY,
    request_id        TEXT NOT NULL,
    call_type         TEXT NOT NULL,
    api_key           TEXT,                           -- display form of the key (sk-...abcd), never its hash
    key_id            TEXT,
    team_id           TEXT,
    user_id           TEXT,
    end_user          TEXT,
    model             TEXT NOT NULL,                  -- as requested
    model_group       TEXT NOT NULL,                  -- the group that served (else as requested)
    model_id          TEXT,                           -- deployment id
    provider          TEXT,
    api_base          TEXT,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens      INTEGER NOT NULL,
    spend_pico        INTEGER,                           -- NULL: no price known
    start_ms          INTEGER NOT NULL,
    end_ms            INTEGER NOT NULL,
    ttft_ms           INTEGER,
    status            TEXT NOT NULL,                  -- success | failure | cancelled
    http_status       INTEGER NOT NULL,
    error_class       TEXT,
    tags              TEXT NOT NULL DEFAULT '[]',
    cache_hit         BOOLEAN NOT NULL,
    stream            BOOLEAN NOT NULL,
    usage_estimated   BOOLEAN NOT NULL,
    attempts          INTEGER NOT NULL
);
CREATE INDEX tollgate_spend_logs_start ON tollgate_spend_logs (start_ms);
CREATE INDEX tollgate_spend_logs_key ON tollgate_spend_logs (key_id, start_ms);
CREATE INDEX tollgate_spend_logs_team ON tollgate_spend_logs (team_id, start_ms);
CREATE INDEX tollgate_spend_logs_user ON tollgate_spend_logs (user_id, start_ms);
CREATE INDEX tollgate_spend_logs_end_user ON tollgate_spend_logs (end_user, start_ms);
CREATE INDEX tollgate_spend_logs_request ON tollgate_spend_logs (request_id);

-- Daily totals per scope (global, key by key_id, team, user, end_user) and model
-- group, written in the same transaction as the spend logs. `day` counts days
-- since 1970-01-01 (UTC).
CREATE TABLE tollgate_daily_spend (
    day               INTEGER NOT NULL,
    scope             TEXT NOT NULL,
    scope_id          TEXT NOT NULL,
    model             TEXT NOT NULL,
    spend_pico        INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    requests          INTEGER NOT NULL,
    successes         INTEGER NOT NULL,
    failures          INTEGER NOT NULL,
    PRIMARY KEY (day, scope, scope_id, model)
);
CREATE INDEX tollgate_daily_spend_scope ON tollgate_daily_spend (scope, scope_id, day);

-- What changed, so other replicas can drop cached keys within seconds.
CREATE TABLE tollgate_changes (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT NOT NULL,                              -- key | team | user | end_user | all
    id    TEXT NOT NULL,
    at    INTEGER NOT NULL
);

CREATE TABLE tollgate_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
