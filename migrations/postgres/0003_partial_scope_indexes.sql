-- The per-scope spend-log indexes hold only the rows that belong to a scope.
-- Most rows have no team, user or end user (and, without virtual keys, no
-- key): indexing their NULLs cost a b-tree insert per row and index for
-- entries no query reads. The budget-window sums filter with `scope = $n`,
-- which implies `IS NOT NULL`, so both SQLite and PostgreSQL use these.
DROP INDEX tollgate_spend_logs_key;
DROP INDEX tollgate_spend_logs_team;
DROP INDEX tollgate_spend_logs_user;
DROP INDEX tollgate_spend_logs_end_user;
CREATE INDEX tollgate_spend_logs_key ON tollgate_spend_logs (key_id, start_ms) WHERE key_id IS NOT NULL;
CREATE INDEX tollgate_spend_logs_team ON tollgate_spend_logs (team_id, start_ms) WHERE team_id IS NOT NULL;
CREATE INDEX tollgate_spend_logs_user ON tollgate_spend_logs (user_id, start_ms) WHERE user_id IS NOT NULL;
CREATE INDEX tollgate_spend_logs_end_user ON tollgate_spend_logs (end_user, start_ms) WHERE end_user IS NOT NULL;
