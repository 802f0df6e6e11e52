-- Triage (issue 23; as sqlite/0014_triage.sql): how many resources the
-- node's last run repaired (`corrective` in the report). NULL before its
-- first report after this migration (read as 0).
ALTER TABLE nodes ADD COLUMN last_corrective BIGINT;
