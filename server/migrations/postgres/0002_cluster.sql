-- Several servers on one database (PostgreSQL only: a SQLite database
-- belongs to one server, which always leads).
--
-- Times here are the database's clock, in microseconds since the epoch, so
-- no server's clock decides who leads.

-- Every server that has run on this database: what it listens on, what it
-- runs, and when it last said it was alive.
CREATE TABLE cluster_servers (
    id TEXT PRIMARY KEY NOT NULL,
    listen TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at_us BIGINT NOT NULL,
    heartbeat_at_us BIGINT NOT NULL
);

-- The one leader's lease: who holds it, until when, and the term of the
-- election that gave it (it grows at every election; a leader's writes carry
-- it and are refused once the lease has moved on).
CREATE TABLE cluster_lease (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    term BIGINT NOT NULL,
    acquired_at_us BIGINT NOT NULL,
    expires_at_us BIGINT NOT NULL
);
