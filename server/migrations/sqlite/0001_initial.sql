-- Nodes: what each node last asked for and was last served.
CREATE TABLE nodes (
    name TEXT PRIMARY KEY NOT NULL,
    requested_environment TEXT,
    environment TEXT,
    facts TEXT NOT NULL DEFAULT '{}',
    roles TEXT NOT NULL DEFAULT '[]',
    -- The last good catalog served to the node (JSON, contents empty).
    catalog TEXT,
    catalog_version TEXT,
    commit_id TEXT,
    -- JSON {environment, commit, diagnostics, at}; NULL once a compile succeeds.
    compile_error TEXT,
    last_status TEXT,
    last_run_at TEXT,
    last_run_at_us INTEGER,
    last_seen_at TEXT
);

-- Every content blob ever served, so the file route survives restarts.
CREATE TABLE contents (
    sha256 TEXT PRIMARY KEY NOT NULL,
    bytes BLOB NOT NULL
);

-- Run reports, kept whole (body) with the columns queries need.
CREATE TABLE reports (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    node TEXT NOT NULL,
    environment TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    status TEXT NOT NULL,
    noop INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    finished_at_us INTEGER NOT NULL,
    catalog_version TEXT NOT NULL,
    cached_catalog TEXT NOT NULL,
    resources INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    body TEXT NOT NULL
);

CREATE INDEX reports_node_finished ON reports (node, finished_at_us DESC);
