-- Each node's last good catalog moves to a row of its own. SQLite rewrites
-- a whole row (overflow pages included) to change any column of it, so
-- with the catalog in `nodes` every check-in's small updates (last seen,
-- last run) rewrote tens of kilobytes; now they rewrite a small row, and
-- the catalog is written only when what was served changed.
CREATE TABLE catalogs (
    node TEXT PRIMARY KEY NOT NULL,
    catalog TEXT NOT NULL
);

INSERT INTO catalogs (node, catalog) SELECT name, catalog FROM nodes WHERE catalog IS NOT NULL;

ALTER TABLE nodes DROP COLUMN catalog;
