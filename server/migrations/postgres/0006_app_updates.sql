-- App updates (issue 21; as sqlite/0010_app_updates.sql). A replacement runs the spec it was placed from,
-- which is the app's new spec during an update (and may be its old one
-- during a revert): a row's `spec_hash` is what runs at `node`,
-- `next_spec_hash` what runs at `next_node`.
ALTER TABLE placements ADD COLUMN next_spec_hash TEXT;

-- App file bodies by (app, spec hash), written by the control loop for
-- every spec it places: a replica keeps running the spec it was placed
-- from (compiled from this body) until its update replaces it, and a
-- revert goes back to a spec the current commit no longer has.
CREATE TABLE app_specs (
    app TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    body TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    PRIMARY KEY (app, spec_hash)
);

-- One row per app of an environment: the spec its commit asks for
-- (`spec_hash`), the last spec all its replicas were healthy at
-- (`stable_spec_hash`), and the update's state: rolling, done, failed
-- (a replica was not healthy within healthy_deadline_secs; nothing more
-- is replaced until the spec changes) or reverted (back to the stable spec).
CREATE TABLE app_updates (
    environment TEXT NOT NULL,
    app TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    stable_spec_hash TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    since TEXT NOT NULL,
    PRIMARY KEY (environment, app)
);
