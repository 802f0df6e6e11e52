-- Apps (issue 20; as sqlite/0008_apps.sql): where the scheduler put each replica, what agents say of
-- each replica's container, heartbeats, and cordons.

-- One row per replica of an app in an environment: its node (NULL while
-- pending), its placement id (the container is APP-REPLICA-ID), the spec it
-- was placed from, and the decision that placed it or keeps it pending
-- (JSON of the scheduler's Decision: per node, the refusing predicate or
-- the scores). Written by the control loop only, as leader.
CREATE TABLE placements (
    environment TEXT NOT NULL,
    app TEXT NOT NULL,
    replica BIGINT NOT NULL,
    node TEXT,
    placement_id TEXT,
    -- The address services reach it at: the node's `address` or `ip` label,
    -- else its `networking.ip` fact.
    address TEXT,
    spec_hash TEXT NOT NULL,
    reason TEXT,
    decision TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    PRIMARY KEY (environment, app, replica)
);

CREATE INDEX placements_node ON placements (node);

-- The state of each replica container as its node's last report says.
CREATE TABLE replica_states (
    node TEXT NOT NULL,
    container TEXT NOT NULL,
    state TEXT NOT NULL,
    since TEXT,
    reported_at TEXT NOT NULL,
    PRIMARY KEY (node, container)
);

-- When a node was last heard from by a server (a daemon's open watch
-- counts), in microseconds since the epoch: the control loop's `ready`.
CREATE TABLE node_liveness (
    node TEXT PRIMARY KEY NOT NULL,
    seen_at_us BIGINT NOT NULL
);

-- Cordoned: no new replica is placed on the node (drains, issue 21).
ALTER TABLE nodes ADD COLUMN cordoned BIGINT NOT NULL DEFAULT 0;
