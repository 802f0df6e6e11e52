-- Drains (issue 21): a replica moving off a node keeps its row's node
-- until its replacement (`next_*`) has been healthy long enough; both run
-- meanwhile (make-before-break).
ALTER TABLE placements ADD COLUMN next_node TEXT;
ALTER TABLE placements ADD COLUMN next_id TEXT;
ALTER TABLE placements ADD COLUMN next_address TEXT;
-- When the replacement was placed (microseconds since the epoch).
ALTER TABLE placements ADD COLUMN next_since_us INTEGER;

-- One row per node an operator asked to drain: cordoned, then emptied by
-- the control loop. `state` is draining, done, or stopped (the deadline
-- passed and what was left was stopped); `status` says what it waits for
-- or how it ended. Kept until the node is uncordoned.
CREATE TABLE drains (
    node TEXT PRIMARY KEY NOT NULL,
    started_at TEXT NOT NULL,
    deadline_at_us INTEGER,
    state TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
