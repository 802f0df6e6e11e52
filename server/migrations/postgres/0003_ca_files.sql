-- The CA the servers share: every file of DATA/ca but each server's own
-- certificate and key, as rows. A server's DATA/ca is its copy, brought up
-- to date from the rows with a larger `seq` than it has seen (see
-- server/src/tls/replica.rs). A removed file is a row whose content is NULL.
-- The CA's and the catalog signing key's rows are sealed (AES-256-GCM) with
-- the cluster secret each server holds in a file, not in the database.
CREATE SEQUENCE ca_files_seq;

CREATE TABLE ca_files (
    path TEXT PRIMARY KEY NOT NULL,
    content BYTEA,
    seq BIGINT NOT NULL
);

CREATE INDEX ca_files_seq_index ON ca_files (seq);
