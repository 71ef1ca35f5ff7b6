-- The revocation log gets a sequence number, seq, so that instances and the
-- revocation feed catch up with "seq > cursor" instead of re-reading a time
-- window (which trusted the clocks of the instances to agree).
--
-- SQLite has one writer at a time (BEGIN IMMEDIATE takes the write lock for
-- the whole transaction, across processes too), so numbers are handed out
-- in commit order. AUTOINCREMENT, unlike a bare INTEGER PRIMARY KEY, never
-- reuses the number of a deleted row: pruning the newest entry must not let
-- the next one take a number a reader has already passed. AUTOINCREMENT
-- cannot be added to an existing table, hence the rebuild; the old ids are
-- kept as the seq of existing rows.
CREATE TABLE revocations_seq (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	kind       TEXT    NOT NULL, -- no CHECK: new kinds must not need a table rebuild
	subject    TEXT    NOT NULL,
	at         INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;

INSERT INTO revocations_seq (seq, kind, subject, at, expires_at)
SELECT id, kind, subject, at, expires_at FROM revocations;

DROP TABLE revocations;
ALTER TABLE revocations_seq RENAME TO revocations;

-- PruneRevocations deletes by expires_at; reads go by seq, the primary key.
CREATE INDEX revocations_expires_at ON revocations (expires_at);
