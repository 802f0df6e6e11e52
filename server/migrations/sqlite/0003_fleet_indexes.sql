-- The fleet overview's counts read only this index, not the 3-4 KB rows
-- (facts, catalog) of every node.
CREATE INDEX nodes_state ON nodes (last_environment, environment, last_status, last_noop,
    last_run_at_us, last_seen_at_us, last_cached_catalog, last_commit);

-- The few nodes with a compile error, without walking every row.
CREATE INDEX nodes_compile_error ON nodes (name) WHERE compile_error IS NOT NULL;
