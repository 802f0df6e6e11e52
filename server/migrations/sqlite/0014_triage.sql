-- Triage (issue 23): how many resources the node's last run repaired
-- (changed, or would change in a noop run, against drift the catalog did not
-- ask for: `corrective` in the report). The overview lists nodes whose last
-- run was corrective right after the failed ones. NULL before its first
-- report after this migration (read as 0).
ALTER TABLE nodes ADD COLUMN last_corrective INTEGER;
