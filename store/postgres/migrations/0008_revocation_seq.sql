-- The revocation log gets a sequence number, seq, so that instances and the
-- revocation feed catch up with "seq > cursor" instead of re-reading a time
-- window (which trusted the clocks of the instances to agree).
--
-- A plain sequence (the id column) is not enough: numbers are taken at
-- insert, but transactions commit in any order, so a reader could see 11
-- before 10 commits, move its cursor to 11 and skip 10 for ever. Here the
-- number comes from a one-row counter updated by the inserting transaction
-- itself (a trigger, so every INSERT gets it, including those of an older
-- binary during a rolling deploy). The counter row stays locked until that
-- transaction ends, so the next writer gets its number only after the
-- previous one has committed (or rolled back, freeing the same number):
-- commit order is number order, and a snapshot that holds seq n holds every
-- seq below n. The price is that revoking transactions take turns for the
-- short time between their insert and their commit; every writer inserts
-- into revocations as its last statement, so no lock is taken after the
-- counter's and none can deadlock on it.
CREATE TABLE revocation_counter (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last     bigint NOT NULL
);
INSERT INTO revocation_counter (only_row, last)
SELECT true, COALESCE(max(id), 0) FROM revocations;

ALTER TABLE revocations ADD COLUMN seq bigint;
-- Existing rows are all committed: any order of them is commit order.
UPDATE revocations SET seq = id;
ALTER TABLE revocations ALTER COLUMN seq SET NOT NULL;
CREATE UNIQUE INDEX revocations_seq_idx ON revocations (seq);
-- The log is no longer read by at.
DROP INDEX revocations_at_idx;

CREATE FUNCTION revocations_assign_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE revocation_counter SET last = last + 1 RETURNING last INTO NEW.seq;
    IF NEW.seq IS NULL THEN
        RAISE EXCEPTION 'revocation_counter has no row';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER revocations_seq BEFORE INSERT ON revocations
    FOR EACH ROW EXECUTE FUNCTION revocations_assign_seq();
