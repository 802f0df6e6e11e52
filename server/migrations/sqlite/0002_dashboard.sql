-- The dashboard: what a node's last run was, kept on the node's row so the
-- fleet overview reads 10,000 nodes without touching the reports table.
ALTER TABLE nodes ADD COLUMN last_seen_at_us INTEGER;
ALTER TABLE nodes ADD COLUMN last_run_id TEXT;
ALTER TABLE nodes ADD COLUMN last_noop INTEGER;
ALTER TABLE nodes ADD COLUMN last_cached_catalog TEXT;
ALTER TABLE nodes ADD COLUMN last_environment TEXT;
ALTER TABLE nodes ADD COLUMN last_commit TEXT;
ALTER TABLE nodes ADD COLUMN last_catalog_version TEXT;
ALTER TABLE nodes ADD COLUMN last_duration_ms REAL;

ALTER TABLE reports ADD COLUMN duration_ms REAL NOT NULL DEFAULT 0;

UPDATE reports SET duration_ms =
    MAX(0, (julianday(finished_at) - julianday(started_at)) * 86400000.0);

UPDATE nodes SET last_seen_at_us = CAST(unixepoch(last_seen_at, 'subsec') * 1000000 AS INTEGER)
    WHERE last_seen_at IS NOT NULL;

UPDATE nodes SET
    last_run_id = r.run_id,
    last_noop = r.noop,
    last_cached_catalog = r.cached_catalog,
    last_environment = r.environment,
    last_commit = r.commit_id,
    last_catalog_version = r.catalog_version,
    last_duration_ms = r.duration_ms
FROM (
    SELECT node, run_id, noop, cached_catalog, environment, commit_id, catalog_version, duration_ms,
           ROW_NUMBER() OVER (PARTITION BY node ORDER BY finished_at_us DESC, id DESC) AS rank
    FROM reports
) AS r
WHERE r.node = nodes.name AND r.rank = 1;

-- Retention prunes by age.
CREATE INDEX reports_finished ON reports (finished_at_us);

-- Runs per hour and status for the fleet chart, kept as reports arrive so the
-- chart never scans the reports table. `status` is the run status, or `noop`
-- for a dry run that would change something.
CREATE TABLE report_hours (
    hour INTEGER NOT NULL,
    status TEXT NOT NULL,
    runs INTEGER NOT NULL,
    duration_ms_sum REAL NOT NULL,
    duration_ms_max REAL NOT NULL,
    PRIMARY KEY (hour, status)
) WITHOUT ROWID;

INSERT INTO report_hours (hour, status, runs, duration_ms_sum, duration_ms_max)
SELECT finished_at_us / 3600000000,
       CASE WHEN noop AND status = 'changed' THEN 'noop' ELSE status END,
       COUNT(*), SUM(duration_ms), MAX(duration_ms)
FROM reports GROUP BY 1, 2;
