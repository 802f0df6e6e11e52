-- Staged rollouts (issue 21; as sqlite/0011_rollouts.sql): one row per environment, written by
-- the leader's rollout loop only (`request` excepted: an operator's
-- resume or abort, which the loop applies and clears). `from_commit` is
-- what nodes of stages not yet reached are served, `to_commit` the
-- environment's newest commit the loop has seen; `state` is rolling,
-- paused, done or aborted; `stage` the index of the stage being gated;
-- `stages` JSON: each stage's spec, its nodes (fixed when the rollout
-- starts), when it began and when it passed; `reason` what blocks it or
-- why it paused. `version` grows at every write of the loop, which is
-- made only if the row is still the version it read: a step is never
-- taken twice, by a restarted server or a new leader.
CREATE TABLE rollouts (
    environment TEXT PRIMARY KEY NOT NULL,
    from_commit TEXT NOT NULL,
    to_commit TEXT NOT NULL,
    state TEXT NOT NULL,
    stage BIGINT NOT NULL,
    stages TEXT NOT NULL,
    gate TEXT NOT NULL,
    reason TEXT NOT NULL,
    request TEXT,
    version BIGINT NOT NULL,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
