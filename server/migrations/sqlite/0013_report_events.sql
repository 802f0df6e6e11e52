-- Fleet-wide runs and resource events (issue 23). One row per resource a
-- report did not leave unchanged (changed, failed, skipped, noop), written
-- in the report's own transaction (db/events.rs) so that "every change to
-- file:/etc/motd in the last 24 h" reads an index, not 1,000,000 bodies.
-- Retention and node purge delete its rows with their reports'.
CREATE TABLE report_events (
    id INTEGER PRIMARY KEY,
    report_id INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    environment TEXT NOT NULL,
    resource TEXT NOT NULL,
    status TEXT NOT NULL,
    corrective INTEGER NOT NULL,
    finished_at_us INTEGER NOT NULL,
    summary TEXT NOT NULL
);
-- One event per resource and report; also finds a report's events.
CREATE UNIQUE INDEX report_events_report ON report_events (report_id, resource);
-- Newest first per resource (the rowid, `id`, breaks ties).
CREATE INDEX report_events_resource ON report_events (resource, finished_at_us);
CREATE INDEX report_events_finished ON report_events (finished_at_us);
-- The runs list filtered by status within a time range.
CREATE INDEX reports_status_finished ON reports (status, finished_at_us);

-- The reports stored before this table, from their bodies (the summary is
-- the resource's error, if any).
INSERT OR IGNORE INTO report_events (report_id, run_id, node, environment, resource,
    status, corrective, finished_at_us, summary)
SELECT r.id, r.run_id, r.node, r.environment, json_extract(e.value, '$.id'),
    json_extract(e.value, '$.status'),
    CASE WHEN json_extract(e.value, '$.corrective') THEN 1 ELSE 0 END,
    r.finished_at_us, COALESCE(json_extract(e.value, '$.error'), '')
FROM reports AS r, json_each(r.body, '$.resources') AS e
WHERE json_valid(r.body) AND json_extract(e.value, '$.status') <> 'unchanged';
