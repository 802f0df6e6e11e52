-- One row that `/healthz` rewrites to learn whether the database still
-- takes writes.
CREATE TABLE health_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at_us INTEGER NOT NULL
);
