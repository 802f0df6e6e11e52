-- Node lifecycle (issue 22). `deactivated_at`: an operator's `node
-- deactivate` (or `node_ttl_days` of silence) took the node out of the
-- fleet's lists, counts and placements; its next catalog request or report
-- clears it. `run_requested_at`: an operator asked for a run now; the
-- server that holds the node's watch answers it and clears it.
ALTER TABLE nodes ADD COLUMN deactivated_at TEXT;
ALTER TABLE nodes ADD COLUMN run_requested_at TEXT;
