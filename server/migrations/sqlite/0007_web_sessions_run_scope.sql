-- Dashboard login sessions: the sha256 of a random session id (the cookie
-- holds the id itself), which operator credential opened it, and when it
-- ends. In the database, not in memory, so several servers share them.
CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY NOT NULL,
    operator TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sessions_expiry ON sessions (expires_at_us);

-- A run_id is unique per node, not across the fleet: with a global UNIQUE,
-- a node posting another node's run_id was told "already stored" (and its
-- report dropped), which told it that run_id exists. SQLite cannot drop a
-- column's UNIQUE without rebuilding the table (which would lose columns
-- later migrations add), so the unique column is renamed `run_key` and holds
-- json_array(node, run_id); `run_id` becomes a plain, indexed column.
ALTER TABLE reports RENAME COLUMN run_id TO run_key;
ALTER TABLE reports ADD COLUMN run_id TEXT NOT NULL DEFAULT '';
UPDATE reports SET run_id = run_key, run_key = json_array(node, run_key);
CREATE INDEX reports_run_id ON reports (run_id);
