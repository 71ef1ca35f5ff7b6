-- The Gatehouse session (a browser's sign-in) that an app's session was
-- authorized from ('' for Gatehouse's own sign-ins and for sessions made
-- before this column). RP-initiated logout ends it with the app's session:
-- logging out of an app through Gatehouse logs the browser out of
-- Gatehouse too. No foreign key: sessions are deleted by retention in any
-- order.
ALTER TABLE sessions ADD COLUMN parent_id text COLLATE "C" NOT NULL DEFAULT '';
